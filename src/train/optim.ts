// AdamW (PyTorch semantics) with a lazy row-sparse path for parameters whose gradients are
// row-sparse (PEER expert tables): only touched rows' weights and moments are read or written.
import { noGrad } from '../tensor/autograd.ts';
import { RowSparse, type Tensor, empty, fromArray, full } from '../tensor/tensor.ts';

export interface AdamWOpts {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Parameters (by name) exempt from weight decay. */
  noDecay?: (name: string, t: Tensor) => boolean;
}

interface Slot {
  m: Tensor;
  v: Tensor;
}

export class AdamW {
  step = 0;
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  private readonly slots = new Map<Tensor, Slot>();
  constructor(readonly params: [string, Tensor][], opts: AdamWOpts) {
    this.lr = opts.lr;
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.95;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.1;
    this.noDecay = opts.noDecay ?? (() => false);
  }
  private readonly noDecay: (name: string, t: Tensor) => boolean;

  private slot(p: Tensor): Slot {
    let s = this.slots.get(p);
    if (!s) {
      // CPU allocations are zero pages until touched, so a row-sparse table's moments stay mostly
      // unresident; other devices need an explicit fill.
      const zero = () => (p.device === 'cpu' ? empty(p.shape) : full(p.shape, 0, { device: p.device }));
      s = { m: zero(), v: zero() };
      this.slots.set(p, s);
    }
    return s;
  }

  /** Applies one update with the current gradients scaled by gradScale (for clipping/accumulation). */
  update(gradScale = 1): void {
    this.step++;
    noGrad(() => {
      for (const [name, p] of this.params) {
        if (!p.grad && p.sparseGrads.length === 0) continue;
        const s = this.slot(p);
        const h = {
          lr: this.lr, beta1: this.beta1, beta2: this.beta2, eps: this.eps, step: this.step, gradScale,
          weightDecay: this.noDecay(name, p) ? 0 : this.weightDecay,
        };
        const k = p.backend.kernels;
        const width = p.shape.length > 1 ? p.size / p.shape[0] : 1;
        if (p.grad) k.adamw(p.buf, p.grad.buf, s.m.buf, s.v.buf, null, 0, width, h);
        const factored = p.sparseGrads.length ? mergeFactored(p.sparseGrads) : null;
        if (factored) {
          // Each touched row's gradient is built from its rank-1 terms inside the update kernel.
          const f = factored.factors!;
          factoredKernel(p, 'factoredAdamw')(f.slot.buf, f.token.buf, f.coef.buf, f.basis.buf, f.slot.size, factored.indices.size, width,
            factored.indices.buf, p.shape[0], p.buf, s.m.buf, s.v.buf, h.lr, h.beta1, h.beta2, h.eps, h.weightDecay, h.step, gradScale);
        } else if (p.sparseGrads.length) {
          const { rows, values } = coalesce(p.sparseGrads, width);
          k.adamw(p.buf, values.buf, s.m.buf, s.v.buf, rows.buf, rows.size, width, h);
        }
      }
    });
  }

  zeroGrad(): void {
    for (const [, p] of this.params) p.zeroGrad();
  }

  /** Optimizer state for checkpoints: moments by parameter name and the step count. */
  state(): { step: number; moments: Map<string, Slot> } {
    const moments = new Map<string, Slot>();
    for (const [name, p] of this.params) {
      const s = this.slots.get(p);
      if (s) moments.set(name, s);
    }
    return { step: this.step, moments };
  }
  loadState(step: number, moments: Map<string, Slot>): void {
    this.step = step;
    for (const [name, p] of this.params) {
      const s = moments.get(name);
      if (!s) continue;
      if (s.m.size !== p.size) throw new Error(`optimizer state for '${name}' has ${s.m.size} values, parameter has ${p.size}`);
      this.slots.set(p, s);
    }
  }
}

