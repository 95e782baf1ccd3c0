// The kernel contracts of the layer families. A backend is a small connector: it owns buffers, runs
// the generic ops (`Kernels` in ./types.ts) and implements one table per family below. Each family is
// documented once, here; the ops in src/ops are its only callers (src/train calls `OptimKernels`).
// A backend that lacks a kernel fills the slot with `unsupported(backend, 'family.op')`, so calling it
// raises one error naming both (FEATURES.md lists the gaps).
//
// Conventions for every family: buffers are contiguous row-major; outputs are preallocated by the op
// and overwritten unless a field says "accumulated"; sizes are in elements; shapes are checked by the
// op (src/ops) before a kernel runs, so kernels only check what a raw call could get wrong (buffer
// lengths, buffers from another backend).
//
// Each fused kernel has a plain reference of the same contract in ./reference/ (TypeScript loops,
// float64 where it matters); tests and benchmarks hold every backend against it. The generic ops are
// in ./types.ts (Kernels), with the Backend that holds every table.

/** Opaque device buffer. */
export interface Buf {
  readonly length: number;
}

/** A factored row-sparse gradient: `terms` rank-1 terms over `rows` rows of `width` values. */
export interface FactoredRows {
  /** i32 [terms]: the row (0..rows-1) each term adds to. */
  slot: Buf;
  /** i32 [terms]: the basis row each term scales. */
  token: Buf;
  /** f32 [terms]. */
  coef: Buf;
  /** f32 [basis rows, width]. */
  basis: Buf;
  terms: number; rows: number; width: number;
}

/** The one error a missing kernel raises. */
export class KernelUnavailableError extends Error {
  constructor(readonly backend: string, readonly op: string) {
    super(`the ${backend} backend has no '${op}' kernel`);
    this.name = 'KernelUnavailableError';
  }
}

/** A kernel slot a backend does not implement: calling it throws KernelUnavailableError. */
export function unsupported(backend: string, op: string): (...args: never[]) => never {
  return () => { throw new KernelUnavailableError(backend, op); };
}

// ---------------------------------------------------------------------------------------------------
// Attention

/** Sizes of a fused causal (or full) attention call: q/o [b, l, h, d], k/v [b, s, hkv, d], lse [b, h, l]. */
export interface AttentionDims {
  b: number; l: number; s: number; h: number; hkv: number; d: number;
  /** Multiplies q . k (usually 1 / sqrt(d)). */
  scale: number;
  /** Query i sees keys j <= i + (s - l) (the last l positions of s). */
  causal: boolean;
}

export interface AttentionKernels {
  /** o = softmax(scale q k^T [+ causal mask]) v per head (GQA: head i reads kv head i / (h / hkv)); lse = row log-sum-exp. */
  forward(q: Buf, k: Buf, v: Buf, o: Buf, lse: Buf, p: AttentionDims): void;
  /** dq, dk, dv (overwritten) from dO, with o and lse from forward on the same inputs. */
  backward(q: Buf, k: Buf, v: Buf, o: Buf, dO: Buf, lse: Buf, dq: Buf, dk: Buf, dv: Buf, p: AttentionDims): void;
}

// ---------------------------------------------------------------------------------------------------
// TTT mini-batch scan (TTT-Linear / TTT-MLP inner loop, dual form)

export interface TttDims {
  /** TTT-MLP (two inner layers, gelu) instead of TTT-Linear. */
  mlp: boolean;
  batch: number;
  heads: number;
  length: number;
  /** Head dim f. */
  dim: number;
  /** Inner hidden width: f (linear) or 4f (MLP). */
  hidden: number;
  miniBatch: number;
}

export interface TttInputs<B = Buf> {
  /** [batch, heads, length, f] each. */
  xq: B; xk: B; xv: B;
  /** [batch, heads, length]: per-token inner learning rate (base_lr * sigmoid(.) / f). */
  lr: B;
  /** [miniBatch]: per in-mini-batch position scale. */
  tokenEta: B;
  /** Initial inner weights [heads, f, hidden], [heads, hidden]; MLP also [heads, hidden, f], [heads, f]. */
  w1: B; b1: B; w2: B | null; b2: B | null;
  /** Inner LayerNorm [heads, f]. */
  lnW: B; lnB: B;
}

/** Decoding state, [batch, heads, ...] each, updated in place: weights at the current mini-batch start and the gradient sums of its earlier tokens. */
export interface TttState<B = Buf> {
  w1: B; b1: B; w2: B | null; b2: B | null;
  gw1: B; gb1: B; gw2: B | null; gb2: B | null;
}

