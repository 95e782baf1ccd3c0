// Tensor: shape + dtype + device + contiguous storage, with an optional autograd node.
import type { Backend, Buf, DType, DeviceName, FactoredRows, TypedArray } from '../backend/types.ts';
import { getBackend } from '../backend/registry.ts';
import { Rng } from './rng.ts';
import { currentScope } from './scope.ts';

export type Shape = readonly number[];

/**
 * A row gradient held as a sum of rank-1 terms: term r adds coef[r] * basis[token[r]] to the row
 * listed at slot[r] of the owning RowSparse's indices. PEER's expert tables get one term per
 * retrieval, so the gradient costs O(terms) scalars plus one [B, width] basis instead of one
 * [rows, width] block.
 */
export interface RowFactors {
  readonly slot: Tensor; // i32 [R], positions into RowSparse.indices
  readonly token: Tensor; // i32 [R], rows of basis
  readonly coef: Tensor; // f32 [R]
  readonly basis: Tensor; // f32 [B, width]
}

/** A gradient that touches only some rows of a [rows, width] parameter. */
export class RowSparse {
  /** The rank-1 terms when the gradient is factored (indices then lists each row once), else null. */
  readonly factors: RowFactors | null;
  private rowValues: Tensor | null;

  constructor(
    readonly indices: Tensor, // i32 [n]
    values: Tensor | RowFactors, // f32 [n, width], or the rank-1 terms of the n rows
    /**
     * True when each row's whole gradient sits at its first entry: rows unique, or sorted with later
     * repeats holding zeros (what device kernels produce without a readback). Optimizers may then
     * apply the entries directly. Factored gradients always list their rows once.
     */
    readonly coalesced = false,
  ) {
    if (values instanceof Tensor) {
      this.rowValues = values;
      this.factors = null;
    } else {
      this.rowValues = null;
      this.factors = values;
      this.coalesced = true;
    }
  }

  /** The factored terms as the kernels take them (null when the rows are materialized). */
  factoredBufs(): FactoredRows | null {
    const f = this.factors;
    if (!f) return null;
    return { slot: f.slot.buf, token: f.token.buf, coef: f.coef.buf, basis: f.basis.buf, terms: f.slot.size, rows: this.indices.size, width: this.width };
  }

  /** Row width (the parameter's trailing size). */
  get width(): number {
    return this.factors ? this.factors.basis.shape.at(-1)! : this.rowValues!.shape.at(-1)!;
  }

  /**
   * The gradient rows, f32 [n, width]. A factored gradient is materialized on first access (n x
   * width memory, kept until dispose): optimizers and norms read the factors instead.
   */
  get values(): Tensor {
    if (!this.rowValues) {
      const f = this.factors!;
      const out = empty([this.indices.size, this.width], { device: f.basis.device });
      out.backend.kernels.factoredRows(this.factoredBufs()!, out.buf, null);
      this.rowValues = out;
    }
    return this.rowValues;
  }

  /** The tensors this gradient holds (to keep them out of a tidy scope or dispose them). */
  tensors(): Tensor[] {
    const f = this.factors;
    const own = f ? [f.slot, f.token, f.coef, f.basis] : [];
    return [this.indices, ...own, ...(this.rowValues ? [this.rowValues] : [])];
  }

  dispose(): void {
    for (const t of this.tensors()) t.dispose();
  }
}

/**
 * A slice's gradient: g fills [start, end) of `axis` of the slice's input, zeros elsewhere. backward()
 * collects an input's pieces and assembles them once (SlicePiece.assemble, set by the slice op), so n
 * slices of one tensor cost one concat instead of n zero-padded copies summed.
 */
export class SlicePiece {
  /** Builds the input's dense gradient from its pieces (registered by ops/shape.ts). */
  static assemble: ((pieces: SlicePiece[], shape: readonly number[]) => Tensor) | null = null;
  constructor(readonly g: Tensor, readonly axis: number, readonly start: number, readonly end: number) {}
}

