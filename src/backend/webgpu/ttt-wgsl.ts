// WGSL for the TTT mini-batch scan: one workgroup per (batch, head) walks the segments (full
// mini-batches, remainder, decoded tokens) in order, so no readback is needed between mini-batches.
// Every work array of a head (inner weights, gradient sums, the mini-batch tiles, the backward's
// adjoints) lives in that head's slice of one storage scratch buffer S: the MLP's 4f-wide hidden
// tiles exceed workgroup memory, and one layout for all keeps the code uniform. Threads split each
// phase by output element (gather form, no atomics); phases are separated by storage barriers.
// The math mirrors the CPU reference (src/backend/cpu/ttt.ts) loop for loop.
import type { KernelSpec } from './runtime.ts';

export const WGS = 64; // threads per workgroup

export interface TttShape { mlp: boolean; f: number; h: number; k: number }

export interface LayerLayout {
  a: number; d: number;
  W: number; b: number; gW: number; gB: number; keys: number; P: number; G: number; Z: number; Zb: number;
  dW: number; db: number; dWc: number; dbc: number; dKeys: number; dP: number; dG: number; dZb: number;
}

export interface HeadLayout {
  layers: LayerLayout[];
  q: number; tgt: number; lr: number; te: number; dte: number; dlr: number; dq: number; dtgt: number;
  dZ2: number; dZ1: number; H: number; DH: number; A: number; M: number; U: number; DCL: number;
  XH: number; LS: number; DGAM: number; DBET: number; dlnW: number; dlnB: number; dTe: number;
  /** Floats per (batch, head) workspace. */
  size: number;
}

/** Offsets of a head's work arrays inside its workspace. */
export function headLayout(s: TttShape): HeadLayout {
  const { f, h, k } = s;
  let off = 0;
  const at = (n: number) => { const o = off; off += n; return o; };
  const layer = (a: number, d: number): LayerLayout => ({
    a, d, W: at(a * d), b: at(d), gW: at(a * d), gB: at(d), keys: at(k * a), P: at(k * a), G: at(k * d), Z: at(k * d),
    Zb: at(k * d), dW: at(a * d), db: at(d), dWc: at(a * d), dbc: at(d), dKeys: at(k * a), dP: at(k * a), dG: at(k * d),
    dZb: at(k * d),
  });
  const layers = s.mlp ? [layer(f, h), layer(h, f)] : [layer(f, f)];
  const rest = {
    q: at(k * f), tgt: at(k * f), lr: at(k), te: at(k), dte: at(k), dlr: at(k), dq: at(k * f), dtgt: at(k * f),
    dZ2: at(k * f), dZ1: at(k * h), H: at(k * h), DH: at(k * h), A: at(k * k), M: at(k * k), U: at(k * h), DCL: at(k),
    XH: at(k * f), LS: at(k * 4 * f), DGAM: at(k * f), DBET: at(k * f), dlnW: at(f), dlnB: at(f), dTe: at(k),
  };
  return { layers, ...rest, size: off };
}

/** Offsets of the packed parameter buffer P: tokenEta, W1, b1, (W2, b2), lnW, lnB. */
export function paramLayout(s: TttShape, heads: number) {
  const { f, h, k } = s;
  let off = 0;
  const at = (n: number) => { const o = off; off += n; return o; };
  const te = at(k), w1 = at(heads * f * h), b1 = at(heads * h);
  const w2 = s.mlp ? at(heads * h * f) : 0, b2 = s.mlp ? at(heads * f) : 0;
  const lnW = at(heads * f), lnB = at(heads * f);
  return { te, w1, b1, w2, b2, lnW, lnB, size: off };
}

/** Uniform block shared by the forward and backward kernels (u32 fields, in this order). */
export const UNIFORM_FIELDS = [
  'B', 'nh', 'L', 'N', 'start', 'resume', 'useState', 'save', 'nSeg',
  'st0', 'st1', 'st2', 'st3', 'sg0', 'sg1', 'sg2', 'sg3', // state W1 b1 W2 b2 and their gradient sums
  'sv0', 'sv1', 'sv2', 'sv3', // saved W1 b1 W2 b2 (per segment)
  'dxq', 'dxk', 'dxv', 'dlr', 'pw0', 'pw1', 'pw2', 'pw3', 'pte', 'plnW', 'plnB', // packed parameters
  'pg', 'pgBlk', 'gw0', 'gw1', 'gw2', 'gw3', 'gte', 'glnW', 'glnB', // per-batch gradient blocks
] as const;
export type UniformValues = Record<(typeof UNIFORM_FIELDS)[number], number>;

const u = (n: number) => `${n}u`;

/** Element loop over [0, n) split across the workgroup (no barrier inside). */
const each = (n: string, body: string) => `for (var e = lid; e < ${n}; e += ${WGS}u) {\n${body}\n}`;

