// WebGPU kernels of the PEER layer and of BatchNorm1d: the webgpu PeerKernels (src/backend/contracts.ts),
// plus the device-side coalescing of row-sparse gradients the optimizer table uses.
// - Retrieval: one workgroup per (token, head): sub-key scores of both halves in workgroup memory,
//   then the same sequential exact top-k (ties keep the lower index) per half and over the k*k
//   candidate sums as the CPU kernel.
// - Experts: one workgroup per token, forward and backward; the [tokens, heads, k, C] gathered tensor
//   is never built.
// - Row-sparse gradients: the E = T*H*k occurrences are sorted by expert on the device
//   (peer-sort.ts). The returned row list has E entries, ascending: each touched expert's full
//   gradient sits at its first entry and repeated entries hold zero rows. So the sum over duplicates
//   (what densify/scatterAdd and any coalescing consumer computes) equals the CPU result exactly, and
//   so does the sum of squares (gradient norms), without reading indices back to the host.
// The kernels trust their indices: src/ops/peer.ts range-checks expert ids first (findOutOfRange,
// raised at the next readback), and retrieval only produces valid ones.
import type { PeerKernels } from '../contracts.ts';
import type { Buf } from '../types.ts';
import { GpuBuf, splitParts } from './pool.ts';
import { type Runtime, Uniform } from './runtime.ts';
import { flatMain, infFns, WG } from './kernels/common.ts';
import { mathFns } from './kernels/elementwise.ts';
import { lowerBoundFn, scratch, scratchDone, sortPairs } from './peer-sort.ts';

type B = GpuBuf;
const LANES = 64; // threads per workgroup of the per-row kernels
/** Largest n (sub-keys per half) whose two score rows fit workgroup memory (2 x 2048 f32 = 16 KiB). */
const MAX_SUBKEYS = 2048;
const MAX_K = 64;
/** Largest H*k (retrievals per token) held in workgroup memory by the expert kernels. */
const MAX_PICKS = 1024;

function buf(b: unknown, what: string): B {
  if (!(b instanceof GpuBuf)) throw new Error(`webgpu PEER: ${what} is not a webgpu buffer; move the tensor with toDevice() first`);
  if (b.released) throw new Error(`webgpu PEER: ${what} was freed (a disposed tensor was read)`);
  return b;
}

const pow2 = (v: number) => 2 ** Math.ceil(Math.log2(Math.max(v, 1)));

/** Entry point with one workgroup of LANES threads per row (2-D grid). */
const rowEntry = (body: string) => `${infFns}
@compute @workgroup_size(${LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lidv: vec3<u32>) {
  let row = wid.x + wid.y * nwg.x;
  let lid = lidv.x;
${body}
}`;

// WGSL insertion into a descending top-k list (bv, bi; cnt filled), strict '>' against the last
// kept value: an equal later element never displaces an earlier one (the CPU TopK::push).
const pushTopk = (val: string, pos: string) => `
    if (cnt < kk || ${val} > bv[kk - 1u]) {
      var q = kk - 1u;
      if (cnt < kk) { q = cnt; cnt++; }
      while (q > 0u && bv[q - 1u] < ${val}) { bv[q] = bv[q - 1u]; bi[q] = bi[q - 1u]; q--; }
      bv[q] = ${val};
      bi[q] = ${pos};
    }`;

