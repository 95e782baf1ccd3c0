// CPU kernels of the PEER layer (native/peer.cc for the hot loops, SGEMM for sub-key scores) and of
// BatchNorm1d (the reference loops, which are cheap at its sizes): the CPU's PeerKernels (src/backend/contracts.ts), plus the factored-gradient kernels
// the CPU's generic and optimizer tables use.
import type { BatchNormDims, PeerExpertDims, PeerExpertInputs, PeerExpertSaved, PeerKernels, PeerRetrieveDims, PeerRetrieveOut, PeerTableGrads } from '../contracts.ts';
import type { Buf } from '../types.ts';
import { batchNormBackward, batchNormForward } from '../reference/peer.ts';
import { sgemm } from './gemm.ts';
import { nativeAddon } from './native.ts';

type F32 = Float32Array;
type I32 = Int32Array;

/** Rows of sub-key scores computed per SGEMM call: bounds the scratch memory to ~2 x 16 MiB. */
const SCORE_SCRATCH = 4 << 20;

/**
 * Product-key retrieval. q [T, H, 2, dh] (the two halves of every head's query), keys [Hk, 2, n, dh]
 * (Hk = 1 shared by all heads, or Hk = H). Writes idx (i32 [T, H, k], expert id i*n + j), score
 * (f32 [T, H, k], q0.c_i + q1.c'_j, descending) and sub (i32 [T, H, k, 2], the pair (i, j)).
 */
export function peerRetrieve(q: F32, keys: F32, T: number, H: number, Hk: number, n: number, dh: number, k: number,
  idx: I32, score: F32, sub: I32): void {
  const addon = nativeAddon();
  const tb = Math.max(1, Math.min(T, Math.floor(SCORE_SCRATCH / n)));
  const s0 = new Float32Array(tb * n), s1 = new Float32Array(tb * n);
  const ld = H * 2 * dh;
  for (let t0 = 0; t0 < T; t0 += tb) {
    const rows = Math.min(tb, T - t0);
    for (let h = 0; h < H; h++) {
      const kh = Hk === 1 ? 0 : h;
      // Rows t of head h are H*2*dh apart in q: one strided GEMM per half.
      sgemm(false, true, rows, n, dh, 1, q, (t0 * H + h) * 2 * dh, ld, keys, (kh * 2) * n * dh, dh, 0, s0, 0, n);
      sgemm(false, true, rows, n, dh, 1, q, (t0 * H + h) * 2 * dh + dh, ld, keys, (kh * 2 + 1) * n * dh, dh, 0, s1, 0, n);
      addon.peerTopkPairs(s0, s1, rows, n, k, idx, score, sub, t0 * H + h, H);
    }
  }
}

/** Gradients of the retrieved scores w.r.t. q and keys (dz [T, H, k]); overwrites dq and dkeys. */
export function peerRetrieveBackward(q: F32, keys: F32, sub: I32, dz: F32, T: number, H: number, Hk: number, n: number,
  dh: number, k: number, dq: F32, dkeys: F32): void {
  nativeAddon().peerRetrieveBackward(q, keys, sub, dz, T, H, Hk, n, dh, k, dq, dkeys);
}

/** Asks for transparent huge pages on a large array before it is first written (see native). */
export function adviseHugePages(a: F32): number {
  return a.length >= 1 << 20 ? (nativeAddon().peerAdviseHugePages(a) as number) : 0;
}

/** y [T, C] = sum over the T*H*k retrievals of g * act(u_e . x_t) * v_e; fills g and pre. */
export function peerExpertsForward(x: F32, u: F32, v: F32, idx: I32, z: F32, T: number, C: number, N: number, H: number,
  k: number, actKind: number, scoreKind: number, y: F32, g: F32, pre: F32): void {
  nativeAddon().peerExpertsForward(x, u, v, idx, z, T, C, N, H, k, actKind, scoreKind, y, g, pre);
}

/**
 * Backward of the expert mixture: dx [T, C], dz [T, H, k] (raw router scores) and the expert-table
 * gradients in factored form. Occurrence o (token t = o / (H k), expert idx[o]) adds ds[o] * x[t] to
 * du's row and w[o] * dy[t] to dv's row; `rows` lists each touched expert once and slot[o] is the
 * position of idx[o] in it. No [U, C] block is written (see peerFactoredRows to materialize one).
 */