/**
 * Bindings of the scan kernels: inputs X, packed parameters PR, IO (the output of the forward, dOut
 * of the backward), the scratch S, and the uniform block of UNIFORM_FIELDS.
 */
export function scanBindings(mode: 'fwd' | 'bwd'): Pick<KernelSpec, 'bindings' | 'uniform'> {
  return {
    bindings: [['X', 'f32', 'r'], ['PR', 'f32', 'r'], ['IO', 'f32', mode === 'fwd' ? 'w' : 'r'], ['S', 'f32', 'w']],
    uniform: UNIFORM_FIELDS.map((n) => `${n}: u32`).join(', '),
  };
}

function header(f: number): string {
  return `
var<private> lid: u32;
var<private> bb: u32;
var<private> bh: u32;
var<private> bi: u32;
var<private> hh: u32;
fn sync() { storageBarrier(); workgroupBarrier(); }
fn th(x: f32) -> f32 { return tanh(clamp(x, -15.0, 15.0)); }
fn gelu(x: f32) -> f32 { return 0.5 * x * (1.0 + th(0.7978845608028654 * (x + 0.044715 * x * x * x))); }
fn geluGrad(x: f32) -> f32 {
  let t = th(0.7978845608028654 * (x + 0.044715 * x * x * x));
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x);
}
// ttt.py gelu_bwd (rounded constants) and its derivative: the inner gradient uses them.
fn innerGeluGrad(x: f32) -> f32 {
  let t = th(0.79788456 * x * (1.0 + 0.044715 * x * x));
  return 0.5 * x * ((1.0 - t * t) * (0.79788456 + 0.1070322243 * x * x)) + 0.5 * (1.0 + t);
}
fn innerGeluGrad2(x: f32) -> f32 {
  let t = th(0.79788456 * x * (1.0 + 0.044715 * x * x));
  let up = 0.79788456 + 0.1070322243 * x * x;
  return (1.0 - t * t) * (up - x * t * up * up + 0.1070322243 * x * x);
}
fn gam(j: u32) -> f32 { return PR[p.plnW + hh * ${u(f)} + j]; }
fn bet(j: u32) -> f32 { return PR[p.plnB + hh * ${u(f)} + j]; }
`;
}