/** Inner weights at each segment start, [batch, heads, segments, ...], written by forward for backward. */
export interface TttSaved<B = Buf> { w1: B; b1: B; w2: B | null; b2: B | null }

/** Gradients of every input (overwritten), laid out like the inputs. */
export interface TttGrads<B = Buf> {
  dxq: B; dxk: B; dxv: B; dlr: B; dTokenEta: B;
  dw1: B; db1: B; dw2: B | null; db2: B | null; dlnW: B; dlnB: B;
}

export interface TttKernels {
  /**
   * out [batch, length, heads * f] = XQ + LN(f_inner(XQ)) per head, the inner model trained on each
   * mini-batch with gradients at the mini-batch's starting weights. With `state`, continues a
   * decoding state from absolute position `start` (inputs then hold only the new tokens); with
   * `saved`, records the weights at each segment start for backward (stateless, start 0).
   */
  forward(d: TttDims, x: TttInputs, out: Buf, start: number, state: TttState | null, saved: TttSaved | null): void;
  /** Reverses a stateless forward from position 0 (second-order terms of the inner loss included). */
  backward(d: TttDims, x: TttInputs, saved: TttSaved, dOut: Buf, g: TttGrads): void;
}

// ---------------------------------------------------------------------------------------------------
// PEER (product-key retrieval over single-neuron experts) and its BatchNorm1d

/** Sizes of a product-key retrieval: q [tokens, heads, 2, dh], keys [hk, 2, n, dh] (hk = 1 shared or heads). */
export interface PeerRetrieveDims { tokens: number; heads: number; hk: number; n: number; dh: number; k: number }

export interface PeerRetrieveOut {
  /** i32 [tokens, heads, k]: expert id i * n + j, best first (ties keep the lower id). */
  indices: Buf;
  /** f32 [tokens, heads, k]: q0 . c_i + q1 . c'_j. */
  scores: Buf;
  /** i32 [tokens, heads, k, 2]: the (i, j) sub-key pair of each pick, for backward. */
  sub: Buf;
}

export type PeerActivation = 'gelu' | 'relu';
export type PeerScore = 'softmax' | 'sigmoid';

/** Sizes of the expert mixture: x [tokens, c], tables [experts, c], picks [tokens, heads, k]. */
export interface PeerExpertDims {
  tokens: number; c: number; experts: number; heads: number; k: number;
  activation: PeerActivation;
  score: PeerScore;
}

export interface PeerExpertInputs {
  x: Buf;
  /** Expert tables u (down) and v (up), [experts, c]. */
  down: Buf; up: Buf;
  /** i32 [tokens, heads, k] expert ids and their raw router scores. */
  indices: Buf; scores: Buf;
}

/** What forward keeps for backward: router weights g and pre-activations u_e . x_t, [tokens, heads, k] each. */
export interface PeerExpertSaved { g: Buf; pre: Buf }

/**
 * Row-sparse gradients of the two expert tables. 'factored': each touched expert once in `rows`
 * (i32 [rows]); occurrence o (token o / (heads k), expert indices[o]) adds ds[o] * x[token] to the
 * down row slot[o] and w[o] * dy[token] to the up row (no [rows, c] block is built). 'rows': rows
 * (i32 [tokens heads k], ascending) with du, dv [same, c], each expert's whole gradient at its first
 * entry and zeros at repeats (coalesced without a readback).
 */
export type PeerTableGrads =
  | { form: 'factored'; rows: Buf; count: number; slot: Buf; token: Buf; ds: Buf; w: Buf }
  | { form: 'rows'; rows: Buf; count: number; du: Buf; dv: Buf };

/** Sizes of BatchNorm1d over x [rows, features]. */
export interface BatchNormDims { rows: number; features: number; training: boolean; momentum: number; eps: number }

