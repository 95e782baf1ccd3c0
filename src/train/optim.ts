// AdamW (PyTorch semantics) with a lazy row-sparse path for parameters whose gradients are
// row-sparse (PEER expert tables): only touched rows' weights and moments are read or written.
import { noGrad } from '../tensor/autograd.ts';
import { RowSparse, Tensor, empty, fromArray } from '../tensor/tensor.ts';

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
      // Backends allocate zeroed memory (on the CPU, zero pages until touched, so a row-sparse
      // table's moments stay mostly unresident).
      const zero = () => empty(p.shape, { device: p.device });
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
        const k = p.backend.optim;
        const width = p.shape.length > 1 ? p.size / p.shape[0] : 1;
        if (p.grad) k.adamw(p.buf, p.grad.buf, s.m.buf, s.v.buf, null, 0, width, h);
        const factored = p.sparseGrads.length ? mergeFactored(p.sparseGrads) : null;
        if (factored) {
          // Each touched row's gradient is built from its rank-1 terms inside the update kernel.
          k.factoredAdamw(factored.factoredBufs()!, factored.indices.buf, p.buf, s.m.buf, s.v.buf, h);
        } else if (p.sparseGrads.length) {
          const { rows, values } = coalesce(p.sparseGrads, width);
          k.adamw(p.buf, values.buf, s.m.buf, s.v.buf, rows.buf, rows.size, width, h);
        }
      }
    });
  }

  /**
   * One update with global-norm clipping computed where the gradients are: each gradient's sum of
   * squares goes into one device buffer, the clip factor is computed from it on the device and the
   * AdamW kernels read it from there, so the whole update encodes without a readback (a captured
   * step can hold it). Same result as `update(clipFactor(gradNorm(...) * gradScale, maxNorm) * gradScale)`
   * up to float32 rounding of the norm. Returns f32 [2] on the parameters' device: the factor applied
   * to the gradients (clip factor times gradScale) and the global norm times gradScale, to read after
   * the step (the caller disposes it).
   */
  updateClipped(maxNorm: number, gradScale = 1): Tensor {
    if (!(maxNorm >= 0)) throw new Error(`updateClipped: maxNorm must be >= 0 (0 = no clipping), got ${maxNorm}`);
    this.step++;
    return noGrad(() => {
      const items: { name: string; p: Tensor; width: number; rows?: Tensor; values?: Tensor; own?: boolean; factored?: RowSparse }[] = [];
      let count = 0;
      for (const [name, p] of this.params) {
        if (!p.grad && p.sparseGrads.length === 0) continue;
        const width = p.shape.length > 1 ? p.size / p.shape[0] : 1;
        const item: (typeof items)[number] = { name, p, width };
        if (p.grad) count++;
        if (p.sparseGrads.length) {
          const factored = mergeFactored(p.sparseGrads);
          if (factored) item.factored = factored;
          else {
            const c = coalesce(p.sparseGrads, width);
            Object.assign(item, c, { own: c.values !== p.sparseGrads[0].values });
          }
          count++;
        }
        items.push(item);
      }
      const first = this.params[0]?.[1];
      if (!first) return empty([2]);
      const device = first.device, k = first.backend.optim;
      for (const it of items) {
        if (it.p.device !== device) throw new Error(`updateClipped: parameter '${it.name}' is on ${it.p.device}, '${this.params[0][0]}' on ${device}`);
      }
      const sumSq = empty([Math.max(count, 1)], { device });
      let at = 0;
      for (const it of items) {
        if (it.p.grad) k.sumSquares(it.p.grad.buf, it.p.grad.size, sumSq.buf, at++);
        if (it.values) k.sumSquares(it.values.buf, it.values.size, sumSq.buf, at++);
        if (it.factored) {
          // Factored gradients come from backends that read synchronously; the sum is a host number.
          const sq = fromArray(Float32Array.of(k.factoredSumSquares(it.factored.factoredBufs()!)), [1], device);
          first.backend.kernels.copy(sq.buf, 0, sumSq.buf, at++, 1);
          sq.dispose();
        }
      }
      const clip = empty([2], { device });
      k.clipScale(sumSq.buf, count, maxNorm, gradScale, clip.buf);
      sumSq.dispose();
      for (const it of items) {
        const s = this.slot(it.p);
        const h = {
          lr: this.lr, beta1: this.beta1, beta2: this.beta2, eps: this.eps, step: this.step, gradScale: 1,
          weightDecay: this.noDecay(it.name, it.p) ? 0 : this.weightDecay,
        };
        if (it.p.grad) k.adamw(it.p.buf, it.p.grad.buf, s.m.buf, s.v.buf, null, 0, it.width, h, clip.buf);
        if (it.values) k.adamw(it.p.buf, it.values.buf, s.m.buf, s.v.buf, it.rows!.buf, it.rows!.size, it.width, h, clip.buf);
        if (it.factored) {
          const f = { ...h, gradScale: clip.dataSync()[0] };
          k.factoredAdamw(it.factored.factoredBufs()!, it.factored.indices.buf, it.p.buf, s.m.buf, s.v.buf, f);
        }
        if (it.own) { it.rows!.dispose(); it.values!.dispose(); }
      }
      return clip;
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

/**
 * One row-sparse gradient equal to the sum of the parts, in the coalesced form (each row's total at
 * its first entry). Parts are concatenated on their device and summed there by the backend.
 */
export function coalesce(parts: RowSparse[], width: number): { rows: Tensor; values: Tensor } {
  if (parts.length === 1 && parts[0].coalesced) return { rows: parts[0].indices, values: parts[0].values };
  const device = parts[0].indices.device, backend = parts[0].indices.backend;
  // One part (an embedding's lookups) is coalesced from its own buffers; several are concatenated first.
  let rows = parts[0].indices, vals = parts[0].values;
  if (parts.length > 1) {
    const n = parts.reduce((c, q) => c + q.indices.size, 0);
    rows = empty([n], { dtype: 'i32', device });
    vals = empty([n, width], { device });
    let at = 0;
    for (const q of parts) {
      const m = q.indices.size;
      backend.kernels.copy(q.indices.buf, 0, rows.buf, at, m);
      backend.kernels.copy(q.values.buf, 0, vals.buf, at * width, m * width);
      at += m;
    }
  }
  const c = backend.optim.coalesceRows(rows.buf, vals.buf, rows.size, width);
  if (parts.length > 1) {
    rows.dispose();
    vals.dispose();
  }
  return { rows: new Tensor(c.rows, [c.count], 'i32', device), values: new Tensor(c.values, [c.count, width], 'f32', device) };
}

/** Global L2 norm of all gradients (dense, row-sparse and factored). */
export async function gradNorm(params: Tensor[]): Promise<number> {
  let sq = 0;
  for (const p of params) {
    const parts = p.grad ? [p.grad] : [];
    const factored = p.sparseGrads.length ? mergeFactored(p.sparseGrads) : null;
    if (factored) {
      // Rows are built one at a time from their terms and squared; none is kept.
      sq += p.backend.optim.factoredSumSquares(factored.factoredBufs()!);
    } else if (p.sparseGrads.length) parts.push(coalesce(p.sparseGrads, p.size / p.shape[0]).values);
    for (const g of parts) {
      const out = empty([1], { device: g.device });
      g.backend.optim.sumSquares(g.buf, g.size, out.buf);
      sq += await out.item();
    }
  }
  return Math.sqrt(sq);
}

/**
 * One factored gradient equal to the sum of several factored parts (rows united, terms and bases
 * concatenated), or null when some part holds materialized rows. The row lists are united on the
 * host (factored gradients come from backends that read synchronously).
 */
export function mergeFactored(parts: RowSparse[]): RowSparse | null {
  if (parts.length === 0 || parts.some((q) => !q.factors)) return null;
  if (parts.length === 1) return parts[0];
  const device = parts[0].indices.device;
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
  return new RowSparse(fromArray(Int32Array.from(order.keys()), [order.size], device), {
    slot: fromArray(slot, [terms], device), token: fromArray(token, [terms], device), coef: fromArray(coef, [terms], device),
    basis: fromArray(basis, [basisRows, width], device),
  });
}

/** The factor that scales gradients to a global norm of at most maxNorm (1 when already below). */
export function clipFactor(norm: number, maxNorm: number): number {
  return maxNorm > 0 && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
}
