// Fused attention (FlashAttention-style, O(L) memory): one thread per query row (forward, dq) or per
// key row (dk/dv) with the other side streamed through workgroup memory in tiles; online softmax in the
// forward, recomputation of the probabilities from the saved log-sum-exp in the backward.
// Layouts match the CPU kernel: q, o, dO [B, L, H, D]; k, v [B, S, Hkv, D]; lse [B, H, L].
// Query head h reads kv head h / (H / Hkv); causal queries are the last L of S positions.
import type { GpuBuf } from '../pool.ts';
import { type Runtime, Uniform } from '../runtime.ts';
import { infFns, NEG_INF } from './common.ts';

export interface AttnParams { b: number; l: number; s: number; h: number; hkv: number; d: number; scale: number; causal: boolean }

const ROWS = 64; // threads (rows) per workgroup

/** Keys (or queries) per tile: two tiles of D floats each plus two scalars per row must fit. */
function tileRows(rt: Runtime, d: number): number {
  let t = 64;
  while (t > 1 && 2 * t * d * 4 + 8 * t > rt.maxWorkgroupStorage) t /= 2;
  return t;
}

function check(p: AttnParams): void {
  if (p.d > 256) throw new Error(`webgpu attention supports head dimensions up to 256, got ${p.d}`);
}

const paramsStruct = 'struct P { b: u32, l: u32, s: u32, h: u32, hkv: u32, scale: f32, causal: u32 }';
const uniformOf = (p: AttnParams) => new Uniform().u(p.b, p.l, p.s, p.h, p.hkv).f(p.scale).u(p.causal ? 1 : 0);

/** Cooperative load of `t` rows of D floats (row r of kv head hk at sequence position base + r). */
const loadRows = (dst: string, src: string, t: number, d: number, count: string, addr: string) => `
    for (var e = lid; e < ${t * d}u; e += ${ROWS}u) {
      let r = e / ${d}u;
      let c = e % ${d}u;
      var v = 0.0;
      if (r < ${count}) { v = ${src}[${addr} + c]; }
      ${dst}[e] = v;
    }`;

export function attentionForward(rt: Runtime, q: GpuBuf, k: GpuBuf, v: GpuBuf, o: GpuBuf, lse: GpuBuf, p: AttnParams): void {
  check(p);
  const D = p.d, T = tileRows(rt, D);
  rt.dispatch({ key: `attnFwd:${D}:${T}`, access: 'rrrww', code: () => `
@group(0) @binding(0) var<storage, read> Q: array<f32>;
@group(0) @binding(1) var<storage, read> K: array<f32>;
@group(0) @binding(2) var<storage, read> V: array<f32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
@group(0) @binding(4) var<storage, read_write> LSE: array<f32>;
${paramsStruct}
@group(0) @binding(5) var<uniform> p: P;
var<workgroup> Ks: array<f32, ${T * D}>;
var<workgroup> Vs: array<f32, ${T * D}>;
${infFns}
@compute @workgroup_size(${ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wid.y;
  let b = wid.z;
  let hk = h / (p.h / p.hkv);
  let i = wid.x * ${ROWS}u + lid;
  let valid = i < p.l;
  let shift = p.s - p.l;
  // Last key any row of this block may see (the loop bound is uniform across the workgroup).
  var kEnd = p.s;
  if (p.causal == 1u) { kEnd = min(p.s, wid.x * ${ROWS}u + ${ROWS - 1}u + shift + 1u); }
  let lim = i + shift;
  var qv: array<f32, ${D}>;
  var acc: array<f32, ${D}>;
  var sc: array<f32, ${T}>;
  let qo = ((b * p.l + min(i, p.l - 1u)) * p.h + h) * ${D}u;
  for (var c = 0u; c < ${D}u; c++) { qv[c] = Q[qo + c] * p.scale; acc[c] = 0.0; }
  var m = ${NEG_INF};
  var l = 0.0;
  for (var k0 = 0u; k0 < kEnd; k0 += ${T}u) {
    workgroupBarrier();
    ${loadRows('Ks', 'K', T, D, 'kEnd - k0', '((b * p.s + k0 + r) * p.hkv + hk) * ' + D + 'u')}
    ${loadRows('Vs', 'V', T, D, 'kEnd - k0', '((b * p.s + k0 + r) * p.hkv + hk) * ' + D + 'u')}
    workgroupBarrier();
    var tmax = ${NEG_INF};
    for (var jj = 0u; jj < ${T}u; jj++) {
      let j = k0 + jj;
      var s = ${NEG_INF};
      if (valid && j < kEnd && (p.causal == 0u || j <= lim)) {
        var dot = 0.0;
        for (var c = 0u; c < ${D}u; c++) { dot = fma(qv[c], Ks[jj * ${D}u + c], dot); }
        s = dot;
      }
      sc[jj] = s;
      tmax = max(tmax, s);
    }
    // Branches on per-row values stay inside if-blocks: an early continue would make the next
    // iteration's barrier non-uniform.
    if (tmax > ${NEG_INF}) {
      let mNew = max(m, tmax);
      let corr = exp(m - mNew);
      l *= corr;
      for (var c = 0u; c < ${D}u; c++) { acc[c] *= corr; }
      for (var jj = 0u; jj < ${T}u; jj++) {
        let pj = exp(sc[jj] - mNew);
        if (pj > 0.0) {
          l += pj;
          for (var c = 0u; c < ${D}u; c++) { acc[c] = fma(pj, Vs[jj * ${D}u + c], acc[c]); }
        }
      }
      m = mNew;
    }
  }
  if (!valid) { return; }
  let inv = 1.0 / l;
  for (var c = 0u; c < ${D}u; c++) { O[qo + c] = acc[c] * inv; }
  LSE[(b * p.h + h) * p.l + i] = m + log(l);
}` }, [q, k, v, o, lse], uniformOf(p), [Math.ceil(p.l / ROWS), p.h, p.b]);
}