export type Grad = Tensor | RowSparse | SlicePiece | null;

export interface Node {
  readonly op: string;
  readonly inputs: Tensor[];
  /** Maps the output's gradient to one gradient per input (null where not needed). */
  backward(grad: Tensor): Grad[];
}

let nextId = 1;

export class Tensor {
  readonly id = nextId++;
  readonly shape: number[];
  readonly dtype: DType;
  readonly device: DeviceName;
  buf: Buf;
  requiresGrad = false;
  /** Parameters whose gradient may stay row-sparse (embedding tables, PEER experts). */
  sparseGrad = false;
  grad: Tensor | null = null;
  sparseGrads: RowSparse[] = [];
  node: Node | null = null;
  name = '';
  private disposed = false;

  constructor(buf: Buf, shape: Shape, dtype: DType, device: DeviceName) {
    this.buf = buf;
    this.shape = [...shape];
    this.dtype = dtype;
    this.device = device;
    const n = numel(shape);
    if (buf.length < n) throw new Error(`internal: buffer of ${buf.length} elements for shape [${shape}]`);
    getBackend(device).retain?.(buf);
    currentScope()?.track(this);
  }

  get size(): number {
    return numel(this.shape);
  }
  get ndim(): number {
    return this.shape.length;
  }
  get backend(): Backend {
    return getBackend(this.device);
  }
  get isDisposed(): boolean {
    return this.disposed;
  }

  /** Synchronous readback; CPU only (WebGPU readback is asynchronous: use data()). */
  dataSync(): TypedArray {
    this.assertAlive();
    const a = this.backend.readSync(this.buf);
    return a.length === this.size ? a : a.subarray(0, this.size);
  }
  /** Host data when the backend can read synchronously (host memory), else null. */
  dataSyncMaybe(): TypedArray | null {
    return this.backend.syncReadable ? this.dataSync() : null;
  }
  async data(): Promise<TypedArray> {
    this.assertAlive();
    const a = await this.backend.read(this.buf);
    return a.length === this.size ? a : a.subarray(0, this.size);
  }
  async item(): Promise<number> {
    if (this.size !== 1) throw new Error(`item(): tensor has ${this.size} elements, expected 1`);
    return (await this.data())[0];
  }
  itemSync(): number {
    if (this.size !== 1) throw new Error(`item(): tensor has ${this.size} elements, expected 1`);
    return this.dataSync()[0];
  }
  toArraySync(): number[] {
    return Array.from(this.dataSync());
  }

  /** Frees device memory now (CPU memory is left to the garbage collector). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.backend.free(this.buf);
  }
  assertAlive(): void {
    if (this.disposed) throw new Error(`tensor ${this.name || this.id} [${this.shape}] was disposed`);
  }

  /** Marks as a trainable leaf. */
  param(name = ''): this {
    this.requiresGrad = true;
    this.name = name;
    return this;
  }
  zeroGrad(): void {
    this.grad?.dispose();
    this.grad = null;
    for (const s of this.sparseGrads) s.dispose();
    this.sparseGrads = [];
  }
  toString(): string {
    return `Tensor(${this.dtype}[${this.shape.join(', ')}] on ${this.device})`;
  }
}

export function numel(shape: Shape): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

export function checkShape(shape: Shape, what = 'shape'): void {
  for (const s of shape) {
    if (!Number.isInteger(s) || s < 0) throw new Error(`${what} [${shape.join(', ')}] has an invalid dimension ${s}`);
  }
}

export interface CreateOpts {
  dtype?: DType;
  device?: DeviceName;
}

/** Values per row of a tensor of this shape (its last dimension; 1 for vectors and scalars). */
const rowWidth = (shape: Shape) => (shape.length > 1 ? shape[shape.length - 1] : 1);

