// The backend contract: a backend owns buffers and runs the generic kernels below plus one typed
// table per layer family (./contracts.ts); ops own the semantics. Every kernel writes into
// preallocated outputs and works on contiguous row-major buffers.
import type { AttentionKernels, Buf, FactoredRows, FbiKernels, OptimKernels, PeerKernels, TttKernels } from './contracts.ts';

export type { Buf, FactoredRows };
export type DType = 'f32' | 'i32';
export type DeviceName = 'cpu' | 'webgpu';
export type TypedArray = Float32Array | Int32Array;

export type BinaryOp = 'add' | 'sub' | 'mul' | 'div' | 'pow' | 'maximum' | 'minimum' | 'eq' | 'gt';
export type UnaryOp =
  | 'neg' | 'exp' | 'log' | 'sqrt' | 'rsqrt' | 'tanh' | 'sigmoid' | 'relu' | 'silu'
  | 'gelu' | 'gelu_tanh' | 'abs' | 'sign' | 'square' | 'reciprocal';
export type ReduceOp = 'sum' | 'max' | 'min';

/** Strided view description used by copy and broadcast kernels (all in elements). */
export interface Strided {
  shape: number[];
  strides: number[];
  offset: number;
}

/** The generic ops every backend implements in full. */
export interface Kernels {
  fill(out: Buf, value: number): void;
  /** out[i] = a[i] (flat, with optional element offsets), for concat/slice fast paths. */
  copy(src: Buf, srcOffset: number, dst: Buf, dstOffset: number, n: number): void;
  /** Gathers a strided view of src into contiguous dst (permute, slice, expand). */
  copyStrided(src: Buf, view: Strided, dst: Buf): void;
  /** out = a (op) b with a and b given as broadcast views onto out's shape. */
  binary(op: BinaryOp, a: Buf, av: Strided, b: Buf, bv: Strided, out: Buf): void;
  /** out = op(alpha * a + beta) elementwise; alpha=1, beta=0 for plain op. */
  unary(op: UnaryOp | 'identity', a: Buf, out: Buf, alpha: number, beta: number): void;
  /** dx = dy * op'(x) (given x and y = op(x)). */
  unaryBackward(op: UnaryOp, x: Buf, y: Buf, dy: Buf, dx: Buf): void;
  /** SwiGLU's elementwise part in one pass: out = silu(gate) * up over n elements. */
  swiglu(gate: Buf, up: Buf, n: number, out: Buf): void;
  /** Its backward in one pass: dgate = dy * up * silu'(gate), dup = dy * silu(gate). */
  swigluBackward(gate: Buf, up: Buf, dy: Buf, n: number, dgate: Buf, dup: Buf): void;
  /** Reduces [outer, n, inner] over the middle axis into [outer, inner]. */
  reduce(op: ReduceOp, a: Buf, outer: number, n: number, inner: number, out: Buf): void;
  /** Index of the max over the middle axis of [outer, n, inner], as i32. */
  argmax(a: Buf, outer: number, n: number, inner: number, out: Buf): void;
  /** Batched C = alpha * op(A) op(B) + beta * C, row-major; stride 0 broadcasts. */
  matmul(
    a: Buf, b: Buf, c: Buf,
    p: { batch: number; m: number; n: number; k: number; transA: boolean; transB: boolean;
      strideA: number; strideB: number; strideC: number; alpha: number; beta: number },
  ): void;
  /** Row softmax / log-softmax over the last axis of [rows, n]. */
  softmax(a: Buf, rows: number, n: number, out: Buf, log: boolean): void;
  /** dx from y (softmax or log-softmax output) and dy. */
  softmaxBackward(y: Buf, dy: Buf, rows: number, n: number, dx: Buf, log: boolean): void;
  /**
   * Cross-entropy per row of logits [rows, n]. Hard targets (i32 [rows], ignoreIndex skipped) or
   * soft targets given as teacher logits (f32 [rows, n], softmax taken inside). Writes the per-row
   * loss and, when dlogits is given, d(loss_row)/dlogits (unscaled).
   */
  crossEntropy(
    logits: Buf, target: Buf, rows: number, n: number, soft: boolean, ignoreIndex: number,
    loss: Buf, dlogits: Buf | null,
  ): void;
  /** RMSNorm / LayerNorm over the last axis; saves per-row 1/std (and mean) for backward. */
  norm(kind: 'rms' | 'layer', x: Buf, weight: Buf | null, bias: Buf | null, rows: number, n: number, eps: number,
    out: Buf, rstd: Buf, mean: Buf | null): void;
  normBackward(kind: 'rms' | 'layer', x: Buf, weight: Buf | null, rstd: Buf, mean: Buf | null, dy: Buf,
    rows: number, n: number, dx: Buf, dweight: Buf | null, dbias: Buf | null): void;
  /**
   * Rotary embedding on x [B, L, H, D] with positions pos (i32 [L]); interleaved = pairs (2i, 2i+1),
   * else half-split (i, i + D/2). sign = -1 applies the inverse rotation (the backward).
   */
  rope(x: Buf, pos: Buf, b: number, l: number, h: number, d: number, theta: number, interleaved: boolean,
    sign: number, out: Buf): void;
  /** out[i, :] = table[idx[i], :]. */
  gather(table: Buf, idx: Buf, n: number, width: number, out: Buf): void;
  /** table[idx[i], :] += src[i, :]. */
  scatterAdd(src: Buf, idx: Buf, n: number, width: number, table: Buf): void;
  /** Causal depthwise conv1d over x [B, L, C] with weight [C, K] and bias [C]. */
  conv1d(x: Buf, w: Buf, bias: Buf | null, b: number, l: number, c: number, k: number, out: Buf): void;
  conv1dBackward(x: Buf, w: Buf, dy: Buf, b: number, l: number, c: number, k: number,
    dx: Buf, dw: Buf, dbias: Buf | null): void;
  /** Top-k over the last axis of [rows, n]: values (f32) and indices (i32), sorted descending. */
  topk(a: Buf, rows: number, n: number, k: number, values: Buf, indices: Buf): void;
  /**
   * Looks for idx values (i32 [n]) outside [lo, hi), skipping entries equal to `skip`; writes
   * found (i32 [3]): the count, the first such position and its value. Paired with
   * Backend.raiseIf, ops validate indices the same way on every backend.
   */
  findOutOfRange(idx: Buf, n: number, lo: number, hi: number, skip: number | null, found: Buf): void;
  /**
   * Rows of a factored row-sparse gradient (term r adds coef[r] * basis[token[r]] to row slot[r]):
   * written to out [rows, width] (target null), or added into rows target[q] of out [N, width].
   */
  factoredRows(f: FactoredRows, out: Buf, target: Buf | null): void;
}