export function attentionBackward(rt: Runtime, q: GpuBuf, k: GpuBuf, v: GpuBuf, o: GpuBuf, dO: GpuBuf, lse: GpuBuf,
  dq: GpuBuf, dk: GpuBuf, dv: GpuBuf, p: AttnParams): void {
  check(p);
  const D = p.d, T = tileRows(rt, D);
  const head = `${paramsStruct}`;
  // D_i = rowsum(dO * o) per (b, h, i).
  const dsum = rt.temp(p.b * p.h * p.l, 'f32');
  rt.dispatch({ key: `attnDsum:${D}`, access: 'rrw', code: () => `
@group(0) @binding(0) var<storage, read> O: array<f32>;
@group(0) @binding(1) var<storage, read> G: array<f32>;
@group(0) @binding(2) var<storage, read_write> DS: array<f32>;
${head}
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(${ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = wid.x * ${ROWS}u + lid;
  if (i >= p.l) { return; }
  let h = wid.y;
  let b = wid.z;
  let off = ((b * p.l + i) * p.h + h) * ${D}u;
  var s = 0.0;
  for (var c = 0u; c < ${D}u; c++) { s = fma(O[off + c], G[off + c], s); }
  DS[(b * p.h + h) * p.l + i] = s;
}` }, [o, dO, dsum], uniformOf(p), [Math.ceil(p.l / ROWS), p.h, p.b]);

  // dq: one thread per query row, key/value tiles streamed.
  rt.dispatch({ key: `attnDq:${D}:${T}`, access: 'rrrrrrw', code: () => `
@group(0) @binding(0) var<storage, read> Q: array<f32>;
@group(0) @binding(1) var<storage, read> K: array<f32>;
@group(0) @binding(2) var<storage, read> V: array<f32>;
@group(0) @binding(3) var<storage, read> G: array<f32>;
@group(0) @binding(4) var<storage, read> LSE: array<f32>;
@group(0) @binding(5) var<storage, read> DS: array<f32>;
@group(0) @binding(6) var<storage, read_write> DQ: array<f32>;
${head}
@group(0) @binding(7) var<uniform> p: P;
var<workgroup> Ks: array<f32, ${T * D}>;
var<workgroup> Vs: array<f32, ${T * D}>;
@compute @workgroup_size(${ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wid.y;
  let b = wid.z;
  let hk = h / (p.h / p.hkv);
  let i = wid.x * ${ROWS}u + lid;
  let valid = i < p.l;
  let ic = min(i, p.l - 1u);
  let shift = p.s - p.l;
  var kEnd = p.s;
  if (p.causal == 1u) { kEnd = min(p.s, wid.x * ${ROWS}u + ${ROWS - 1}u + shift + 1u); }
  let lim = i + shift;
  let qo = ((b * p.l + ic) * p.h + h) * ${D}u;
  var qv: array<f32, ${D}>;
  var gv: array<f32, ${D}>;
  var acc: array<f32, ${D}>;
  for (var c = 0u; c < ${D}u; c++) { qv[c] = Q[qo + c] * p.scale; gv[c] = G[qo + c]; acc[c] = 0.0; }
  let li = LSE[(b * p.h + h) * p.l + ic];
  let di = DS[(b * p.h + h) * p.l + ic];
  for (var k0 = 0u; k0 < kEnd; k0 += ${T}u) {
    workgroupBarrier();
    ${loadRows('Ks', 'K', T, D, 'kEnd - k0', '((b * p.s + k0 + r) * p.hkv + hk) * ' + D + 'u')}
    ${loadRows('Vs', 'V', T, D, 'kEnd - k0', '((b * p.s + k0 + r) * p.hkv + hk) * ' + D + 'u')}
    workgroupBarrier();
    for (var jj = 0u; jj < ${T}u; jj++) {
      let j = k0 + jj;
      if (valid && j < kEnd && (p.causal == 0u || j <= lim)) {
        var s = 0.0;
        var dp = 0.0;
        for (var c = 0u; c < ${D}u; c++) { s = fma(qv[c], Ks[jj * ${D}u + c], s); dp = fma(gv[c], Vs[jj * ${D}u + c], dp); }
        let ds = exp(s - li) * (dp - di);
        for (var c = 0u; c < ${D}u; c++) { acc[c] = fma(ds, Ks[jj * ${D}u + c], acc[c]); }
      }
    }
  }
  if (!valid) { return; }
  for (var c = 0u; c < ${D}u; c++) { DQ[qo + c] = acc[c] * p.scale; }
}` }, [q, k, v, dO, lse, dsum, dq], uniformOf(p), [Math.ceil(p.l / ROWS), p.h, p.b]);

  // dk, dv: one thread per key row of a kv head; every query head of its group and every query that
  // sees the key is streamed through workgroup memory, so no two threads write the same row.
  rt.dispatch({ key: `attnDkv:${D}:${T}`, access: 'rrrrrrww', code: () => `
@group(0) @binding(0) var<storage, read> Q: array<f32>;
@group(0) @binding(1) var<storage, read> K: array<f32>;
@group(0) @binding(2) var<storage, read> V: array<f32>;
@group(0) @binding(3) var<storage, read> G: array<f32>;
@group(0) @binding(4) var<storage, read> LSE: array<f32>;
@group(0) @binding(5) var<storage, read> DS: array<f32>;
@group(0) @binding(6) var<storage, read_write> DK: array<f32>;
@group(0) @binding(7) var<storage, read_write> DV: array<f32>;
${head}
@group(0) @binding(8) var<uniform> p: P;
var<workgroup> Qs: array<f32, ${T * D}>;
var<workgroup> Gs: array<f32, ${T * D}>;
var<workgroup> Ls: array<f32, ${T}>;
var<workgroup> Dl: array<f32, ${T}>;
@compute @workgroup_size(${ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let hk = wid.y;
  let b = wid.z;
  let j = wid.x * ${ROWS}u + lid;
  let valid = j < p.s;
  let jc = min(j, p.s - 1u);
  let shift = p.s - p.l;
  let group = p.h / p.hkv;
  // First query that sees any key of this block (uniform across the workgroup).
  var qStart = 0u;
  let j0 = wid.x * ${ROWS}u;
  if (p.causal == 1u && j0 > shift) { qStart = j0 - shift; }
  let ko = ((b * p.s + jc) * p.hkv + hk) * ${D}u;
  var kv: array<f32, ${D}>;
  var vv: array<f32, ${D}>;
  var dk: array<f32, ${D}>;
  var dv: array<f32, ${D}>;
  for (var c = 0u; c < ${D}u; c++) { kv[c] = K[ko + c] * p.scale; vv[c] = V[ko + c]; dk[c] = 0.0; dv[c] = 0.0; }
  for (var g = 0u; g < group; g++) {
    let h = hk * group + g;
    for (var q0 = qStart - qStart % ${T}u; q0 < p.l; q0 += ${T}u) {
      workgroupBarrier();
      ${loadRows('Qs', 'Q', T, D, 'p.l - q0', '((b * p.l + q0 + r) * p.h + h) * ' + D + 'u')}
      ${loadRows('Gs', 'G', T, D, 'p.l - q0', '((b * p.l + q0 + r) * p.h + h) * ' + D + 'u')}
      for (var e = lid; e < ${T}u; e += ${ROWS}u) {
        let qi = min(q0 + e, p.l - 1u);
        Ls[e] = LSE[(b * p.h + h) * p.l + qi];
        Dl[e] = DS[(b * p.h + h) * p.l + qi];
      }
      workgroupBarrier();
      for (var ii = 0u; ii < ${T}u; ii++) {
        let i = q0 + ii;
        if (!valid || i >= p.l || (p.causal == 1u && j > i + shift)) { continue; }
        var s = 0.0;
        var dp = 0.0;
        for (var c = 0u; c < ${D}u; c++) { s = fma(kv[c], Qs[ii * ${D}u + c], s); dp = fma(vv[c], Gs[ii * ${D}u + c], dp); }
        let pr = exp(s - Ls[ii]);
        let ds = pr * (dp - Dl[ii]);
        for (var c = 0u; c < ${D}u; c++) {
          dv[c] = fma(pr, Gs[ii * ${D}u + c], dv[c]);
          dk[c] = fma(ds, Qs[ii * ${D}u + c], dk[c]);
        }
      }
    }
  }
  if (!valid) { return; }
  for (var c = 0u; c < ${D}u; c++) { DK[ko + c] = dk[c] * p.scale; DV[ko + c] = dv[c]; }
}` }, [q, k, v, dO, lse, dsum, dk, dv], uniformOf(p), [Math.ceil(p.s / ROWS), p.hkv, p.b]);
}