export function peerRetrieve(rt: Runtime, q: B, keys: B, T: number, H: number, Hk: number, n: number, dh: number, k: number,
  idx: B, score: B, sub: B): void {
  if (n > MAX_SUBKEYS) throw new Error(`webgpu peerRetrieve supports up to ${MAX_SUBKEYS} sub-keys per half (N <= ${MAX_SUBKEYS ** 2} experts), got ${n}`);
  if (k > MAX_K) throw new Error(`webgpu peerRetrieve supports k <= ${MAX_K}, got ${k}`);
  const NP = Math.max(64, pow2(n)), K = pow2(k);
  rt.dispatch({ key: `peerRetrieve:${NP}:${K}`,
    bindings: [['Q', 'f32', 'r'], ['KEYS', 'f32', 'r'], ['IDX', 'i32', 'w'], ['SC', 'f32', 'w'], ['SUB', 'i32', 'w']],
    uniform: 'rows: u32, H: u32, Hk: u32, n: u32, dh: u32, k: u32', code: () => `
var<workgroup> s: array<f32, ${2 * NP}>;
var<workgroup> tv: array<f32, ${2 * K}>;
var<workgroup> tp: array<i32, ${2 * K}>;
${rowEntry(`  if (row >= p.rows) { return; }
  let hk = select(row % p.H, 0u, p.Hk == 1u);
  let n = p.n;
  let dh = p.dh;
  for (var j = lid; j < 2u * n; j += ${LANES}u) {
    let half = j / n;
    let qb = (row * 2u + half) * dh;
    let kb = ((hk * 2u + half) * n + j % n) * dh;
    var acc = 0.0;
    for (var d = 0u; d < dh; d++) { acc += Q[qb + d] * KEYS[kb + d]; }
    s[j] = acc;
  }
  workgroupBarrier();
  let kk = p.k;
  if (lid < 2u) {
    var bv: array<f32, ${K}>;
    var bi: array<i32, ${K}>;
    var cnt = 0u;
    for (var j = 0u; j < n; j++) {
      let x = s[lid * n + j];
${pushTopk('x', 'i32(j)')}
    }
    for (var r = 0u; r < kk; r++) { tv[lid * ${K}u + r] = bv[r]; tp[lid * ${K}u + r] = bi[r]; }
  }
  workgroupBarrier();
  if (lid == 0u) {
    var bv: array<f32, ${K}>;
    var bi: array<i32, ${K}>;
    var cnt = 0u;
    // (i-major, j-minor) over the two sorted lists; (i+1)(j+1) > k is dominated by k earlier pairs.
    for (var i = 0u; i < kk; i++) {
      for (var j = 0u; (i + 1u) * (j + 1u) <= kk; j++) {
        let x = tv[i] + tv[${K}u + j];
${pushTopk('x', 'i32(i * kk + j)')}
      }
    }
    for (var m = 0u; m < kk; m++) {
      let c = u32(bi[m]);
      let i = tp[c / kk];
      let j = tp[${K}u + c % kk];
      let o = row * kk + m;
      IDX[o] = i * i32(n) + j;
      SC[o] = bv[m];
      SUB[o * 2u] = i;
      SUB[o * 2u + 1u] = j;
    }
  }`)}` }, [q, keys, idx, score, sub], new Uniform().u(T * H, H, Hk, n, dh, k), rt.grid(T * H));
}