/** Sums duplicate rows of row-sparse gradients (CPU readback of indices; values summed in place). */
export function coalesce(parts: RowSparse[], width: number): { rows: Tensor; values: Tensor } {
  if (parts.length === 1 && parts[0].coalesced) return { rows: parts[0].indices, values: parts[0].values };
  if (parts[0].values.device !== 'cpu') {
    throw new Error('row-sparse gradients from several backward passes (or an embedding with sparse updates) are summed on the cpu only; on webgpu use one backward per step or dense embedding updates');
  }
  const order = new Map<number, number>();
  for (const part of parts) {
    const ix = part.indices.dataSync();
    for (let i = 0; i < ix.length; i++) if (!order.has(ix[i])) order.set(ix[i], order.size);
  }
  const rows = Int32Array.from(order.keys());
  const vals = empty([rows.length, width], { device: parts[0].values.device });
  const out = vals.dataSync() as Float32Array;
  for (const part of parts) {
    const ix = part.indices.dataSync();
    const src = part.values.dataSync();
    for (let i = 0; i < ix.length; i++) {
      const base = order.get(ix[i])! * width;
      for (let j = 0; j < width; j++) out[base + j] += src[i * width + j];
    }
  }
  return { rows: fromRows(rows, vals), values: vals };
}

function fromRows(rows: Int32Array, like: Tensor): Tensor {
  const t = empty([rows.length], { dtype: 'i32', device: like.device });
  t.backend.kernels.copy(t.backend.upload(rows), 0, t.buf, 0, rows.length);
  return t;
}

/** Global L2 norm of all gradients (dense, row-sparse and factored). */
export async function gradNorm(params: Tensor[]): Promise<number> {
  let sq = 0;
  for (const p of params) {
    const parts = p.grad ? [p.grad] : [];
    const factored = p.sparseGrads.length ? mergeFactored(p.sparseGrads) : null;
    if (factored) {
      // Rows are built one at a time from their terms and squared; none is kept.
      const f = factored.factors!;
      sq += factoredKernel(p, 'factoredSumSquares')(f.slot.buf, f.token.buf, f.coef.buf, f.basis.buf, f.slot.size,
        factored.indices.size, factored.width) as number;
    } else if (p.sparseGrads.length) parts.push(coalesce(p.sparseGrads, p.size / p.shape[0]).values);
    for (const g of parts) {
      const out = empty([1], { device: g.device });
      g.backend.kernels.sumSquares(g.buf, g.size, out.buf);
      sq += await out.item();
    }
  }
  return Math.sqrt(sq);
}

function factoredKernel(p: Tensor, name: string): (...args: any[]) => any {
  const fn = p.backend.extra[name];
  if (!fn) throw new Error(`factored row gradients of '${p.name}' are not supported on the ${p.device} backend`);
  return fn;
}

/**
 * One factored gradient equal to the sum of several factored parts (rows united, terms and bases
 * concatenated), or null when some part holds materialized rows. Parts from several backward
 * passes are merged on the cpu.
 */
export function mergeFactored(parts: RowSparse[]): RowSparse | null {
  if (parts.length === 0 || parts.some((q) => !q.factors)) return null;
  if (parts.length === 1) return parts[0];
  const device = parts[0].indices.device;
  if (device !== 'cpu') throw new Error('factored gradients from several backward passes are summed on the cpu only; use one backward per step');
  const width = parts[0].width;
  const order = new Map<number, number>();
  let terms = 0, basisRows = 0;
  for (const q of parts) {
    if (q.width !== width) throw new Error(`internal: factored gradients of widths ${width} and ${q.width} for one parameter`);
    const ix = q.indices.dataSync();
    for (let i = 0; i < ix.length; i++) if (!order.has(ix[i])) order.set(ix[i], order.size);
    terms += q.factors!.slot.size;
    basisRows += q.factors!.basis.size / width;
  }
  const slot = new Int32Array(terms), token = new Int32Array(terms), coef = new Float32Array(terms);
  const basis = new Float32Array(basisRows * width);
  let r0 = 0, b0 = 0;
  for (const q of parts) {
    const f = q.factors!, ix = q.indices.dataSync();
    const sl = f.slot.dataSync(), tk = f.token.dataSync(), cf = f.coef.dataSync(), bs = f.basis.dataSync();
    for (let r = 0; r < sl.length; r++) {
      slot[r0 + r] = order.get(ix[sl[r]])!;
      token[r0 + r] = tk[r] + b0;
      coef[r0 + r] = cf[r];
    }
    basis.set(bs, b0 * width);
    r0 += sl.length;
    b0 += bs.length / width;
  }
  return new RowSparse(fromArray(Int32Array.from(order.keys()), [order.size]), {
    slot: fromArray(slot, [terms]), token: fromArray(token, [terms]), coef: fromArray(coef, [terms]), basis: fromArray(basis, [basisRows, width]),
  });
}

/** The factor that scales gradients to a global norm of at most maxNorm (1 when already below). */
export function clipFactor(norm: number, maxNorm: number): number {
  return maxNorm > 0 && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
}
