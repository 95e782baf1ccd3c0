// PEER (Mixture of a Million Experts) as fused ops with hand-written backward rules:
// - batchNorm1d: the paper's query normalization (PyTorch BatchNorm1d semantics);
// - peerRetrieve: product-key top-k (scores differentiable w.r.t. queries and sub-keys);
// - peerExperts: the router-weighted mixture of single-neuron experts, whose backward gives dense
//   dx, dense d(scores) and row-sparse gradients for the two expert tables (touched rows only).
// The [tokens, heads, k, C] gathered tensor is never built, forward or backward.
import type { PeerActivation, PeerExpertDims, PeerScore } from '../backend/contracts.ts';
import { isGradEnabled, noGrad, record } from '../tensor/autograd.ts';
import { RowSparse, Tensor } from '../tensor/tensor.ts';
import { checkIndices, expectDtype, fmt, like, sameDevice } from './util.ts';

export interface BatchNormRunning {
  mean: Tensor;
  var: Tensor;
  /** i32 scalar counting training steps (PyTorch num_batches_tracked); optional. */
  numBatchesTracked?: Tensor | null;
}

export interface BatchNormOpts {
  training: boolean;
  momentum?: number;
  eps?: number;
}

/**
 * BatchNorm1d over x [..., F] treating all leading positions as the batch. Training: normalizes
 * with the batch mean and biased variance and updates `running` in place (unbiased variance,
 * momentum 0.1, num_batches_tracked + 1). Eval: normalizes with the running statistics.
 */
export function batchNorm1d(x: Tensor, weight: Tensor | null, bias: Tensor | null, running: BatchNormRunning | null,
  opts: BatchNormOpts): Tensor {
  expectDtype('batchNorm1d', x, 'f32');
  const F = x.shape.at(-1)!;
  const rows = x.size / F;
  for (const [t, what] of [[weight, 'weight'], [bias, 'bias'], [running?.mean, 'running mean'], [running?.var, 'running var']] as const) {
    if (t && t.size !== F) throw new Error(`batchNorm1d: ${what} ${fmt(t.shape)} does not match ${F} features of ${fmt(x.shape)}`);
    if (t) sameDevice('batchNorm1d', x, t);
  }
  const training = opts.training;
  if (!training && !running) throw new Error('batchNorm1d: eval mode needs running statistics (pass `running`)');
  if (training && rows < 2) throw new Error(`batchNorm1d: training mode needs more than one position to take batch statistics, got ${fmt(x.shape)}`);
  const y = like(x), mean = like(x, [F]), rstd = like(x, [F]);
  const dims = { rows, features: F, training, momentum: opts.momentum ?? 0.1, eps: opts.eps ?? 1e-5 };
  x.backend.peer.batchNormForward(x.buf, weight?.buf ?? null, bias?.buf ?? null,
    training ? running?.mean.buf ?? null : running!.mean.buf, training ? running?.var.buf ?? null : running!.var.buf,
    dims, y.buf, mean.buf, rstd.buf);
  if (training && running?.numBatchesTracked) {
    const n = running.numBatchesTracked;
    noGrad(() => { const d = n.dataSyncMaybe(); if (d) d[0] += 1; else throw new Error('batchNorm1d: num_batches_tracked must live on the cpu'); });
  }
  const inputs = [x, weight, bias].filter((t): t is Tensor => t !== null);
  return record(y, 'batchNorm1d', inputs, (g) => {
    const dx = like(x);
    const dw = weight?.requiresGrad ? like(weight) : null;
    const db = bias?.requiresGrad ? like(bias) : null;
    x.backend.peer.batchNormBackward(x.buf, weight?.buf ?? null, mean.buf, rstd.buf, g.buf, dims, dx.buf,
      dw?.buf ?? null, db?.buf ?? null);
    const out: (Tensor | null)[] = [dx];
    if (weight) out.push(dw);
    if (bias) out.push(db);
    return out;
  });
}

/**
 * Product-key retrieval. q [T, H, 2, dh]: per token and head the two query halves; keys
 * [Hk, 2, n, dh]: the two sub-key tables, shared by all heads (Hk = 1) or one pair per head
 * (Hk = H). Returns the exact top-k over all n^2 experts per (token, head): indices (i32
 * [T, H, k], expert id i*n + j, best first) and scores (f32 [T, H, k], q0 . c_i + q1 . c'_j,
 * differentiable w.r.t. q and keys).
 */
export function peerRetrieve(q: Tensor, keys: Tensor, k: number): { indices: Tensor; scores: Tensor } {
  sameDevice('peerRetrieve', q, keys);
  expectDtype('peerRetrieve', q, 'f32', 'queries');
  expectDtype('peerRetrieve', keys, 'f32', 'keys');
  if (q.ndim !== 4 || q.shape[2] !== 2) throw new Error(`peerRetrieve: queries must be [T, H, 2, dh], got ${fmt(q.shape)}`);
  if (keys.ndim !== 4 || keys.shape[1] !== 2) throw new Error(`peerRetrieve: keys must be [Hk, 2, n, dh], got ${fmt(keys.shape)}`);
  const [T, H, , dh] = q.shape;
  const [Hk, , n, dhk] = keys.shape;
  if (dhk !== dh) throw new Error(`peerRetrieve: query halves have ${dh} dims but sub-keys have ${dhk}`);
  if (Hk !== 1 && Hk !== H) throw new Error(`peerRetrieve: keys must be shared (Hk = 1) or per head (Hk = ${H}), got Hk = ${Hk}`);
  if (!Number.isInteger(k) || k < 1 || k > n) throw new Error(`peerRetrieve: k = ${k} must be in [1, ${n}] (the number of sub-keys)`);
  const indices = like(q, [T, H, k], 'i32');
  const scores = like(q, [T, H, k]);
  const sub = like(q, [T, H, k, 2], 'i32');
  const dims = { tokens: T, heads: H, hk: Hk, n, dh, k };
  q.backend.peer.retrieve(q.buf, keys.buf, dims, { indices: indices.buf, scores: scores.buf, sub: sub.buf });
  record(scores, 'peerRetrieve', [q, keys], (g) => {
    const dq = like(q), dkeys = like(keys);
    q.backend.peer.retrieveBackward(q.buf, keys.buf, sub.buf, g.buf, dims, dq.buf, dkeys.buf);
    return [dq, dkeys];
  });
  return { indices, scores };
}