/** Allocates an uninitialized (zeroed on CPU) tensor. */
export function empty(shape: Shape, opts: CreateOpts = {}): Tensor {
  checkShape(shape);
  const dtype = opts.dtype ?? 'f32';
  const device = opts.device ?? 'cpu';
  const b = getBackend(device);
  return new Tensor(b.alloc(Math.max(1, numel(shape)), dtype, rowWidth(shape)), shape, dtype, device);
}

/**
 * Like empty() but with unspecified contents (no zero-fill where the backend can skip it): only for
 * outputs that a kernel overwrites entirely before anything reads them.
 */
export function emptyUninit(shape: Shape, opts: CreateOpts = {}): Tensor {
  checkShape(shape);
  const dtype = opts.dtype ?? 'f32';
  const device = opts.device ?? 'cpu';
  const b = getBackend(device);
  const n = Math.max(1, numel(shape));
  return new Tensor(b.allocUninit ? b.allocUninit(n, dtype, rowWidth(shape)) : b.alloc(n, dtype, rowWidth(shape)), shape, dtype, device);
}

export function full(shape: Shape, value: number, opts: CreateOpts = {}): Tensor {
  const t = empty(shape, opts);
  t.backend.kernels.fill(t.buf, value);
  return t;
}
export const zeros = (shape: Shape, opts: CreateOpts = {}) => full(shape, 0, opts);
export const ones = (shape: Shape, opts: CreateOpts = {}) => full(shape, 1, opts);

/** Creates a tensor from values (copied). */
export function tensor(values: ArrayLike<number>, shape?: Shape, opts: CreateOpts = {}): Tensor {
  const s = shape ?? [values.length];
  checkShape(s);
  if (numel(s) !== values.length) {
    throw new Error(`tensor(): ${values.length} values do not fill shape [${s.join(', ')}]`);
  }
  const dtype = opts.dtype ?? (values instanceof Int32Array ? 'i32' : 'f32');
  const arr = dtype === 'f32' ? Float32Array.from(values) : Int32Array.from(values);
  return fromArray(arr, s, opts.device);
}

/** Wraps a typed array (taken over without a copy on CPU). */
export function fromArray(arr: TypedArray, shape: Shape, device: DeviceName = 'cpu'): Tensor {
  checkShape(shape);
  if (numel(shape) !== arr.length) {
    throw new Error(`fromArray(): ${arr.length} values do not fill shape [${shape.join(', ')}]`);
  }
  const dtype: DType = arr instanceof Float32Array ? 'f32' : 'i32';
  const b = getBackend(device);
  return new Tensor(b.upload(arr, rowWidth(shape)), shape, dtype, device);
}

/**
 * Normal values (mean 0, std). `hugePages` asks the backend to back a large table with huge pages
 * before it is written (rows then accessed at random, e.g. PEER's expert tables).
 */
export function randn(shape: Shape, rng: Rng, std = 1, opts: CreateOpts & { hugePages?: boolean } = {}): Tensor {
  checkShape(shape);
  const device = opts.device ?? 'cpu';
  const b = getBackend(device);
  const buf = b.create(numel(shape), 'f32', (a) => { for (let i = 0; i < a.length; i++) a[i] = rng.normal() * std; },
    { hugePages: opts.hugePages, rowWidth: rowWidth(shape) });
  return new Tensor(buf, shape, 'f32', device);
}

export function rand(shape: Shape, rng: Rng, lo = 0, hi = 1, opts: CreateOpts = {}): Tensor {
  const a = new Float32Array(numel(shape));
  for (let i = 0; i < a.length; i++) a[i] = lo + (hi - lo) * rng.uniform();
  return fromArray(a, shape, opts.device);
}

/** Moves (copies) a tensor to another device. */
export async function toDevice(t: Tensor, device: DeviceName): Promise<Tensor> {
  if (t.device === device) return t;
  const data = await t.data();
  return fromArray(data.slice(), t.shape, device);
}
