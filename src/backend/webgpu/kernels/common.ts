// Shared WGSL fragments and helpers for kernel wrappers.
import type { DType } from '../../types.ts';
import type { GpuBuf } from '../pool.ts';

export const WG = 256;

/** WGSL scalar type of a buffer's dtype. */
export const ty = (d: DType): string => (d === 'f32' ? 'f32' : 'i32');

/** Entry point over a flat 1-D range of `n` items, 256 per workgroup, 2-D grid for large n. */
export const flatMain = (body: string): string => `${infFns}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = (wid.x + wid.y * nwg.x) * ${WG}u + lid.x;
${body}
}`;

/** Entry point with one workgroup of 256 threads per row (row index from a 2-D grid). */
export const rowMain = (body: string): string => `${infFns}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
  let row = wid.x + wid.y * nwg.x;
  let t = lid.x;
${body}
}`;

/** Workgroup tree reductions over red[256] (sum and max); every thread must call them. */
export const reduceFns = `
var<workgroup> red: array<f32, ${WG}>;
fn wgSum(v: f32, t: u32) -> f32 {
  workgroupBarrier();
  red[t] = v;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    if (t < s) { red[t] = red[t] + red[t + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
fn wgMax(v: f32, t: u32) -> f32 {
  workgroupBarrier();
  red[t] = v;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    if (t < s) { red[t] = max(red[t], red[t + s]); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
`;

// Infinities cannot be WGSL constants (const evaluation rejects them): build them at run time.
export const infFns = `
fn negInf() -> f32 { var b = 0xff800000u; return bitcast<f32>(b); }
fn posInf() -> f32 { var b = 0x7f800000u; return bitcast<f32>(b); }
fn nanF() -> f32 { var b = 0x7fc00000u; return bitcast<f32>(b); }
`;
export const NEG_INF = 'negInf()';
export const POS_INF = 'posInf()';

export function dtypeKey(...bufs: (GpuBuf | null)[]): string {
  return bufs.map((b) => (b ? b.dtype : 'none')).join(',');
}