/** Per-layer functions (forward and backward of projection, dual form and update). */
function layerFns(l: LayerLayout, n: number, hd: HeadLayout, k: number): string {
  const A = u(l.a), D = u(l.d), K = u(k);
  const s = (off: number, idx: string) => `S[bb + ${u(off)} + ${idx}]`;
  return `
// Z = keys W + b
fn project${n}(n: u32) {
  ${each(`n * ${D}`, `
    let s = e / ${D}; let j = e % ${D};
    var acc = ${s(l.b, 'j')};
    for (var i = 0u; i < ${A}; i++) { acc = fma(${s(l.keys, `s * ${A} + i`)}, ${s(l.W, `i * ${D} + j`)}, acc); }
    ${s(l.Z, 'e')} = acc;`)}
  sync();
}
// Zb_t = P_t (W - te_t gW) + b - te_t gB - sum_{s<=t} te_t lr_s (P_t . keys_s + 1) G_s
fn dual${n}(n: u32, hasPrev: bool) {
  ${each('n * n', `
    let t = e / n; let s = e % n;
    if (s <= t) {
      var dot = 1.0;
      for (var i = 0u; i < ${A}; i++) { dot = fma(${s(l.P, `t * ${A} + i`)}, ${s(l.keys, `s * ${A} + i`)}, dot); }
      ${s(hd.A, `t * ${K} + s`)} = dot;
    }`)}
  sync();
  ${each(`n * ${D}`, `
    let t = e / ${D}; let j = e % ${D};
    let te = ${s(hd.te, 't')};
    var acc = ${s(l.b, 'j')};
    if (hasPrev) { acc -= te * ${s(l.gB, 'j')}; }
    for (var i = 0u; i < ${A}; i++) {
      var w = ${s(l.W, `i * ${D} + j`)};
      if (hasPrev) { w -= te * ${s(l.gW, `i * ${D} + j`)}; }
      acc = fma(${s(l.P, `t * ${A} + i`)}, w, acc);
    }
    for (var s = 0u; s <= t; s++) {
      acc -= te * ${s(hd.lr, 's')} * ${s(hd.A, `t * ${K} + s`)} * ${s(l.G, `s * ${D} + j`)};
    }
    ${s(l.Zb, 'e')} = acc;`)}
  sync();
}
// gW += sum_s lr_s keys_s^T G_s, gB += sum_s lr_s G_s; a completed mini-batch commits and resets them.
fn update${n}(n: u32, teLast: f32, commit: bool) {
  ${each(`${u(l.a * l.d + l.d)}`, `
    if (e < ${u(l.a * l.d)}) {
      let i = e / ${D}; let j = e % ${D};
      var g = ${s(l.gW, 'e')};
      for (var s = 0u; s < n; s++) { g = fma(${s(hd.lr, 's')} * ${s(l.keys, `s * ${A} + i`)}, ${s(l.G, `s * ${D} + j`)}, g); }
      if (commit) { ${s(l.W, 'e')} -= teLast * g; g = 0.0; }
      ${s(l.gW, 'e')} = g;
    } else {
      let j = e - ${u(l.a * l.d)};
      var g = ${s(l.gB, 'j')};
      for (var s = 0u; s < n; s++) { g = fma(${s(hd.lr, 's')}, ${s(l.G, `s * ${D} + j`)}, g); }
      if (commit) { ${s(l.b, 'j')} -= teLast * g; g = 0.0; }
      ${s(l.gB, 'j')} = g;
    }`)}
  sync();
}
// Backward of dual() without carried sums: dZb -> dP, dKeys, dG, dW, db, dte, dlr.
fn dualBwd${n}(n: u32) {
  ${each('n * n', `
    let t = e / n; let s = e % n;
    if (s <= t) {
      var dot = 1.0;
      for (var i = 0u; i < ${A}; i++) { dot = fma(${s(l.P, `t * ${A} + i`)}, ${s(l.keys, `s * ${A} + i`)}, dot); }
      var m = 0.0;
      for (var j = 0u; j < ${D}; j++) { m = fma(${s(l.dZb, `t * ${D} + j`)}, ${s(l.G, `s * ${D} + j`)}, m); }
      ${s(hd.A, `t * ${K} + s`)} = dot;
      ${s(hd.M, `t * ${K} + s`)} = m;
    }`)}
  ${each(`n * ${A}`, `
    let t = e / ${A}; let i = e % ${A};
    var acc = 0.0;
    for (var j = 0u; j < ${D}; j++) { acc = fma(${s(l.dZb, `t * ${D} + j`)}, ${s(l.W, `i * ${D} + j`)}, acc); }
    ${s(l.dP, 'e')} += acc;`)}
  ${each(`${u(l.a * l.d)}`, `
    let i = e / ${D}; let j = e % ${D};
    var acc = 0.0;
    for (var t = 0u; t < n; t++) { acc = fma(${s(l.P, `t * ${A} + i`)}, ${s(l.dZb, `t * ${D} + j`)}, acc); }
    ${s(l.dW, 'e')} += acc;`)}
  ${each(D, `
    var acc = 0.0;
    for (var t = 0u; t < n; t++) { acc += ${s(l.dZb, `t * ${D} + e`)}; }
    ${s(l.db, 'e')} += acc;`)}
  sync();
  ${each('n', `
    var acc = 0.0;
    for (var s = 0u; s <= e; s++) { acc += ${s(hd.M, `e * ${K} + s`)} * ${s(hd.lr, 's')} * ${s(hd.A, `e * ${K} + s`)}; }
    ${s(hd.dte, 'e')} -= acc;`)}
  ${each('n', `
    var acc = 0.0;
    for (var t = e; t < n; t++) { acc += ${s(hd.M, `t * ${K} + e`)} * ${s(hd.te, 't')} * ${s(hd.A, `t * ${K} + e`)}; }
    ${s(hd.dlr, 'e')} -= acc;`)}
  ${each(`n * ${A}`, `
    let t = e / ${A}; let i = e % ${A};
    var acc = 0.0;
    for (var s = 0u; s <= t; s++) {
      acc -= ${s(hd.M, `t * ${K} + s`)} * ${s(hd.te, 't')} * ${s(hd.lr, 's')} * ${s(l.keys, `s * ${A} + i`)};
    }
    ${s(l.dP, 'e')} += acc;`)}
  ${each(`n * ${A}`, `
    let s = e / ${A}; let i = e % ${A};
    var acc = 0.0;
    for (var t = s; t < n; t++) {
      acc -= ${s(hd.M, `t * ${K} + s`)} * ${s(hd.te, 't')} * ${s(hd.lr, 's')} * ${s(l.P, `t * ${A} + i`)};
    }
    ${s(l.dKeys, 'e')} += acc;`)}
  ${each(`n * ${D}`, `
    let s = e / ${D}; let j = e % ${D};
    var acc = 0.0;
    for (var t = s; t < n; t++) {
      acc += ${s(hd.te, 't')} * ${s(hd.lr, 's')} * ${s(hd.A, `t * ${K} + s`)} * ${s(l.dZb, `t * ${D} + j`)};
    }
    ${s(l.dG, 'e')} -= acc;`)}
  sync();
}
// Backward of a committing update() with no carried sums, given dWc, dbc = dL/d(W', b').
fn updBwd${n}(n: u32, teLast: f32, last: u32) {
  ${each(`n * ${D}`, `
    let s = e / ${D}; let j = e % ${D};
    var acc = ${s(l.dbc, 'j')};
    for (var i = 0u; i < ${A}; i++) { acc = fma(${s(l.keys, `s * ${A} + i`)}, ${s(l.dWc, `i * ${D} + j`)}, acc); }
    ${s(hd.U, 'e')} = acc;`)}
  ${each(`n * ${A}`, `
    let s = e / ${A}; let i = e % ${A};
    var acc = 0.0;
    for (var j = 0u; j < ${D}; j++) { acc = fma(${s(l.dWc, `i * ${D} + j`)}, ${s(l.G, `s * ${D} + j`)}, acc); }
    ${s(l.dKeys, 'e')} -= teLast * ${s(hd.lr, 's')} * acc;`)}
  sync();
  ${each('n', `
    var dcl = 0.0;
    for (var j = 0u; j < ${D}; j++) { dcl -= ${s(hd.U, `e * ${D} + j`)} * ${s(l.G, `e * ${D} + j`)}; }
    ${s(hd.DCL, 'e')} = dcl;
    ${s(hd.dlr, 'e')} += dcl * teLast;`)}
  ${each(`n * ${D}`, `
    let s = e / ${D};
    ${s(l.dG, 'e')} -= teLast * ${s(hd.lr, 's')} * ${s(hd.U, 'e')};`)}
  sync();
  if (lid == 0u) {
    var acc = 0.0;
    for (var s = 0u; s < n; s++) { acc += ${s(hd.DCL, 's')} * ${s(hd.lr, 's')}; }
    ${s(hd.dte, 'last')} += acc;
  }
  sync();
}
// Backward of project(): dKeys += dZ W^T, dW += keys^T dZ, db += sum dZ.
fn projBwd${n}(n: u32, dz: u32) {
  ${each(D, `
    var acc = 0.0;
    for (var s = 0u; s < n; s++) { acc += S[bb + dz + s * ${D} + e]; }
    ${s(l.db, 'e')} += acc;`)}
  ${each(`n * ${A}`, `
    let s = e / ${A}; let i = e % ${A};
    var acc = 0.0;
    for (var j = 0u; j < ${D}; j++) { acc = fma(S[bb + dz + s * ${D} + j], ${s(l.W, `i * ${D} + j`)}, acc); }
    ${s(l.dKeys, 'e')} += acc;`)}
  ${each(`${u(l.a * l.d)}`, `
    let i = e / ${D}; let j = e % ${D};
    var acc = 0.0;
    for (var s = 0u; s < n; s++) { acc = fma(${s(l.keys, `s * ${A} + i`)}, S[bb + dz + s * ${D} + j], acc); }
    ${s(l.dW, 'e')} += acc;`)}
  sync();
}
`;
}

