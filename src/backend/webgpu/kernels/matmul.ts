// Batched SGEMM, C = alpha * op(A) op(B) + beta * C, row-major, with register tiling: a workgroup of
// 256 threads computes a TM x TN tile of C, each thread an RM x RN set held in registers (rows and
// columns strided by the thread grid, so neighbouring lanes read neighbouring workgroup-memory words
// and write neighbouring outputs: no bank conflicts, coalesced stores); BK-deep
// slices of A and B are staged in workgroup memory (k-major, so the inner loop reads contiguous rows).
// Global loads use vec4 along an operand's contiguous axis when its sizes and strides allow.
import type { GpuBuf } from '../pool.ts';
import { type Runtime, Uniform } from '../runtime.ts';

export interface MatmulParams {
  batch: number; m: number; n: number; k: number; transA: boolean; transB: boolean;
  strideA: number; strideB: number; strideC: number; alpha: number; beta: number;
}

interface Tile { tm: number; tn: number; bk: number; rm: number; rn: number }
const BIG: Tile = { tm: 128, tn: 128, bk: 16, rm: 8, rn: 8 };
const SMALL: Tile = { tm: 64, tn: 64, bk: 16, rm: 4, rn: 4 };

/**
 * WGSL for staging one operand tile into workgroup memory `dst[k * T + outer]`. `kContig` says the
 * operand's rows are along k in memory (A without transpose, B transposed).
 */
function loadTile(name: string, dst: string, t: number, bk: number, kContig: boolean, vec: boolean, dim: string, ld: string, base: string, outer0: string): string {
  const total = t * bk;
  if (!vec) {
    return `
  for (var i = 0u; i < ${total / 256}u; i++) {
    let idx = tid + i * 256u;
    ${kContig ? `let kk = idx % ${bk}u; let oo = idx / ${bk}u;` : `let oo = idx % ${t}u; let kk = idx / ${t}u;`}
    let go = ${outer0} + oo;
    let gk = k0 + kk;
    var v = 0.0;
    if (go < ${dim} && gk < p.k) { v = ${name}[${base} + ${kContig ? `go * ${ld} + gk` : `gk * ${ld} + go`}]; }
    ${dst}[kk * ${t}u + oo] = v;
  }`;
  }
  return `
  for (var i = 0u; i < ${total / 1024}u; i++) {
    let idx = tid + i * 256u;
    ${kContig ? `let kk = (idx % ${bk / 4}u) * 4u; let oo = idx / ${bk / 4}u;` : `let oo = (idx % ${t / 4}u) * 4u; let kk = idx / ${t / 4}u;`}
    let go = ${outer0} + oo;
    let gk = k0 + kk;
    var v = vec4<f32>(0.0);
    if (go < ${dim} && gk < p.k) { v = ${name}[(${base} + ${kContig ? `go * ${ld} + gk` : `gk * ${ld} + go`}) / 4u]; }
    ${kContig
    ? `${dst}[kk * ${t}u + oo] = v.x; ${dst}[(kk + 1u) * ${t}u + oo] = v.y; ${dst}[(kk + 2u) * ${t}u + oo] = v.z; ${dst}[(kk + 3u) * ${t}u + oo] = v.w;`
    : `let o4 = kk * ${t}u + oo; ${dst}[o4] = v.x; ${dst}[o4 + 1u] = v.y; ${dst}[o4 + 2u] = v.z; ${dst}[o4 + 3u] = v.w;`}
  }`;
}