export function peerRetrieveBackward(rt: Runtime, q: B, keys: B, sub: B, dz: B, T: number, H: number, Hk: number, n: number,
  dh: number, k: number, dq: B, dkeys: B): void {
  const u = new Uniform().u(T * H, H, Hk, n, dh, k);
  const uniform = 'rows: u32, H: u32, Hk: u32, n: u32, dh: u32, k: u32';
  // dq: each query element sums its k picks' sub-key elements (the CPU order, r ascending).
  rt.dispatch({ key: 'peerRetrieveDq',
    bindings: [['Q', 'f32', 'r'], ['KEYS', 'f32', 'r'], ['SUB', 'i32', 'r'], ['DZ', 'f32', 'r'], ['DQ', 'f32', 'w']],
    uniform, code: () => `
${flatMain(`  if (i >= p.rows * 2u * p.dh) { return; }
  let d = i % p.dh;
  let half = (i / p.dh) % 2u;
  let row = i / (2u * p.dh);
  let hk = select(row % p.H, 0u, p.Hk == 1u);
  var acc = 0.0;
  for (var r = 0u; r < p.k; r++) {
    let o = row * p.k + r;
    acc += DZ[o] * KEYS[((hk * 2u + half) * p.n + u32(SUB[o * 2u + half])) * p.dh + d];
  }
  DQ[i] = acc;`)}` }, [q, keys, sub, dz, dq], u, rt.grid(Math.ceil((T * H * 2 * dh) / WG)));

  // dkeys: group the 2*T*H*k sub-key uses by key row, then each key element sums its group.
  const m = T * H * k * 2;
  const rowsOf = scratch(rt, m, 'i32');
  rt.dispatch({ key: 'peerRetrieveKeyRows', bindings: [['SUB', 'i32', 'r'], ['R', 'i32', 'w']], uniform, code: () => `
${flatMain(`  if (i >= p.rows * p.k * 2u) { return; }
  let row = i / (2u * p.k);
  let hk = select(row % p.H, 0u, p.Hk == 1u);
  R[i] = i32((hk * 2u + i % 2u) * p.n) + SUB[i];`)}` }, [sub, rowsOf], u, rt.grid(Math.ceil(m / WG)));
  const sorted = sortPairs(rt, rowsOf, m);
  scratchDone(rt, rowsOf);
  rt.dispatch({ key: 'peerRetrieveDkeys',
    bindings: [['Q', 'f32', 'r'], ['SK', 'i32', 'r'], ['SP', 'i32', 'r'], ['DZ', 'f32', 'r'], ['DK', 'f32', 'w']],
    uniform: 'dh: u32, k: u32, total: u32, P: u32', code: () => `
${lowerBoundFn}
${flatMain(`  if (i >= p.total) { return; }
  let d = i % p.dh;
  let keyRow = i32(i / p.dh);
  let hi = lowerBound(keyRow + 1);
  var acc = 0.0;
  for (var e = lowerBound(keyRow); e < hi; e++) {
    let o2 = u32(SP[e]);
    let row = o2 / (2u * p.k);
    acc += DZ[o2 / 2u] * Q[(row * 2u + o2 % 2u) * p.dh + d];
  }
  DK[i] = acc;`)}` }, [q, sorted.keys, sorted.pos, dz, dkeys], new Uniform().u(dh, k, Hk * 2 * n * dh, sorted.P),
  rt.grid(Math.ceil((Hk * 2 * n * dh) / WG)));
  scratchDone(rt, sorted.keys, sorted.pos);
}

const activationFns = `${mathFns}
fn act(kind: u32, s: f32) -> f32 {
  if (kind == 0u) { return 0.5 * s * (1.0 + erf_(s * 0.70710678118654752)); }
  return max(s, 0.0);
}
fn actGrad(kind: u32, s: f32) -> f32 {
  if (kind == 0u) { return 0.5 * (1.0 + erf_(s * 0.70710678118654752)) + s * 0.39894228040143268 * exp(-0.5 * s * s); }
  return select(0.0, 1.0, s > 0.0);
}`;

// lo, hi: the expert rows of this pass's table part; first, last: whether it is the first / last pass.
const expertUniform = 'T: u32, C: u32, N: u32, H: u32, k: u32, act: u32, score: u32, lo: u32, hi: u32, first: u32, last: u32';
const expertParams = (T: number, C: number, N: number, H: number, k: number, actKind: number, scoreKind: number,
  part: { lo: number; hi: number }, j: number, parts: number) =>
  new Uniform().u(T, C, N, H, k, actKind, scoreKind, part.lo, part.hi, j === 0 ? 1 : 0, j === parts - 1 ? 1 : 0);
/** rowOf marker of a retrieval outside the pass's table part. */
const NONE = '0xffffffffu';

function checkPicks(H: number, k: number): void {
  if (H * k > MAX_PICKS) throw new Error(`webgpu PEER experts support heads * k <= ${MAX_PICKS} retrievals per token, got ${H} * ${k}`);
}

/**
 * The parts of the two expert tables (split storage above the binding limit, both [N, C] and split
 * alike): row ranges [lo, hi) with the part buffers of u and v.
 */
function tableParts(u: B, v: B, C: number): { lo: number; hi: number; u: B; v: B }[] {
  const up = splitParts(u), vp = splitParts(v);
  if (up.length !== vp.length || up.some((q, j) => q.length !== vp[j].length)) {
    throw new Error('webgpu PEER: the two expert tables are not stored alike (split into different parts)');
  }
  return up.map((q, j) => ({ lo: q.start / C, hi: (q.start + q.length) / C, u: q.buf, v: vp[j].buf }));
}