/** Head-level functions: inner gradients, the forward of a segment, LN pieces and their backward. */
function headFns(s: TttShape, hd: HeadLayout): string {
  const F = u(s.f), H = u(s.h), K = u(s.k);
  const S = (off: number, idx: string) => `S[bb + ${u(off)} + ${idx}]`;
  const [l1, l2] = hd.layers;
  const last = l2 ?? l1;
  const rowStats = (zoff: string) => `
      var mu = 0.0;
      for (var j = 0u; j < ${F}; j++) { mu += S[${zoff} + j]; }
      mu /= f32(${F});
      var vr = 0.0;
      for (var j = 0u; j < ${F}; j++) { let c = S[${zoff} + j] - mu; vr += c * c; }
      let sd = sqrt(vr / f32(${F}) + 1e-6);`;
  return `
// Gradient of 1/2 ||LN(z) - tgt||^2 w.r.t. z, one row per thread (ttt.py ln_fused_l2_bwd).
fn lnl2(n: u32, zOff: u32, gOff: u32) {
  for (var r = lid; r < n; r += ${WGS}u) {
    let zo = bb + zOff + r * ${F};
    let to = bb + ${u(hd.tgt)} + r * ${F};
    let go = bb + gOff + r * ${F};
    ${rowStats('zo')}
    var s1 = 0.0; var s2 = 0.0;
    for (var j = 0u; j < ${F}; j++) {
      let xh = (S[zo + j] - mu) / sd;
      let gx = (gam(j) * xh + bet(j) - S[to + j]) * gam(j);
      S[go + j] = gx;
      s1 += gx; s2 += gx * xh;
    }
    for (var j = 0u; j < ${F}; j++) {
      let xh = (S[zo + j] - mu) / sd;
      S[go + j] = (S[go + j] - s1 / f32(${F}) - xh * s2 / f32(${F})) / sd;
    }
  }
  sync();
}
// Vector-Jacobian product of lnl2: dz rows into dZ2, dtgt (accumulated), per-row dgamma/dbeta terms.
fn lnl2Bwd(n: u32, zOff: u32, dgOff: u32) {
  for (var r = lid; r < n; r += ${WGS}u) {
    let zo = bb + zOff + r * ${F};
    let to = bb + ${u(hd.tgt)} + r * ${F};
    let dgo = bb + dgOff + r * ${F};
    let ls = bb + ${u(hd.LS)} + r * ${u(4 * s.f)};
    ${rowStats('zo')}
    var s1 = 0.0; var s2 = 0.0;
    for (var j = 0u; j < ${F}; j++) {
      let xh = (S[zo + j] - mu) / sd;
      let g0 = gam(j) * xh + bet(j) - S[to + j];
      let gx = g0 * gam(j);
      S[ls + j] = xh; S[ls + ${F} + j] = g0; S[ls + ${u(2 * s.f)} + j] = gx;
      s1 += gx; s2 += gx * xh;
    }
    var su = 0.0; var sux = 0.0; var dstd = 0.0;
    for (var j = 0u; j < ${F}; j++) {
      let xh = S[ls + j]; let gx = S[ls + ${u(2 * s.f)} + j];
      let uu = S[dgo + j] / sd;
      su += uu; sux += uu * xh;
      let gOut = (gx - s1 / f32(${F}) - xh * s2 / f32(${F})) / sd;
      dstd -= S[dgo + j] * gOut / sd;
    }
    var mdx = 0.0; var mdxx = 0.0;
    for (var j = 0u; j < ${F}; j++) {
      let xh = S[ls + j]; let g0 = S[ls + ${F} + j]; let gx = S[ls + ${u(2 * s.f)} + j];
      let uu = S[dgo + j] / sd;
      let dgx = uu - su / f32(${F}) - xh * sux / f32(${F});
      let dgo2 = dgx * gam(j);
      ${S(hd.DGAM, `r * ${F} + j`)} = dgx * g0 + dgo2 * xh;
      ${S(hd.DBET, `r * ${F} + j`)} = dgo2;
      ${S(hd.dtgt, `r * ${F} + j`)} -= dgo2;
      let dxh = -(s2 / f32(${F})) * uu - (sux / f32(${F})) * gx + dgo2 * gam(j);
      S[ls + ${u(3 * s.f)} + j] = dxh;
      mdx += dxh; mdxx += dxh * xh;
    }
    mdx /= f32(${F}); mdxx /= f32(${F});
    for (var j = 0u; j < ${F}; j++) {
      let xh = S[ls + j];
      ${S(hd.dZ2, `r * ${F} + j`)} = (S[ls + ${u(3 * s.f)} + j] - mdx - xh * mdxx) / sd + dstd * xh / f32(${F});
    }
  }
  sync();
  ${each(F, `
    var gw = 0.0; var gb = 0.0;
    for (var r = 0u; r < n; r++) { gw += ${S(hd.DGAM, `r * ${F} + e`)}; gb += ${S(hd.DBET, `r * ${F} + e`)}; }
    ${S(hd.dlnW, 'e')} += gw;
    ${S(hd.dlnB, 'e')} += gb;`)}
  sync();
}
// Inner gradients at the segment's starting weights, then the dual form of every layer.
fn forwardSegment(n: u32, hasPrev: bool) {
  project1(n);
${l2 ? `
  ${each(`n * ${H}`, `${S(l2.keys, 'e')} = gelu(${S(l1.Z, 'e')});`)}
  sync();
  project2(n);
  lnl2(n, ${u(l2.Z)}, ${u(l2.G)});
  // G1 = (G2 W2^T) * gelu'(Z1); H = G2 W2^T is kept for the backward.
  ${each(`n * ${H}`, `
    let s = e / ${H}; let i = e % ${H};
    var acc = 0.0;
    for (var j = 0u; j < ${F}; j++) { acc = fma(${S(l2.G, `s * ${F} + j`)}, ${S(l2.W, `i * ${F} + j`)}, acc); }
    ${S(hd.H, 'e')} = acc;
    ${S(l1.G, 'e')} = acc * innerGeluGrad(${S(l1.Z, 'e')});`)}
  sync();
  dual1(n, hasPrev);
  ${each(`n * ${H}`, `${S(l2.P, 'e')} = gelu(${S(l1.Zb, 'e')});`)}
  sync();
  dual2(n, hasPrev);` : `
  lnl2(n, ${u(l1.Z)}, ${u(l1.G)});
  dual1(n, hasPrev);`}
}
// Loads rows t0..t0+n-1 of this head (tokens at mini-batch offsets o..o+n-1).
fn loadSegment(t0: u32, n: u32, o: u32) {
  ${each(`n * ${F}`, `
    let src = (bh * p.L + t0) * ${F} + e;
    let q = X[src]; let k = X[p.N + src]; let v = X[2u * p.N + src];
    ${S(hd.q, 'e')} = q; ${S(l1.P, 'e')} = q; ${S(l1.keys, 'e')} = k; ${S(hd.tgt, 'e')} = v - k;`)}
  ${each('n', `
    ${S(hd.lr, 'e')} = X[3u * p.N + bh * p.L + t0 + e];
    ${S(hd.te, 'e')} = PR[p.pte + o + e];`)}
  sync();
}
fn etaLast() -> f32 { return PR[p.pte + ${u(s.k - 1)}]; }
const LAST_ZB = ${u(last.Zb)};
const LAST_DZB = ${u(last.dZb)};
`;
}