// The register block is written out as named vec4 accumulators (no arrays, no inner loops): shader
// compilers otherwise may keep a dynamically indexed accumulator array in slow local memory.
function code(tile: Tile, transA: boolean, transB: boolean, vecA: boolean, vecB: boolean): string {
  const { tm, tn, bk, rm, rn } = tile;
  const tx = tn / rn, sy = tm / rm, nv = rn / 4;
  const R = [...Array(rm).keys()], V = [...Array(nv).keys()];
  const accDecl = R.map((r) => V.map((v) => `  var acc${r}_${v} = vec4<f32>(0.0);`).join('\n')).join('\n');
  const loadA = R.map((r) => `      let a${r} = As[kk * ${tm}u + ty + ${r * sy}u];`).join('\n');
  const loadB = V.map((v) => `      let b${v} = vec4<f32>(${[0, 1, 2, 3].map((j) => `Bs[kk * ${tn}u + tx + ${(v * 4 + j) * tx}u]`).join(', ')});`).join('\n');
  const fmas = R.map((r) => V.map((v) => `      acc${r}_${v} = fma(vec4<f32>(a${r}), b${v}, acc${r}_${v});`).join('\n')).join('\n');
  const store = R.map((r) => `
  {
    let gm = m0 + ty + ${r * sy}u;
    if (gm < p.m) {
${V.map((v) => [0, 1, 2, 3].map((j) => {
    const comp = 'xyzw'[j];
    return `      { let gn = n0 + tx + ${(v * 4 + j) * tx}u; if (gn < p.n) { let ci = cBase + gm * p.n + gn; var val = p.alpha * acc${r}_${v}.${comp}; if (p.beta != 0.0) { val += p.beta * C[ci]; } C[ci] = val; } }`;
  }).join('\n')).join('\n')}
    }
  }`).join('');
  return `
@group(0) @binding(0) var<storage, read> A: array<${vecA ? 'vec4<f32>' : 'f32'}>;
@group(0) @binding(1) var<storage, read> B: array<${vecB ? 'vec4<f32>' : 'f32'}>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
struct P { m: u32, n: u32, k: u32, sa: u32, sb: u32, sc: u32, alpha: f32, beta: f32 }
@group(0) @binding(3) var<uniform> p: P;
var<workgroup> As: array<f32, ${tm * bk}>;
var<workgroup> Bs: array<f32, ${tn * bk}>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let m0 = wid.y * ${tm}u;
  let n0 = wid.x * ${tn}u;
  let aBase = wid.z * p.sa;
  let bBase = wid.z * p.sb;
  let ty = tid / ${tx}u;
  let tx = tid % ${tx}u;
${accDecl}
  for (var k0 = 0u; k0 < p.k; k0 += ${bk}u) {
    ${loadTile('A', 'As', tm, bk, !transA, vecA, 'p.m', transA ? 'p.m' : 'p.k', 'aBase', 'm0')}
    ${loadTile('B', 'Bs', tn, bk, transB, vecB, 'p.n', transB ? 'p.k' : 'p.n', 'bBase', 'n0')}
    workgroupBarrier();
    for (var kk = 0u; kk < ${bk}u; kk++) {
${loadA}
${loadB}
${fmas}
    }
    workgroupBarrier();
  }
  let cBase = wid.z * p.sc;${store}
}`;
}

export function matmul(rt: Runtime, a: GpuBuf, b: GpuBuf, c: GpuBuf, q: MatmulParams): void {
  const { batch, m, n, k } = q;
  if (batch === 0 || m === 0 || n === 0) return;
  if (k === 0 || q.alpha === 0) {
    // Nothing to multiply: C = beta * C (BLAS semantics; beta = 0 clears without reading).
    scaleC(rt, c, batch, m * n, q.strideC, q.beta);
    return;
  }
  const tile = m * n * batch >= 256 * 256 ? BIG : SMALL;
  // vec4 loads along the contiguous axis need that axis, the batch stride and the row pitch in multiples of 4.
  const vecA = (q.transA ? m % 4 === 0 : k % 4 === 0) && q.strideA % 4 === 0;
  const vecB = (q.transB ? k % 4 === 0 : n % 4 === 0) && q.strideB % 4 === 0;
  const key = `matmul:${tile.tm}:${q.transA}:${q.transB}:${vecA}:${vecB}`;
  const u = new Uniform().u(m, n, k, q.strideA, q.strideB, q.strideC).f(q.alpha, q.beta);
  rt.dispatch({ key, access: 'rrw', code: () => code(tile, q.transA, q.transB, vecA, vecB) }, [a, b, c], u,
    [Math.ceil(n / tile.tn), Math.ceil(m / tile.tm), batch]);
}

function scaleC(rt: Runtime, c: GpuBuf, batch: number, per: number, stride: number, beta: number): void {
  rt.dispatch({ key: 'matmul:scaleC', access: 'w', code: () => `
@group(0) @binding(0) var<storage, read_write> C: array<f32>;
struct P { total: u32, per: u32, stride: u32, beta: f32 }
@group(0) @binding(1) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid.x;
  if (i >= p.total) { return; }
  let ci = (i / p.per) * p.stride + i % p.per;
  C[ci] = select(0.0, p.beta * C[ci], p.beta != 0.0);
}` }, [c], new Uniform().u(batch * per, per, stride).f(beta), rt.grid(Math.ceil((batch * per) / 256)));
}
