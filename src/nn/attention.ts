// LLaMA-style multi-head self-attention (grouped KV heads allowed) over the fused attention op, with
// a preallocated KV cache for decoding.
import * as op from '../ops/index.ts';
import { fromArray, Tensor, zeros } from '../tensor/tensor.ts';
import { isGradEnabled } from '../tensor/autograd.ts';
import { Linear, type LinearLike, RMSNorm } from './layers.ts';
import { Module } from './module.ts';

export interface AttentionConfig {
  hiddenSize: number;
  numHeads: number;
  numKvHeads: number;
  ropeTheta: number;
  ropeStyle: 'half' | 'interleaved';
  /** Head size (default hiddenSize / numHeads); q and o then map hiddenSize <-> numHeads * headDim. */
  headDim?: number;
  /** Per-head RMSNorm of q and k before RoPE (Qwen3), with this epsilon. */
  qkNormEps?: number;
}

/** Keys and values of past positions; grows in place up to its capacity (batch 1), else by concat. */
export class KVCache {
  k: Tensor | null = null;
  v: Tensor | null = null;
  length = 0;
  /**
   * A device i32 tensor [1] holding the position of the next one-token step, or null. A replayed
   * decode step (src/infer/replayed-decode.ts) sets it and rewrites it before every replay, so the
   * recorded RoPE reads the new position instead of the one uploaded while recording.
   */
  positions: Tensor | null = null;
  constructor(readonly capacity = 0) {}

  append(k: Tensor, v: Tensor): { k: Tensor; v: Tensor } {
    const [b, l, h, d] = k.shape;
    if (b === 1 && this.capacity >= this.length + l) {
      if (!this.k) {
        this.k = zeros([1, this.capacity, h, d], { device: k.device });
        this.v = zeros([1, this.capacity, h, d], { device: k.device });
      }
      const kern = k.backend.kernels;
      kern.copy(k.buf, 0, this.k.buf, this.length * h * d, k.size);
      kern.copy(v.buf, 0, this.v!.buf, this.length * h * d, v.size);
      this.length += l;
      // Views over the filled prefix (the buffer is longer than the view; kernels read the prefix).
      const view = (t: Tensor) => new Tensor(t.buf, [1, this.length, h, d], 'f32', t.device);
      return { k: view(this.k), v: view(this.v!) };
    }
    this.k = this.k ? op.concat([this.k, k], 1) : k;
    this.v = this.v ? op.concat([this.v, v], 1) : v;
    this.length += l;
    return { k: this.k, v: this.v! };
  }
}

export class SelfAttention extends Module {
  readonly q: LinearLike;
  readonly k: LinearLike;
  readonly v: LinearLike;
  readonly o: LinearLike;
  readonly qNorm?: RMSNorm;
  readonly kNorm?: RMSNorm;
  readonly headDim: number;
  constructor(readonly cfg: AttentionConfig, makeLinear: (i: number, o: number) => LinearLike) {
    super();
    const { hiddenSize: c, numHeads: h, numKvHeads: hkv } = cfg;
    if ((cfg.headDim === undefined && c % h !== 0) || h % hkv !== 0) throw new Error(`attention: hidden ${c}, heads ${h}, kv heads ${hkv} do not divide`);
    this.headDim = cfg.headDim ?? c / h;
    const d = this.headDim;
    this.q = this.child('q_proj', makeLinear(c, h * d));
    this.k = this.child('k_proj', makeLinear(c, hkv * d));
    this.v = this.child('v_proj', makeLinear(c, hkv * d));
    this.o = this.child('o_proj', makeLinear(h * d, c));
    if (cfg.qkNormEps !== undefined) {
      this.qNorm = this.child('q_norm', new RMSNorm(d, cfg.qkNormEps));
      this.kNorm = this.child('k_norm', new RMSNorm(d, cfg.qkNormEps));
    }
  }

  forward(x: Tensor, cache?: KVCache): Tensor {
    const [b, l] = x.shape;
    const { numHeads: h, numKvHeads: hkv, ropeTheta, ropeStyle } = this.cfg;
    const d = this.headDim;
    const start = cache?.length ?? 0;
    const pos = cache?.positions && l === 1 ? cache.positions : fromArray(Int32Array.from({ length: l }, (_, i) => start + i), [l], x.device);
    const rope = { theta: ropeTheta, style: ropeStyle } as const;
    // Training: q, k and v as one batched product when they are plain Linears of one shape (the
    // 125M model's three 768 x 768 products and their gradients become one GEMM each way).
    const qkv = isGradEnabled() ? Linear.stacked(x, [this.q, this.k, this.v]) : null;
    let q = op.reshape(qkv ? qkv[0] : this.q.forward(x), [b, l, h, d]);
    let k = op.reshape(qkv ? qkv[1] : this.k.forward(x), [b, l, hkv, d]);
    if (this.qNorm) q = this.qNorm.forward(q);
    if (this.kNorm) k = this.kNorm.forward(k);
    q = op.rope(q, pos, rope);
    k = op.rope(k, pos, rope);
    let v = op.reshape(qkv ? qkv[2] : this.v.forward(x), [b, l, hkv, d]);
    if (cache) ({ k, v } = cache.append(k, v));
    const a = op.attention(q, k, v, { causal: true });
    return this.o.forward(op.reshape(a, [b, l, h * d]));
  }

  /**
   * Several independent sequences in one forward: row i of x [N, L, C] continues caches[i] (each
   * cache holds one sequence at its own position). The projections run once over all rows; RoPE,
   * the cache append and attention run per row, since each row has its own past.
   */
  forwardRows(x: Tensor, caches: KVCache[]): Tensor {
    const [n, l] = x.shape;
    if (caches.length !== n) throw new Error(`attention: ${n} rows but ${caches.length} caches`);
    const { numHeads: h, numKvHeads: hkv, ropeTheta, ropeStyle } = this.cfg;
    const d = this.headDim;
    const rope = { theta: ropeTheta, style: ropeStyle } as const;
    const q = op.reshape(this.q.forward(x), [n, l, h, d]);
    const k = op.reshape(this.k.forward(x), [n, l, hkv, d]);
    const v = op.reshape(this.v.forward(x), [n, l, hkv, d]);
    const rows = caches.map((cache, i) => {
      const pos = fromArray(Int32Array.from({ length: l }, (_, j) => cache.length + j), [l], x.device);
      const row = (t: Tensor) => op.slice(t, 0, i, i + 1);
      const kv = cache.append(op.rope(row(k), pos, rope), row(v));
      return op.attention(op.rope(row(q), pos, rope), kv.k, kv.v, { causal: true });
    });
    return this.o.forward(op.reshape(n === 1 ? rows[0] : op.concat(rows, 0), [n, l, h * d]));
  }
}