/** Moves a layer's weights (and optionally sums) between its workspace and a [.., size] region. */
function layerCopy(l: LayerLayout, i: number, dir: 'in' | 'out', region: (w: 'W' | 'b') => string, sums?: (w: 'W' | 'b') => string): string {
  const AD = l.a * l.d;
  const S = (off: number, idx: string) => `S[bb + ${u(off)} + ${idx}]`;
  const mv = (ws: string, rg: string) => (dir === 'in' ? `${ws} = ${rg};` : `${rg} = ${ws};`);
  return `// layer ${i + 1}
  ${each(u(AD + l.d), `
    if (e < ${u(AD)}) {
      ${mv(S(l.W, 'e'), region('W') + ` + e]`)}
      ${sums ? mv(S(l.gW, 'e'), sums('W') + ` + e]`) : ''}
    } else {
      let j = e - ${u(AD)};
      ${mv(S(l.b, 'j'), region('b') + ` + j]`)}
      ${sums ? mv(S(l.gB, 'j'), sums('b') + ` + j]`) : ''}
    }`)}`;
}

export function forwardCode(s: TttShape): string {
  const hd = headLayout(s);
  const F = u(s.f), K = u(s.k);
  const S = (off: number, idx: string) => `S[bb + ${u(off)} + ${idx}]`;
  const sizes = (l: LayerLayout) => ({ W: l.a * l.d, b: l.d });
  const stateIn = hd.layers.map((l, i) => {
    const z = sizes(l);
    return `if (resume) {
  ${layerCopy(l, i, 'in', (w) => `S[p.st${2 * i + (w === 'b' ? 1 : 0)} + bh * ${u(z[w])}`, (w) => `S[p.sg${2 * i + (w === 'b' ? 1 : 0)} + bh * ${u(z[w])}`)}
  } else {
  ${each(u(z.W + z.b), `
    if (e < ${u(z.W)}) { ${S(l.W, 'e')} = PR[p.pw${2 * i} + hh * ${u(z.W)} + e]; ${S(l.gW, 'e')} = 0.0; }
    else { let j = e - ${u(z.W)}; ${S(l.b, 'j')} = PR[p.pw${2 * i + 1} + hh * ${u(z.b)} + j]; ${S(l.gB, 'j')} = 0.0; }`)}
  }`;
  }).join('\n  ');
  const save = hd.layers.map((l, i) => {
    const z = sizes(l);
    return layerCopy(l, i, 'out', (w) => `S[p.sv${2 * i + (w === 'b' ? 1 : 0)} + (bh * p.nSeg + si) * ${u(z[w])}`);
  }).join('\n    ');
  const stateOut = hd.layers.map((l, i) => {
    const z = sizes(l);
    return layerCopy(l, i, 'out', (w) => `S[p.st${2 * i + (w === 'b' ? 1 : 0)} + bh * ${u(z[w])}`, (w) => `S[p.sg${2 * i + (w === 'b' ? 1 : 0)} + bh * ${u(z[w])}`);
  }).join('\n  ');
  return `${header(s.f)}
${hd.layers.map((l, i) => layerFns(l, i + 1, hd, s.k)).join('\n')}
${headFns(s, hd)}
// out rows: q + LN(Zb) of the last layer, written to [B, L, nh * f].
fn outRows(n: u32, t0: u32) {
  for (var r = lid; r < n; r += ${WGS}u) {
    let zo = bb + LAST_ZB + r * ${F};
    var mu = 0.0;
    for (var j = 0u; j < ${F}; j++) { mu += S[zo + j]; }
    mu /= f32(${F});
    var vr = 0.0;
    for (var j = 0u; j < ${F}; j++) { let c = S[zo + j] - mu; vr += c * c; }
    let sd = sqrt(vr / f32(${F}) + 1e-6);
    let dst = ((bi * p.L + t0 + r) * p.nh + hh) * ${F};
    for (var j = 0u; j < ${F}; j++) {
      IO[dst + j] = ${S(hd.q, `r * ${F} + j`)} + gam(j) * ((S[zo + j] - mu) / sd) + bet(j);
    }
  }
}
@compute @workgroup_size(${WGS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  lid = li; bh = wid.x; bi = bh / p.nh; hh = bh % p.nh; bb = bh * ${u(hd.size)};
  let resume = p.resume == 1u;
  ${stateIn}
  sync();
  var hasPrev = resume && (p.start % ${K}) != 0u;
  var t = 0u;
  var si = 0u;
  loop {
    if (t >= p.L) { break; }
    let o = (p.start + t) % ${K};
    let n = min(${K} - o, p.L - t);
    if (p.save == 1u) {
    ${save}
    }
    loadSegment(t, n, o);
    forwardSegment(n, hasPrev);
    outRows(n, t);
    let commit = o + n == ${K};
    ${hd.layers.map((_, i) => `update${i + 1}(n, etaLast(), commit);`).join(' ')}
    hasPrev = !commit;
    t += n;
    si += 1u;
  }
  if (p.useState == 1u) {
  ${stateOut}
  }
}`;
}

export function backwardCode(s: TttShape): string {
  const hd = headLayout(s);
  const F = u(s.f), H = u(s.h), K = u(s.k);
  const S = (off: number, idx: string) => `S[bb + ${u(off)} + ${idx}]`;
  const [l1, l2] = hd.layers;
  const loadSaved = hd.layers.map((l, i) => layerCopy(l, i, 'in', (w) => `S[p.sv${2 * i + (w === 'b' ? 1 : 0)} + (bh * p.nSeg + si) * ${u(w === 'W' ? l.a * l.d : l.d)}`)).join('\n    ');
  const resetLayer = (l: LayerLayout) => `
    ${each(u(l.a * l.d), `${S(l.dW, 'e')} = ${S(l.dWc, 'e')};`)}
    ${each(u(l.d), `${S(l.db, 'e')} = ${S(l.dbc, 'e')};`)}
    ${each(`n * ${u(l.a)}`, `${S(l.dKeys, 'e')} = 0.0; ${S(l.dP, 'e')} = 0.0;`)}
    ${each(`n * ${u(l.d)}`, `${S(l.dG, 'e')} = 0.0;`)}`;
  const carry = (l: LayerLayout) => `
    ${each(u(l.a * l.d), `${S(l.dWc, 'e')} = ${S(l.dW, 'e')};`)}
    ${each(u(l.d), `${S(l.dbc, 'e')} = ${S(l.db, 'e')};`)}`;
  // Per-batch gradient block: [dW1 | db1 | dW2 | db2] per layer, then dte [nh, K], dlnW, dlnB [nh, f].
  const pgOut = hd.layers.map((l, i) => `
  ${each(u(l.a * l.d), `S[p.pg + bi * p.pgBlk + p.gw${2 * i} + hh * ${u(l.a * l.d)} + e] = ${S(l.dWc, 'e')};`)}
  ${each(u(l.d), `S[p.pg + bi * p.pgBlk + p.gw${2 * i + 1} + hh * ${u(l.d)} + e] = ${S(l.dbc, 'e')};`)}`).join('');
  return `${header(s.f)}
${hd.layers.map((l, i) => layerFns(l, i + 1, hd, s.k)).join('\n')}
${headFns(s, hd)}
// out = q + LN(Zb): LayerNorm backward into the last layer's dZb; dq, dlnW, dlnB.
fn lnOutBwd(n: u32, t0: u32) {
  for (var r = lid; r < n; r += ${WGS}u) {
    let zo = bb + LAST_ZB + r * ${F};
    let src = ((bi * p.L + t0 + r) * p.nh + hh) * ${F};
    var mu = 0.0;
    for (var j = 0u; j < ${F}; j++) { mu += S[zo + j]; }
    mu /= f32(${F});
    var vr = 0.0;
    for (var j = 0u; j < ${F}; j++) { let c = S[zo + j] - mu; vr += c * c; }
    let sd = sqrt(vr / f32(${F}) + 1e-6);
    var m1 = 0.0; var m2 = 0.0;
    for (var j = 0u; j < ${F}; j++) {
      let dy = IO[src + j];
      let xh = (S[zo + j] - mu) / sd;
      ${S(hd.XH, `r * ${F} + j`)} = xh;
      ${S(hd.dq, `r * ${F} + j`)} = dy;
      let dxh = dy * gam(j);
      m1 += dxh; m2 += dxh * xh;
    }
    m1 /= f32(${F}); m2 /= f32(${F});
    for (var j = 0u; j < ${F}; j++) {
      let xh = ${S(hd.XH, `r * ${F} + j`)};
      S[bb + LAST_DZB + r * ${F} + j] = (IO[src + j] * gam(j) - m1 - xh * m2) / sd;
    }
  }
  sync();
  ${each(F, `
    var gw = 0.0; var gb = 0.0;
    for (var r = 0u; r < n; r++) {
      let dy = IO[((bi * p.L + t0 + r) * p.nh + hh) * ${F} + e];
      gw += dy * ${S(hd.XH, `r * ${F} + e`)}; gb += dy;
    }
    ${S(hd.dlnW, 'e')} += gw;
    ${S(hd.dlnB, 'e')} += gb;`)}
  sync();
}
@compute @workgroup_size(${WGS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  lid = li; bh = wid.x; bi = bh / p.nh; hh = bh % p.nh; bb = bh * ${u(hd.size)};
  ${hd.layers.map((l) => `${each(u(l.a * l.d), `${S(l.dWc, 'e')} = 0.0;`)}\n  ${each(u(l.d), `${S(l.dbc, 'e')} = 0.0;`)}`).join('\n  ')}
  ${each(F, `${S(hd.dlnW, 'e')} = 0.0; ${S(hd.dlnB, 'e')} = 0.0;`)}
  ${each(K, `${S(hd.dTe, 'e')} = 0.0;`)}
  var si = p.nSeg;
  loop {
    if (si == 0u) { break; }
    si -= 1u;
    let t0 = si * ${K};
    let n = min(${K}, p.L - t0);
    ${loadSaved}
    ${hd.layers.map(resetLayer).join('')}
    ${each(K, `${S(hd.dte, 'e')} = 0.0; ${S(hd.dlr, 'e')} = 0.0;`)}
    ${each(u(s.k * s.f), `${S(hd.dq, 'e')} = 0.0; ${S(hd.dtgt, 'e')} = 0.0;`)}
    sync();
    loadSegment(t0, n, 0u);
    forwardSegment(n, false);
    lnOutBwd(n, t0);
${l2 ? `
    dualBwd2(n);
    ${each(`n * ${H}`, `${S(l1.dZb, 'e')} = ${S(l2.dP, 'e')} * geluGrad(${S(l1.Zb, 'e')});`)}
    sync();` : ''}
    dualBwd1(n);
    if (n == ${K}) {
      ${hd.layers.map((_, i) => `updBwd${i + 1}(n, etaLast(), ${u(s.k - 1)});`).join(' ')}
    }
${l2 ? `
    ${each(`n * ${H}`, `
      let z = ${S(l1.Z, 'e')}; let dg1 = ${S(l1.dG, 'e')};
      ${S(hd.DH, 'e')} = dg1 * innerGeluGrad(z);
      ${S(hd.dZ1, 'e')} = dg1 * ${S(hd.H, 'e')} * innerGeluGrad2(z);`)}
    sync();
    ${each(`n * ${F}`, `
      let r = e / ${F}; let j = e % ${F};
      var acc = 0.0;
      for (var i = 0u; i < ${H}; i++) { acc = fma(${S(hd.DH, `r * ${H} + i`)}, ${S(l2.W, `i * ${F} + j`)}, acc); }
      ${S(l2.dG, 'e')} += acc;`)}
    ${each(u(s.h * s.f), `
      let i = e / ${F}; let j = e % ${F};
      var acc = 0.0;
      for (var r = 0u; r < n; r++) { acc = fma(${S(hd.DH, `r * ${H} + i`)}, ${S(l2.G, `r * ${F} + j`)}, acc); }
      ${S(l2.dW, 'e')} += acc;`)}
    sync();
    lnl2Bwd(n, ${u(l2.Z)}, ${u(l2.dG)});
    projBwd2(n, ${u(hd.dZ2)});
    ${each(`n * ${H}`, `${S(hd.dZ1, 'e')} += ${S(l2.dKeys, 'e')} * geluGrad(${S(l1.Z, 'e')});`)}
    sync();
    projBwd1(n, ${u(hd.dZ1)});` : `
    lnl2Bwd(n, ${u(l1.Z)}, ${u(l1.dG)});
    projBwd1(n, ${u(hd.dZ2)});`}
    ${each(`n * ${F}`, `
      let dst = (bh * p.L + t0) * ${F} + e;
      let dt = ${S(hd.dtgt, 'e')};
      S[p.dxq + dst] = ${S(hd.dq, 'e')} + ${S(l1.dP, 'e')};
      S[p.dxk + dst] = ${S(l1.dKeys, 'e')} - dt;
      S[p.dxv + dst] = dt;`)}
    ${each('n', `
      S[p.dlr + bh * p.L + t0 + e] = ${S(hd.dlr, 'e')};
      ${S(hd.dTe, 'e')} += ${S(hd.dte, 'e')};`)}
    ${hd.layers.map(carry).join('')}
    sync();
  }
  ${pgOut}
  ${each(K, `S[p.pg + bi * p.pgBlk + p.gte + hh * ${K} + e] = ${S(hd.dTe, 'e')};`)}
  ${each(F, `
    S[p.pg + bi * p.pgBlk + p.glnW + hh * ${F} + e] = ${S(hd.dlnW, 'e')};
    S[p.pg + bi * p.pgBlk + p.glnB + hh * ${F} + e] = ${S(hd.dlnB, 'e')};`)}
}`;
}

/** dst[i] = sum_c S[src + c * stride + i] for i < n (within the scratch buffer). */
export const sumBlocksKernel: KernelSpec = {
  key: 'tttSumBlocks', bindings: [['S', 'f32', 'w']], uniform: 'src: u32, stride: u32, count: u32, n: u32, dst: u32', code: () => `
@compute @workgroup_size(${WGS})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i >= p.n) { return; }
  var acc = 0.0;
  for (var c = 0u; c < p.count; c++) { acc += S[p.src + c * p.stride + i]; }
  S[p.dst + i] = acc;
}` };