/**
 * Forward of the expert mixture, one dispatch per part of the tables: each pass takes the retrievals
 * whose expert lies in its part and adds their terms to y (the first pass writes it).
 */
export function peerExpertsForward(rt: Runtime, x: B, u: B, v: B, idx: B, z: B, T: number, C: number, N: number, H: number,
  k: number, actKind: number, scoreKind: number, y: B, g: B, pre: B): void {
  checkPicks(H, k);
  const MP = pow2(H * k);
  const parts = tableParts(u, v, C);
  parts.forEach((part, j) => rt.dispatch({ key: `peerExpertsForward:${MP}`,
    bindings: [['X', 'f32', 'r'], ['U', 'f32', 'r'], ['V', 'f32', 'r'], ['IDX', 'i32', 'r'], ['Z', 'f32', 'r'],
      ['Y', 'f32', 'w'], ['G', 'f32', 'w'], ['PRE', 'f32', 'w']],
    uniform: expertUniform, code: () => `
var<workgroup> gw: array<f32, ${MP}>;
var<workgroup> coef: array<f32, ${MP}>;
var<workgroup> rowOf: array<u32, ${MP}>;
${activationFns}
${rowEntry(`  let t = row;
  if (t >= p.T) { return; }
  let M = p.H * p.k;
  let k = p.k;
  let C = p.C;
  // Router weights per head: softmax (max-subtracted, as the CPU) or sigmoid.
  for (var h = lid; h < p.H; h += ${LANES}u) {
    let b = (t * p.H + h) * k;
    if (p.score == 1u) {
      for (var r = 0u; r < k; r++) { gw[h * k + r] = 1.0 / (1.0 + exp(-Z[b + r])); }
    } else {
      var mx = Z[b];
      for (var r = 1u; r < k; r++) { mx = max(mx, Z[b + r]); }
      var s = 0.0;
      for (var r = 0u; r < k; r++) { let e = exp(Z[b + r] - mx); gw[h * k + r] = e; s += e; }
      for (var r = 0u; r < k; r++) { gw[h * k + r] = gw[h * k + r] / s; }
    }
    if (p.first == 1u) { for (var r = 0u; r < k; r++) { G[b + r] = gw[h * k + r]; } }
  }
  workgroupBarrier();
  for (var m = lid; m < M; m += ${LANES}u) {
    let e = u32(clamp(IDX[t * M + m], 0, i32(p.N) - 1));
    if (e < p.lo || e >= p.hi) { rowOf[m] = ${NONE}; continue; }
    let er = e - p.lo;
    rowOf[m] = er;
    var s = 0.0;
    for (var c = 0u; c < C; c++) { s += U[er * C + c] * X[t * C + c]; }
    PRE[t * M + m] = s;
    coef[m] = gw[m] * act(p.act, s);
  }
  workgroupBarrier();
  for (var c = lid; c < C; c += ${LANES}u) {
    var acc = 0.0;
    for (var m = 0u; m < M; m++) { if (rowOf[m] != ${NONE}) { acc += coef[m] * V[rowOf[m] * C + c]; } }
    if (p.first == 1u) { Y[t * C + c] = acc; } else { Y[t * C + c] += acc; }
  }`)}` }, [x, part.u, part.v, idx, z, y, g, pre], expertParams(T, C, N, H, k, actKind, scoreKind, part, j, parts.length), rt.grid(T)));
}

/**
 * Backward of the expert mixture: overwrites dx [T, C] and dz [T, H, k]; returns the row-sparse
 * gradients of the two tables as new buffers: rows (i32 [E]) and du, dv ([E, C]), E = T*H*k, in the
 * sorted-with-zero-repeats form described at the top of this file.
 */