export function peerExpertsBackward(x: F32, u: F32, v: F32, idx: I32, g: F32, pre: F32, dy: F32, T: number, C: number,
  N: number, H: number, k: number, actKind: number, scoreKind: number, dx: F32, dz: F32,
): { rows: I32; slot: I32; token: I32; ds: F32; w: F32 } {
  const addon = nativeAddon();
  const E = T * H * k, M = H * k;
  const ds = new Float32Array(E), w = new Float32Array(E);
  addon.peerExpertsBackwardTokens(u, v, idx, g, pre, dy, T, C, N, H, k, actKind, scoreKind, dx, dz, ds, w);
  const rowsAll = new Int32Array(E), offsets = new Int32Array(E + 1), occ = new Int32Array(E);
  const U = addon.peerGroupRows(idx, E, N, rowsAll, offsets, occ) as number;
  const slot = new Int32Array(E), token = new Int32Array(E);
  for (let q = 0; q < U; q++) for (let e = offsets[q]; e < offsets[q + 1]; e++) slot[occ[e]] = q;
  for (let o = 0; o < E; o++) token[o] = (o / M) | 0;
  return { rows: rowsAll.slice(0, U), slot, token, ds, w };
}

/**
 * Rows of a factored gradient (term r adds coef[r] * basis[token[r]] to row slot[r], R terms, U
 * rows of width C). rows null: writes out [U, C]. rows (i32 [U], unique): adds row q into row
 * rows[q] of out [N, C].
 */
export function factoredRows(slot: I32, token: I32, coef: F32, basis: F32, R: number, U: number, C: number, out: F32,
  rows: I32 | null, N: number): void {
  nativeAddon().peerFactoredRows(slot, token, coef, basis, R, U, C, out, rows, N);
}

/** Sum of squares of all rows of a factored gradient, one row at a time. */
export function factoredSumSquares(slot: I32, token: I32, coef: F32, basis: F32, R: number, U: number, C: number): number {
  return nativeAddon().peerFactoredSumSquares(slot, token, coef, basis, R, U, C) as number;
}

/** Lazy AdamW on rows[q] of w, m, v [N, C] with each row's gradient built from its factored terms. */
export function factoredAdamw(slot: I32, token: I32, coef: F32, basis: F32, R: number, U: number, C: number, rows: I32,
  N: number, w: F32, m: F32, v: F32, lr: number, beta1: number, beta2: number, eps: number, weightDecay: number,
  step: number, gradScale: number): void {
  nativeAddon().peerFactoredAdamw(slot, token, coef, basis, R, U, C, rows, N, w, m, v, lr, beta1, beta2, eps, weightDecay, step, gradScale);
}

const f32 = (b: Buf) => b as unknown as F32;
const i32 = (b: Buf) => b as unknown as I32;
const f32n = (b: Buf | null) => (b === null ? null : f32(b));
const ACT = { gelu: 0, relu: 1 } as const;
const SCORE = { softmax: 0, sigmoid: 1 } as const;

/** The CPU's PEER table. */
export const cpuPeer: PeerKernels = {
  retrieve(q: Buf, keys: Buf, d: PeerRetrieveDims, o: PeerRetrieveOut) {
    peerRetrieve(f32(q), f32(keys), d.tokens, d.heads, d.hk, d.n, d.dh, d.k, i32(o.indices), f32(o.scores), i32(o.sub));
  },
  retrieveBackward(q, keys, sub, dz, d, dq, dkeys) {
    peerRetrieveBackward(f32(q), f32(keys), i32(sub), f32(dz), d.tokens, d.heads, d.hk, d.n, d.dh, d.k, f32(dq), f32(dkeys));
  },
  expertsForward(x: PeerExpertInputs, d: PeerExpertDims, y: Buf, saved: PeerExpertSaved) {
    peerExpertsForward(f32(x.x), f32(x.down), f32(x.up), i32(x.indices), f32(x.scores), d.tokens, d.c, d.experts, d.heads, d.k,
      ACT[d.activation], SCORE[d.score], f32(y), f32(saved.g), f32(saved.pre));
  },
  expertsBackward(x, d, saved, dy, dx, dz): PeerTableGrads {
    const r = peerExpertsBackward(f32(x.x), f32(x.down), f32(x.up), i32(x.indices), f32(saved.g), f32(saved.pre), f32(dy),
      d.tokens, d.c, d.experts, d.heads, d.k, ACT[d.activation], SCORE[d.score], f32(dx), f32(dz));
    return { form: 'factored', rows: r.rows, count: r.rows.length, slot: r.slot, token: r.token, ds: r.ds, w: r.w };
  },
  batchNormForward(x, w, b, rm, rv, d: BatchNormDims, y, mean, rstd) {
    batchNormForward(f32(x), f32n(w), f32n(b), f32n(rm), f32n(rv), d.rows, d.features, d.training, d.momentum, d.eps,
      f32(y), f32(mean), f32(rstd));
  },
  batchNormBackward(x, w, mean, rstd, dy, d, dx, dw, db) {
    batchNormBackward(f32(x), f32n(w), f32(mean), f32(rstd), f32(dy), d.rows, d.features, d.training, f32(dx), f32n(dw), f32n(db));
  },
};