export interface PeerKernels {
  /** Exact top-k over all n^2 experts per (token, head). */
  retrieve(q: Buf, keys: Buf, d: PeerRetrieveDims, out: PeerRetrieveOut): void;
  /** dq, dkeys (overwritten) from d(scores). */
  retrieveBackward(q: Buf, keys: Buf, sub: Buf, dScores: Buf, d: PeerRetrieveDims, dq: Buf, dkeys: Buf): void;
  /** y [tokens, c] = sum over picks of g * act(u_e . x_t) * v_e, g = softmax/sigmoid of the scores per head; fills saved. */
  expertsForward(x: PeerExpertInputs, d: PeerExpertDims, y: Buf, saved: PeerExpertSaved): void;
  /** dx [tokens, c] and d(scores) (overwritten); returns the tables' row-sparse gradients in new buffers. */
  expertsBackward(x: PeerExpertInputs, d: PeerExpertDims, saved: PeerExpertSaved, dy: Buf, dx: Buf, dScores: Buf): PeerTableGrads;
  /**
   * BatchNorm1d (PyTorch semantics). Training: batch mean and biased variance normalize; running
   * statistics, when given, move by momentum with the unbiased variance. Eval: running statistics
   * normalize. Saves mean and 1/std per feature.
   */
  batchNormForward(x: Buf, weight: Buf | null, bias: Buf | null, runMean: Buf | null, runVar: Buf | null, d: BatchNormDims,
    y: Buf, mean: Buf, rstd: Buf): void;
  batchNormBackward(x: Buf, weight: Buf | null, mean: Buf, rstd: Buf, dy: Buf, d: BatchNormDims,
    dx: Buf, dweight: Buf | null, dbias: Buf | null): void;
}

// ---------------------------------------------------------------------------------------------------
// FBI packed 1-bit linears and the other low-bit serving weights (f16 / int8 heads, GGUF blocks)

export type FbiScalePattern = 'column' | 'row' | 'single';

/**
 * A packed FBI product y [rows, outF] = x [rows, inF] @ (alpha * S + beta)^T. S = +-1 from sign bits
 * (i32 [outF, ceil(inF / 32)], bit j % 32 of word j / 32, set = +1, rows padded with zero bits).
 * column: alpha, beta [inF] scale inputs; row: [outF] scale outputs; single: one of each.
 */
export interface FbiMatmulArgs {
  x: Buf; bits: Buf; alpha: Buf; beta: Buf;
  pattern: FbiScalePattern;
  rows: number; inF: number; outF: number;
  y: Buf;
}

/** Row stride (bytes) of an int8 weight: the input count rounded up to 64. */
export const int8RowBytes = (inF: number) => Math.ceil(inF / 64) * 64;

/** GGUF block formats that stay in their blocks. */
export type QuantBlockType = 'Q8_0' | 'Q4_0' | 'Q1_0';

export interface FbiKernels {
  /** Sign bits of a latent weight w [outF, inF] into bits (layout of FbiMatmulArgs): 1 where w > 0. */
  packSigns(w: Buf, inF: number, outF: number, bits: Buf): void;
  /** The exact product (f32 activations): equals the latent model's linear. */
  packedMatmul(a: FbiMatmulArgs): void;
  /**
   * The serving product: x quantized to int8 once per token (absmax / 127, after the column scales
   * for 'column'), integer sums over the signs. A backend may keep a re-laid-out copy of `bits`,
   * keyed by the buffer (a new weight tensor is a new buffer).
   */
  int8Matmul(a: FbiMatmulArgs): void;
  /** y [rows, outF] = x @ W^T with W [outF, inF] as f16 bits, two per i32 word (row-major halves). */
  f16Matmul(x: Buf, w: Buf, rows: number, inF: number, outF: number, y: Buf): void;
  /**
   * y = x @ (scale * q)^T with q int8 [outF, rowBytes] (bytes in i32 words, rows padded to
   * int8RowBytes(inF)) and x quantized to int8 per token.
   */
  int8HeadMatmul(x: Buf, q: Buf, scale: Buf, rows: number, inF: number, outF: number, y: Buf): void;
  /** y = x @ W^T from GGUF blocks (bytes), activations quantized per 32 values. */
  quantMatmul(x: Buf, w: Uint8Array, type: QuantBlockType, rows: number, inF: number, outF: number, y: Buf): void;
  /**
   * A packed LLaMA-shaped decoder stack run whole per step (src/infer/fused-decode.ts): embedding,
   * per layer RMSNorm -> int8Matmul q/k/v -> RoPE -> KV cache -> causal attention -> o -> residual ->
   * RMSNorm -> gate/up -> silu(gate) * up -> down -> residual, final RMSNorm, head. Its outputs must
   * equal the same model run op by op on this backend (its definition; there is no separate reference).
   */
  decodeStack(spec: FbiStackSpec): FbiDecodeStack;
}