export function peerExpertsBackward(rt: Runtime, x: B, u: B, v: B, idx: B, g: B, pre: B, dy: B, T: number, C: number,
  N: number, H: number, k: number, actKind: number, scoreKind: number, dx: B, dz: B,
): { rows: B; du: B; dv: B } {
  checkPicks(H, k);
  const MP = pow2(H * k), E = T * H * k;
  const ds = scratch(rt, E, 'f32'), w = scratch(rt, E, 'f32'), dgAll = scratch(rt, E, 'f32');
  // One pass per table part (see the forward); the router backward needs every pick's dg, so the
  // passes leave dg in dgAll and the last one applies it.
  const parts = tableParts(u, v, C);
  parts.forEach((part, j) => rt.dispatch({ key: `peerExpertsBackwardTokens:${MP}`,
    bindings: [['U', 'f32', 'r'], ['V', 'f32', 'r'], ['IDX', 'i32', 'r'], ['G', 'f32', 'r'], ['PRE', 'f32', 'r'], ['DY', 'f32', 'r'],
      ['DX', 'f32', 'w'], ['DZ', 'f32', 'w'], ['DS', 'f32', 'w'], ['W', 'f32', 'w'], ['DG', 'f32', 'w']],
    uniform: expertUniform, code: () => `
var<workgroup> dsw: array<f32, ${MP}>;
var<workgroup> rowOf: array<u32, ${MP}>;
${activationFns}
${rowEntry(`  let t = row;
  if (t >= p.T) { return; }
  let M = p.H * p.k;
  let k = p.k;
  let C = p.C;
  for (var m = lid; m < M; m += ${LANES}u) {
    let o = t * M + m;
    let e = u32(clamp(IDX[o], 0, i32(p.N) - 1));
    if (e < p.lo || e >= p.hi) { rowOf[m] = ${NONE}; continue; }
    let er = e - p.lo;
    rowOf[m] = er;
    var dyv = 0.0;
    for (var c = 0u; c < C; c++) { dyv += DY[t * C + c] * V[er * C + c]; }
    let s = PRE[o];
    let a = act(p.act, s);
    DG[o] = a * dyv;
    W[o] = G[o] * a;
    let d = G[o] * dyv * actGrad(p.act, s);
    DS[o] = d;
    dsw[m] = d;
  }
  storageBarrier();
  workgroupBarrier();
  // Router backward per head (last pass): softmax g*(dg - g.dg) or sigmoid g*(1-g)*dg.
  if (p.last == 1u) {
    for (var h = lid; h < p.H; h += ${LANES}u) {
      let b = (t * p.H + h) * k;
      if (p.score == 1u) {
        for (var r = 0u; r < k; r++) { let gg = G[b + r]; DZ[b + r] = DG[b + r] * gg * (1.0 - gg); }
      } else {
        var s = 0.0;
        for (var r = 0u; r < k; r++) { s += G[b + r] * DG[b + r]; }
        for (var r = 0u; r < k; r++) { DZ[b + r] = G[b + r] * (DG[b + r] - s); }
      }
    }
  }
  for (var c = lid; c < C; c += ${LANES}u) {
    var acc = 0.0;
    for (var m = 0u; m < M; m++) { if (rowOf[m] != ${NONE}) { acc += dsw[m] * U[rowOf[m] * C + c]; } }
    if (p.first == 1u) { DX[t * C + c] = acc; } else { DX[t * C + c] += acc; }
  }`)}` }, [part.u, part.v, idx, g, pre, dy, dx, dz, ds, w, dgAll], expertParams(T, C, N, H, k, actKind, scoreKind, part, j, parts.length),
  rt.grid(T)));
  scratchDone(rt, dgAll);

  const sorted = sortPairs(rt, idx, E);
  // du, dv [E, C] are split like any tensor above the binding limit: one dispatch per part.
  const rows = rt.alloc(E, 'i32'), du = rt.alloc(E * C, 'f32', C), dv = rt.alloc(E * C, 'f32', C);
  const dvParts = splitParts(dv);
  splitParts(du).forEach((part, j) => rt.dispatch({ key: 'peerRowGrads',
    bindings: [['SK', 'i32', 'r'], ['SP', 'i32', 'r'], ['DS', 'f32', 'r'], ['W', 'f32', 'r'], ['X', 'f32', 'r'], ['DY', 'f32', 'r'],
      ['ROWS', 'i32', 'w'], ['DU', 'f32', 'w'], ['DV', 'f32', 'w']],
    uniform: 'n: u32, q0: u32, C: u32, M: u32, P: u32', code: () => `
${lowerBoundFn}
${flatMain(`  if (i >= p.n) { return; }
  let q = p.q0 + i / p.C;
  let c = i % p.C;
  let key = SK[q];
  if (c == 0u) { ROWS[q] = key; }
  var au = 0.0;
  var av = 0.0;
  // The first entry of each expert's group carries the group's sum (occurrences ascending).
  if (q == 0u || SK[q - 1u] != key) {
    let hi = lowerBound(key + 1);
    for (var e = q; e < hi; e++) {
      let o = u32(SP[e]);
      let t = o / p.M;
      au += DS[o] * X[t * p.C + c];
      av += W[o] * DY[t * p.C + c];
    }
  }
  DU[i] = au;
  DV[i] = av;`)}` }, [sorted.keys, sorted.pos, ds, w, x, dy, rows, part.buf, dvParts[j].buf],
  new Uniform().u(part.length, part.start / C, C, H * k, sorted.P), rt.grid(Math.ceil(part.length / WG))));
  scratchDone(rt, ds, w, sorted.keys, sorted.pos);
  return { rows, du, dv };
}

