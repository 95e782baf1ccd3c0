// PEER layer (Mixture of a Million Experts, He 2024): per-head query network, optional query
// BatchNorm, product-key retrieval of k of N = n^2 single-neuron experts per head, router-weighted
// expert mixture summed over heads.
//
// Two parameter layouts, matching the two references:
// - sharedKeys (paper, Algorithm 1): `query` Linear(C, H*dk, bias) -> [T, H, dk] head-major, halves
//   q1/q2 = first/second dk/2; one shared pair of sub-key tables `sub_keys` [2, n, dk/2]; experts
//   `down.weight` (u) and `up.weight` (v) [N, C].
// - per-head keys (PEER-pytorch): `to_queries.0` Linear(C, 2*H*(dk/2), no bias) with output layout
//   (p h d), p major; `keys` [H, n, 2, dk/2]; experts `weight_down_embed.weight` (u) and
//   `weight_up_embed.weight` (v).
// dimKey is the full per-head query size dk (both halves).
//
// Query BatchNorm (`query_bn`, PyTorch BatchNorm1d over the H*dk query features) in training mode
// takes its statistics over every token of the batch, so a position's output depends on later
// positions of its sequence: a causality leak in a causal LM (the paper's setting, kept as the
// default). Evaluation uses the running statistics and has no leak; queryNorm 'none' removes it in
// training too.
import * as op from '../ops/index.ts';
import { batchNorm1d, peerExperts, peerRetrieve, type PeerActivation, type PeerScore } from '../ops/peer.ts';
import { type Tensor, full, randn, zeros } from '../tensor/tensor.ts';
import { Linear, type InitOpts } from './layers.ts';
import { Module } from './module.ts';
import { keep } from '../tensor/scope.ts';

export interface PeerLayerOptions {
  numExperts: number;
  heads: number;
  topk: number;
  dimKey: number;
  queryNorm: 'batchnorm' | 'none';
  sharedKeys: boolean;
  activation: PeerActivation;
  score: PeerScore;
}

/** Counts how often each expert is retrieved (to measure usage and unevenness, paper Table 2). */
export class ExpertUsage {
  readonly counts: Float64Array;
  tokens = 0;
  /** Device index tensors not yet counted (counted by flush(), which reads them back). */
  private pending: Tensor[] = [];
  constructor(readonly numExperts: number) {
    this.counts = new Float64Array(numExperts);
  }
  /** Adds retrieved expert ids (i32, any shape); ids on a device are counted at the next flush(). */
  add(indices: Tensor | Int32Array): void {
    if (indices instanceof Int32Array) return this.count(indices);
    const host = indices.dataSyncMaybe();
    if (host) this.count(host as Int32Array);
    else this.pending.push(keep(indices));
  }
  /** Reads back and counts ids recorded on a device. */
  async flush(): Promise<void> {
    const todo = this.pending;
    this.pending = [];
    for (const t of todo) {
      this.count((await t.data()) as Int32Array);
      t.dispose();
    }
  }
  private count(ids: Int32Array): void {
    for (let i = 0; i < ids.length; i++) {
      if (ids[i] < 0 || ids[i] >= this.numExperts) throw new Error(`ExpertUsage: expert id ${ids[i]} out of range [0, ${this.numExperts})`);
      this.counts[ids[i]]++;
    }
  }
  reset(): void {
    this.counts.fill(0);
    this.tokens = 0;
    for (const t of this.pending) t.dispose();
    this.pending = [];
  }
  /** Distinct experts retrieved / N. */
  fraction(): number {
    this.assertFlushed();
    return expertUsageFraction(this.counts);
  }
  /** KL divergence of the usage distribution from uniform: log N + sum z log z. */
  unevenness(): number {
    this.assertFlushed();
    return usageUnevenness(this.counts);
  }
  private assertFlushed(): void {
    if (this.pending.length) throw new Error('ExpertUsage: ids recorded on a device are not counted yet; await usage.flush() first');
  }
}