export interface Backend {
  readonly name: DeviceName;
  /**
   * A zeroed buffer of `length` values. `rowWidth` (the tensor's last dimension) lets a backend that
   * must split very large buffers keep rows whole (WebGPU above its binding limit); others ignore it.
   */
  alloc(length: number, dtype: DType, rowWidth?: number): Buf;
  /**
   * A buffer whose contents are unspecified, for outputs a kernel overwrites entirely (saves the
   * zero-fill of alloc). Backends without it get alloc.
   */
  allocUninit?(length: number, dtype: DType, rowWidth?: number): Buf;
  upload(data: TypedArray, rowWidth?: number): Buf;
  /** Whether readSync works (host memory); else only read() does. */
  readonly syncReadable: boolean;
  /** Synchronous readback (CPU); backends that cannot read synchronously throw. */
  readSync(buf: Buf): TypedArray;
  read(buf: Buf): Promise<TypedArray>;
  free(buf: Buf): void;
  /**
   * Counts one more tensor sharing buf (views such as reshape); free() then releases the storage
   * only when its last tensor is disposed. Backends whose memory the garbage collector owns omit it.
   */
  retain?(buf: Buf): void;
  /**
   * Raises `message(value)` when a findOutOfRange result holds a nonzero count: at once where buffers
   * read synchronously, else at the next read or sync of this backend (device work is asynchronous).
   */
  raiseIf(found: Buf, message: (value: number) => string): void;
  /**
   * A new buffer of `length` values written on the host by `fill` (initialization of large tables:
   * CPU memory is advised to use huge pages before the first write when `hugePages` is set).
   */
  create(length: number, dtype: DType, fill: (host: TypedArray) => void, opts?: { hugePages?: boolean; rowWidth?: number }): Buf;
  /** Generic ops. */
  readonly kernels: Kernels;
  /** The layer families (./contracts.ts); a missing kernel throws KernelUnavailableError. */
  readonly attention: AttentionKernels;
  readonly ttt: TttKernels;
  readonly peer: PeerKernels;
  readonly fbi: FbiKernels;
  readonly optim: OptimKernels;
}