const bnUniform = 'rows: u32, F: u32, training: u32, hasW: u32, hasB: u32, hasRun: u32, momentum: f32, eps: f32';

/**
 * BatchNorm1d forward over x [rows, F] (PyTorch semantics, as the CPU kernel): training normalizes
 * with the batch mean and biased variance and moves the running stats (when given) with the unbiased
 * variance; eval normalizes with the running stats. Writes y, mean and 1/std per feature.
 */
export function batchNormForward(rt: Runtime, x: B, weight: B | null, bias: B | null, runMean: B | null, runVar: B | null,
  rows: number, F: number, training: boolean, momentum: number, eps: number, y: B, mean: B, rstd: B): void {
  if (!training && (!runMean || !runVar)) throw new Error('batchNorm1d: eval mode needs running mean and variance');
  const dummy = () => rt.temp(1, 'f32');
  const u = new Uniform().u(rows, F, training ? 1 : 0, weight ? 1 : 0, bias ? 1 : 0, runMean && runVar ? 1 : 0).f(momentum, eps);
  // One thread per feature: adjacent threads read adjacent features of a row (coalesced).
  rt.dispatch({ key: 'bnStats',
    bindings: [['X', 'f32', 'r'], ['RM', 'f32', 'w'], ['RV', 'f32', 'w'], ['MEAN', 'f32', 'w'], ['RSTD', 'f32', 'w']],
    uniform: bnUniform, code: () => `
${flatMain(`  if (i >= p.F) { return; }
  if (p.training == 0u) {
    MEAN[i] = RM[i];
    RSTD[i] = 1.0 / sqrt(RV[i] + p.eps);
    return;
  }
  var s = 0.0;
  for (var r = 0u; r < p.rows; r++) { s += X[r * p.F + i]; }
  let mu = s / f32(p.rows);
  var ss = 0.0;
  for (var r = 0u; r < p.rows; r++) { let d = X[r * p.F + i] - mu; ss += d * d; }
  let varB = ss / f32(p.rows);
  MEAN[i] = mu;
  RSTD[i] = 1.0 / sqrt(varB + p.eps);
  if (p.hasRun == 1u) {
    RM[i] = (1.0 - p.momentum) * RM[i] + p.momentum * mu;
    RV[i] = (1.0 - p.momentum) * RV[i] + p.momentum * select(varB, ss / f32(p.rows - 1u), p.rows > 1u);
  }`)}` }, [x, runMean ?? dummy(), runVar ?? dummy(), mean, rstd], u, rt.grid(Math.ceil(F / WG)));
  rt.dispatch({ key: 'bnApply',
    bindings: [['X', 'f32', 'r'], ['WT', 'f32', 'r'], ['BS', 'f32', 'r'], ['MEAN', 'f32', 'r'], ['RSTD', 'f32', 'r'], ['Y', 'f32', 'w']],
    uniform: bnUniform, code: () => `
${flatMain(`  if (i >= p.rows * p.F) { return; }
  let f = i % p.F;
  let wf = select(1.0, WT[f], p.hasW == 1u);
  let bf = select(0.0, BS[f], p.hasB == 1u);
  Y[i] = (X[i] - MEAN[f]) * RSTD[f] * wf + bf;`)}` }, [x, weight ?? dummy(), bias ?? dummy(), mean, rstd, y], u,
  rt.grid(Math.ceil((rows * F) / WG)));
}