/** Fraction of experts retrieved at least once, from per-expert retrieval counts. */
export function expertUsageFraction(counts: ArrayLike<number>): number {
  let used = 0;
  for (let i = 0; i < counts.length; i++) if (counts[i] > 0) used++;
  return used / counts.length;
}

/** log N + sum_i z_i log z_i with z the normalized counts (0 for uniform usage, log N for one expert). */
export function usageUnevenness(counts: ArrayLike<number>): number {
  let total = 0;
  for (let i = 0; i < counts.length; i++) total += counts[i];
  if (!(total > 0)) throw new Error('usageUnevenness: no retrievals counted yet');
  let s = Math.log(counts.length);
  for (let i = 0; i < counts.length; i++) {
    if (counts[i] > 0) {
      const z = counts[i] / total;
      s += z * Math.log(z);
    }
  }
  return s;
}

/** PyTorch BatchNorm1d state-dict layout (weight, bias, running_mean, running_var, num_batches_tracked). */
export class BatchNorm1d extends Module {
  constructor(readonly features: number, readonly eps = 1e-5, readonly momentum = 0.1, device?: InitOpts['device']) {
    super();
    this.param('weight', full([features], 1, { device }));
    this.param('bias', full([features], 0, { device }));
    this.buffer('running_mean', full([features], 0, { device }));
    this.buffer('running_var', full([features], 1, { device }));
    // A host-side step counter on every backend (batchNorm1d increments it without a kernel).
    this.buffer('num_batches_tracked', zeros([], { dtype: 'i32', device: 'cpu' }));
  }
  forward(x: Tensor): Tensor {
    return batchNorm1d(x, this.get('weight'), this.get('bias'),
      { mean: this.get('running_mean'), var: this.get('running_var'), numBatchesTracked: this.get('num_batches_tracked') },
      { training: this.training, momentum: this.momentum, eps: this.eps });
  }
}

function checkPeerOptions(dim: number, o: PeerLayerOptions): number {
  const n = Math.round(Math.sqrt(o.numExperts));
  const bad = (what: string) => { throw new Error(`PEER: ${what}`); };
  if (!Number.isInteger(o.numExperts) || n * n !== o.numExperts) bad(`numExperts ${o.numExperts} must be a perfect square (n^2 product keys)`);
  for (const k of ['heads', 'topk', 'dimKey'] as const) if (!Number.isInteger(o[k]) || o[k] < 1) bad(`${k} must be a positive integer, got ${o[k]}`);
  if (o.dimKey % 2) bad(`dimKey ${o.dimKey} must be even (two query halves)`);
  if (o.topk > n) bad(`topk ${o.topk} exceeds the ${n} sub-keys per half (sqrt(numExperts))`);
  if (!['batchnorm', 'none'].includes(o.queryNorm)) bad(`queryNorm must be batchnorm | none, got ${o.queryNorm}`);
  if (!['gelu', 'relu'].includes(o.activation)) bad(`activation must be gelu | relu, got ${o.activation}`);
  if (!['softmax', 'sigmoid'].includes(o.score)) bad(`score must be softmax | sigmoid, got ${o.score}`);
  if (!Number.isInteger(dim) || dim < 1) bad(`dim must be a positive integer, got ${dim}`);
  return n;
}

export class PEER extends Module {
  readonly n: number;
  readonly query: Linear;
  readonly queryBn: BatchNorm1d | null;
  /** When set, every forward adds its retrieved expert ids. */
  usage: ExpertUsage | null = null;
  /** Indices retrieved by the last forward ([T, H, k], for inspection and tests). */
  lastIndices: Tensor | null = null;
  private readonly names: { keys: string; down: string; up: string };