/** One packed linear of a decoder stack: sign bits and scales as in FbiMatmulArgs. */
export interface FbiStackLinear { bits: Buf; alpha: Buf; beta: Buf; pattern: FbiScalePattern; inF: number; outF: number }

export interface FbiStackLayer {
  /** RMSNorm weights before attention and before the FFN. */
  norm1: Buf; norm2: Buf;
  q: FbiStackLinear; k: FbiStackLinear; v: FbiStackLinear; o: FbiStackLinear;
  gate: FbiStackLinear; up: FbiStackLinear; down: FbiStackLinear;
}

/** The stack's head: f16 bits (as f16Matmul), int8 rows + scales (as int8HeadMatmul), or none (hidden states out). */
export type FbiStackHead = { kind: 'f16'; w: Buf } | { kind: 'int8'; q: Buf; scale: Buf } | { kind: 'none' };

export interface FbiStackSpec {
  hidden: number; heads: number; kvHeads: number; headDim: number; intermediate: number; vocab: number;
  /** One epsilon for every RMSNorm; RoPE as the rope kernel (theta, 'half' | 'interleaved'). */
  eps: number; ropeTheta: number; ropeStyle: 'half' | 'interleaved';
  /** Embedding table [vocab, hidden] and final norm weight [hidden]. */
  embed: Buf; norm: Buf; head: FbiStackHead; layers: FbiStackLayer[];
}

/** A decoding state of a stack: its KV cache of `capacity` positions. */
export interface FbiDecodeState {
  readonly capacity: number;
  readonly position: number;
  /** Forgets the cached positions from `position` on. */
  rewind(position: number): void;
  /** Milliseconds spent per phase of the steps so far (for profiles). */
  phaseTimes(): Record<string, number>;
}

export interface FbiDecodeStack {
  /** Width of an output row: vocab, or hidden when the head is 'none'. */
  readonly width: number;
  createState(capacity: number): FbiDecodeState;
  /**
   * Runs ids from the state's position (appending their keys and values) and returns the output rows
   * of the last token, or of every token with `all`. Past the state's capacity it throws. The
   * returned array belongs to the state and is overwritten by its next step.
   */
  step(state: FbiDecodeState, ids: Int32Array, all: boolean): Float32Array;
}

// ---------------------------------------------------------------------------------------------------
// Optimizer updates and gradient reductions (called from src/train)

export interface AdamWHyper {
  lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number;
  /** Multiplies every gradient value first (clipping, accumulation). */
  gradScale: number;
}

export interface OptimKernels {
  /**
   * AdamW step in place (PyTorch semantics: decoupled weight decay, bias-corrected moments). With
   * rows (i32 [nRows]) only those rows of a [*, width] parameter change (lazy Adam): grad is then
   * [nRows, width], rows unique or sorted with each row's gradient at its first entry (an entry equal
   * to the one before it is skipped).
   */
  adamw(param: Buf, grad: Buf, m: Buf, v: Buf, rows: Buf | null, nRows: number, width: number, h: AdamWHyper, scale?: Buf | null): void;
  /**
   * Sum of squares of n elements, written to out[at] (at defaults to 0). The optional `scale` of
   * adamw (f32, its [0] multiplies every gradient after h.gradScale) is how a clip factor computed
   * on the device reaches the update without a readback.
   */
  sumSquares(a: Buf, n: number, out: Buf, at?: number): void;
  /**
   * Global-norm clipping on the device: norm = sqrt(sum of sumSq[0..count)) * scale, then
   * out[0] = scale * (maxNorm > 0 && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1) and out[1] = norm
   * (the clip factor times the accumulation scale, and the norm for metrics).
   */
  clipScale(sumSq: Buf, count: number, maxNorm: number, scale: number, out: Buf): void;
  /**
   * Sums duplicate rows of a row-sparse gradient (rows i32 [n], values [n, width]) into the coalesced
   * form: new buffers rows [count] and values [count, width], each row's total at its first entry
   * (later repeats, if the backend keeps them, hold zeros and sort right after it).
   */
  coalesceRows(rows: Buf, values: Buf, n: number, width: number): { rows: Buf; values: Buf; count: number };
  /** Sum of squares of all rows of a factored gradient. */
  factoredSumSquares(f: FactoredRows): number;
  /** Lazy AdamW on rows target[q] of param, m, v with each row's gradient built from its factored terms. */
  factoredAdamw(f: FactoredRows, target: Buf, param: Buf, m: Buf, v: Buf, h: AdamWHyper): void;
}