/** dx (and dweight/dbias when given); `training` selects the batch-statistics backward. */
export function batchNormBackward(rt: Runtime, x: B, weight: B | null, mean: B, rstd: B, dy: B, rows: number, F: number,
  training: boolean, dx: B, dweight: B | null, dbias: B | null): void {
  const dummy = () => rt.temp(1, 'f32');
  const sums = scratch(rt, 2 * F, 'f32');
  const u = new Uniform().u(rows, F, training ? 1 : 0, weight ? 1 : 0, dweight ? 1 : 0, dbias ? 1 : 0);
  const uniform = 'rows: u32, F: u32, training: u32, hasW: u32, hasDw: u32, hasDb: u32';
  rt.dispatch({ key: 'bnBackwardSums',
    bindings: [['X', 'f32', 'r'], ['MEAN', 'f32', 'r'], ['RSTD', 'f32', 'r'], ['DY', 'f32', 'r'], ['S', 'f32', 'w'], ['DW', 'f32', 'w'], ['DB', 'f32', 'w']],
    uniform, code: () => `
${flatMain(`  if (i >= p.F) { return; }
  var sdy = 0.0;
  var sdyx = 0.0;
  for (var r = 0u; r < p.rows; r++) {
    let j = r * p.F + i;
    sdy += DY[j];
    sdyx += DY[j] * (X[j] - MEAN[i]) * RSTD[i];
  }
  S[i] = sdy;
  S[p.F + i] = sdyx;
  if (p.hasDw == 1u) { DW[i] = sdyx; }
  if (p.hasDb == 1u) { DB[i] = sdy; }`)}` }, [x, mean, rstd, dy, sums, dweight ?? dummy(), dbias ?? dummy()], u,
  rt.grid(Math.ceil(F / WG)));
  rt.dispatch({ key: 'bnBackwardDx',
    bindings: [['X', 'f32', 'r'], ['WT', 'f32', 'r'], ['MEAN', 'f32', 'r'], ['RSTD', 'f32', 'r'], ['DY', 'f32', 'r'], ['S', 'f32', 'r'], ['DX', 'f32', 'w']],
    uniform, code: () => `
${flatMain(`  if (i >= p.rows * p.F) { return; }
  let f = i % p.F;
  let wf = select(1.0, WT[f], p.hasW == 1u);
  if (p.training == 0u) { DX[i] = DY[i] * wf * RSTD[f]; return; }
  let xhat = (X[i] - MEAN[f]) * RSTD[f];
  let n = f32(p.rows);
  DX[i] = wf * RSTD[f] * (DY[i] - S[f] / n - xhat * S[p.F + f] / n);`)}` }, [x, weight ?? dummy(), mean, rstd, dy, sums, dx], u,
  rt.grid(Math.ceil((rows * F) / WG)));
  scratchDone(rt, sums);
}

/**
 * Sums duplicate rows of a row-sparse gradient on the device: rows (i32 [n]) are sorted with their
 * positions, and each row's first sorted entry gets the sum of its group (in position order); later
 * entries of the group hold zeros. The result has n entries, ascending (the 'coalesced' form).
 */