  constructor(readonly dim: number, readonly opts: PeerLayerOptions, init: InitOpts) {
    super();
    this.n = checkPeerOptions(dim, opts);
    const { heads: H, dimKey: dk, numExperts: N } = opts;
    const dh = dk / 2;
    const device = init.device;
    if (opts.sharedKeys) {
      this.query = this.child('query', new Linear(dim, H * dk, init, true));
      this.names = { keys: 'sub_keys', down: 'down.weight', up: 'up.weight' };
      this.param('sub_keys', randn([2, this.n, dh], init.rng, 1 / Math.sqrt(dh), { device }));
    } else {
      this.query = this.child('to_queries.0', new Linear(dim, H * dk, init, false));
      this.names = { keys: 'keys', down: 'weight_down_embed.weight', up: 'weight_up_embed.weight' };
      this.param('keys', randn([H, this.n, 2, dh], init.rng, 0.02, { device }));
    }
    this.queryBn = opts.queryNorm === 'batchnorm' ? this.child('query_bn', new BatchNorm1d(H * dk, 1e-5, 0.1, device)) : null;
    // Expert tables: the gradient stays row-sparse so the optimizer touches only retrieved rows.
    const std = init.std ?? 0.02;
    this.child(this.names.down.split('.')[0], new ExpertTable(N, dim, init, std));
    this.child(this.names.up.split('.')[0], new ExpertTable(N, dim, init, std));
  }

  get downWeight(): Tensor { return this.getNested(this.names.down); }
  get upWeight(): Tensor { return this.getNested(this.names.up); }
  get keys(): Tensor { return this.get(this.names.keys); }

  private getNested(name: string): Tensor {
    const found = this.namedParameters().find(([n]) => n === name);
    if (!found) throw new Error(`internal: PEER has no '${name}'`);
    return found[1];
  }

  /** Retrieval only: indices [T, H, k] and differentiable scores, for x [..., C]. */
  retrieve(x: Tensor): { indices: Tensor; scores: Tensor } {
    const { heads: H, dimKey: dk, topk } = this.opts;
    const dh = dk / 2;
    const T = x.size / this.dim;
    let q = this.query.forward(op.reshape(x, [T, this.dim]));
    if (this.queryBn) q = this.queryBn.forward(q);
    // Paper: [T, H, dk] with halves adjacent. PEER-pytorch: (p h d) -> [T, H, 2, dh].
    const q4 = this.opts.sharedKeys ? op.reshape(q, [T, H, 2, dh]) : op.permute(op.reshape(q, [T, 2, H, dh]), [0, 2, 1, 3]);
    const keys = this.opts.sharedKeys ? op.reshape(this.keys, [1, 2, this.n, dh]) : op.permute(this.keys, [0, 2, 1, 3]);
    return peerRetrieve(q4, keys, topk);
  }

  forward(x: Tensor): Tensor {
    if (x.shape.at(-1) !== this.dim) throw new Error(`PEER: input ${JSON.stringify(x.shape)} does not end in ${this.dim} features`);
    const { indices, scores } = this.retrieve(x);
    this.lastIndices = indices;
    this.usage?.add(indices);
    if (this.usage) this.usage.tokens += x.size / this.dim;
    const y = peerExperts(op.reshape(x, [x.size / this.dim, this.dim]), this.downWeight, this.upWeight, indices, scores,
      { activation: this.opts.activation, score: this.opts.score });
    return op.reshape(y, x.shape);
  }

  /** Starts counting expert usage (resets any previous counts). */
  trackUsage(on = true): ExpertUsage | null {
    this.usage = on ? new ExpertUsage(this.opts.numExperts) : null;
    return this.usage;
  }
}

/** An nn.Embedding-shaped holder (`weight` [N, C]) for an expert table, with row-sparse gradients. */
class ExpertTable extends Module {
  constructor(N: number, C: number, init: InitOpts, std: number) {
    super();
    // Rows are accessed at random in a table of up to GiBs: huge pages where the backend has them.
    const w = randn([N, C], init.rng, std, { device: init.device, hugePages: true });
    this.param('weight', w).sparseGrad = true;
  }
}