export type { PeerActivation, PeerScore };

export interface PeerExpertsOpts {
  activation?: PeerActivation;
  score?: PeerScore;
}

/**
 * Mixture of single-neuron experts: y_t = sum_{h, r} g[t,h,r] act(down[e] . x_t) up[e], e =
 * indices[t,h,r], g = softmax (or sigmoid) of scores over the k picks of each head.
 * x [..., C]; down (u) and up (v) [N, C]; indices (i32) and scores [T, H, k] with T = tokens of x.
 * Gradients: x and scores dense, down and up row-sparse over the touched experts (on the cpu in
 * factored form: one rank-1 term per retrieval, see RowFactors).
 */
export function peerExperts(x: Tensor, down: Tensor, up: Tensor, indices: Tensor, scores: Tensor,
  opts: PeerExpertsOpts = {}): Tensor {
  sameDevice('peerExperts', x, down, up, indices, scores);
  expectDtype('peerExperts', indices, 'i32', 'indices');
  for (const [t, w] of [[x, 'x'], [down, 'down'], [up, 'up'], [scores, 'scores']] as const) expectDtype('peerExperts', t, 'f32', w);
  const C = x.shape.at(-1)!;
  const T = x.size / C;
  if (down.ndim !== 2 || down.shape[1] !== C || up.ndim !== 2 || up.shape[0] !== down.shape[0] || up.shape[1] !== C) {
    throw new Error(`peerExperts: expert tables must both be [N, ${C}], got down ${fmt(down.shape)} and up ${fmt(up.shape)}`);
  }
  if (indices.ndim !== 3 || indices.shape[0] !== T || scores.shape.some((s, i) => s !== indices.shape[i]) || scores.ndim !== 3) {
    throw new Error(`peerExperts: indices and scores must both be [${T}, H, k] for ${T} tokens, got ${fmt(indices.shape)} and ${fmt(scores.shape)}`);
  }
  const N = down.shape[0];
  const [, H, k] = indices.shape;
  checkIndices(indices, 0, N, null, (e) => `peerExperts: expert id ${e} out of range for ${N} experts`);
  if (opts.activation && !['gelu', 'relu'].includes(opts.activation)) throw new Error(`peerExperts: activation must be gelu | relu, got ${opts.activation}`);
  if (opts.score && !['softmax', 'sigmoid'].includes(opts.score)) throw new Error(`peerExperts: score must be softmax | sigmoid, got ${opts.score}`);
  const dims: PeerExpertDims = { tokens: T, c: C, experts: N, heads: H, k, activation: opts.activation ?? 'gelu', score: opts.score ?? 'softmax' };
  const inputs = { x: x.buf, down: down.buf, up: up.buf, indices: indices.buf, scores: scores.buf };
  const y = like(x);
  const saveForBackward = isGradEnabled() && [x, down, up, scores].some((t) => t.requiresGrad);
  const saved = { g: like(x, [T, H, k]), pre: like(x, [T, H, k]) };
  x.backend.peer.expertsForward(inputs, dims, y.buf, { g: saved.g.buf, pre: saved.pre.buf });
  if (!saveForBackward) return y;
  return record(y, 'peerExperts', [x, down, up, scores], (dy) => {
    const dx = like(x), dz = like(scores);
    const r = x.backend.peer.expertsBackward(inputs, dims, { g: saved.g.buf, pre: saved.pre.buf }, dy.buf, dx.buf, dz.buf);
    const U = r.count;
    const rows = new Tensor(r.rows, [U], 'i32', x.device);
    if (r.form === 'rows') {
      return [dx, new RowSparse(rows, new Tensor(r.du, [U, C], 'f32', x.device), true),
        new RowSparse(rows, new Tensor(r.dv, [U, C], 'f32', x.device), true), dz];
    }
    // Factored: one rank-1 term per retrieval, du's on the rows of x and dv's on the rows of dy.
    // Both bases are copied so the gradient stays valid whatever later happens to x and dy.
    const E = T * H * k;
    const slot = new Tensor(r.slot, [E], 'i32', x.device), token = new Tensor(r.token, [E], 'i32', x.device);
    const basis = (t: Tensor) => {
      const b = like(x, [T, C]);
      x.backend.kernels.copy(t.buf, 0, b.buf, 0, T * C);
      return b;
    };
    return [
      dx,
      new RowSparse(rows, { slot, token, coef: new Tensor(r.ds, [E], 'f32', x.device), basis: basis(x) }),
      new RowSparse(rows, { slot, token, coef: new Tensor(r.w, [E], 'f32', x.device), basis: basis(dy) }),
      dz,
    ];
  });
}