export function coalesceRows(rt: Runtime, rows: B, values: B, n: number, width: number): { rows: B; values: B; count: number } {
  const outRows = rt.alloc(Math.max(1, n), 'i32'), outVals = rt.alloc(Math.max(1, n * width), 'f32');
  if (n === 0) return { rows: outRows, values: outVals, count: 0 };
  const sorted = sortPairs(rt, rows, n);
  rt.dispatch({ key: 'coalesceRows',
    bindings: [['SK', 'i32', 'r'], ['SP', 'i32', 'r'], ['VALS', 'f32', 'r'], ['ROWS', 'i32', 'w'], ['OUT', 'f32', 'w']],
    uniform: 'n: u32, width: u32, P: u32', code: () => `
${lowerBoundFn}
${flatMain(`  if (i >= p.n * p.width) { return; }
  let q = i / p.width;
  let c = i % p.width;
  let key = SK[q];
  if (c == 0u) { ROWS[q] = key; }
  var acc = 0.0;
  if (q == 0u || SK[q - 1u] != key) {
    let hi = lowerBound(key + 1);
    for (var e = q; e < hi; e++) { acc += VALS[u32(SP[e]) * p.width + c]; }
  }
  OUT[i] = acc;`)}` }, [sorted.keys, sorted.pos, values, outRows, outVals], new Uniform().u(n, width, sorted.P),
  rt.grid(Math.ceil((n * width) / WG)));
  scratchDone(rt, sorted.keys, sorted.pos);
  return { rows: outRows, values: outVals, count: n };
}

const ACT = { gelu: 0, relu: 1 } as const;
const SCORE = { softmax: 0, sigmoid: 1 } as const;

/** The webgpu PEER table, bound to a runtime. */
export function webgpuPeer(rt: Runtime): PeerKernels {
  const b = buf;
  const bn = (x: Buf | null, what: string) => (x === null ? null : buf(x, what));
  return {
    retrieve: (q, keys, d, o) =>
      peerRetrieve(rt, b(q, 'q'), b(keys, 'keys'), d.tokens, d.heads, d.hk, d.n, d.dh, d.k, b(o.indices, 'indices'), b(o.scores, 'scores'), b(o.sub, 'sub')),
    retrieveBackward: (q, keys, sub, dz, d, dq, dkeys) =>
      peerRetrieveBackward(rt, b(q, 'q'), b(keys, 'keys'), b(sub, 'sub'), b(dz, 'dz'), d.tokens, d.heads, d.hk, d.n, d.dh, d.k,
        b(dq, 'dq'), b(dkeys, 'dkeys')),
    expertsForward: (x, d, y, saved) =>
      peerExpertsForward(rt, b(x.x, 'x'), b(x.down, 'down'), b(x.up, 'up'), b(x.indices, 'indices'), b(x.scores, 'scores'),
        d.tokens, d.c, d.experts, d.heads, d.k, ACT[d.activation], SCORE[d.score], b(y, 'y'), b(saved.g, 'g'), b(saved.pre, 'pre')),
    expertsBackward: (x, d, saved, dy, dx, dz) => {
      const r = peerExpertsBackward(rt, b(x.x, 'x'), b(x.down, 'down'), b(x.up, 'up'), b(x.indices, 'indices'), b(saved.g, 'g'),
        b(saved.pre, 'pre'), b(dy, 'dy'), d.tokens, d.c, d.experts, d.heads, d.k, ACT[d.activation], SCORE[d.score], b(dx, 'dx'), b(dz, 'dz'));
      return { form: 'rows', rows: r.rows, count: d.tokens * d.heads * d.k, du: r.du, dv: r.dv };
    },
    batchNormForward: (x, w, bias, rm, rv, d, y, mean, rstd) =>
      batchNormForward(rt, b(x, 'x'), bn(w, 'weight'), bn(bias, 'bias'), bn(rm, 'running mean'), bn(rv, 'running var'), d.rows, d.features,
        d.training, d.momentum, d.eps, b(y, 'y'), b(mean, 'mean'), b(rstd, 'rstd')),
    batchNormBackward: (x, w, mean, rstd, dy, d, dx, dw, db) =>
      batchNormBackward(rt, b(x, 'x'), bn(w, 'weight'), b(mean, 'mean'), b(rstd, 'rstd'), b(dy, 'dy'), d.rows, d.features, d.training,
        b(dx, 'dx'), bn(dw, 'dweight'), bn(db, 'dbias')),
  };
}
