// Fused TTT mini-batch scan (TTT-Linear / TTT-MLP inner loop) with a hand-written backward.
// The backward reverses the scan: the forward saves the inner weights at each mini-batch start, the
// backward recomputes one mini-batch at a time from them and backpropagates through the dual form,
// including through the closed-form inner gradient (second-order terms of the inner loss).
import type { TttDims } from '../backend/contracts.ts';
import { isGradEnabled, record } from '../tensor/autograd.ts';
import { Tensor, zeros } from '../tensor/tensor.ts';
import { fmt, like, sameDevice } from './util.ts';

export type TttKind = 'linear' | 'mlp';

export interface TttInner {
  /** [nh, f, h] */
  w1: Tensor;
  /** [nh, 1, h] (any shape with nh*h elements) */
  b1: Tensor;
  /** MLP only: [nh, h, f], [nh, 1, f] */
  w2?: Tensor;
  b2?: Tensor;
}

/** Decoding state of one TTT layer: weights at the current mini-batch start and the running sums. */
export class TttScanState {
  position = 0;
  readonly w1: Tensor; readonly b1: Tensor; readonly gw1: Tensor; readonly gb1: Tensor;
  readonly w2: Tensor | null; readonly b2: Tensor | null; readonly gw2: Tensor | null; readonly gb2: Tensor | null;
  constructor(kind: TttKind, batch: number, heads: number, dim: number, device: Tensor['device'] = 'cpu') {
    const h = kind === 'mlp' ? 4 * dim : dim;
    const z = (s: number[]) => zeros(s, { device });
    this.w1 = z([batch, heads, dim, h]); this.b1 = z([batch, heads, h]);
    this.gw1 = z([batch, heads, dim, h]); this.gb1 = z([batch, heads, h]);
    const mlp = kind === 'mlp';
    this.w2 = mlp ? z([batch, heads, h, dim]) : null; this.b2 = mlp ? z([batch, heads, dim]) : null;
    this.gw2 = mlp ? z([batch, heads, h, dim]) : null; this.gb2 = mlp ? z([batch, heads, dim]) : null;
  }
  /** Elements held, independent of how many tokens were consumed. */
  get size(): number {
    return [this.w1, this.b1, this.gw1, this.gb1, this.w2, this.b2, this.gw2, this.gb2].reduce((s, t) => s + (t?.size ?? 0), 0);
  }
}

export interface TttScanOpts {
  miniBatch?: number;
  /** Continue from (and update) a decoding state; no gradients flow through it. */
  state?: TttScanState;
}

/**
 * xq, xk, xv: [B, nh, L, f] (after projections, convs and RoPE); lr: [B, nh, L] per-token inner
 * learning rate (base_lr * sigmoid(.) / f); tokenEta: [K] per in-mini-batch position scale (clamped);
 * lnW, lnB: [nh, f]. Returns [B, L, nh * f] = XQ + LN(f_inner(XQ)) per head, before post_norm.
 */
export function tttScan(
  kind: TttKind, xq: Tensor, xk: Tensor, xv: Tensor, lr: Tensor, tokenEta: Tensor, inner: TttInner,
  lnW: Tensor, lnB: Tensor, opts: TttScanOpts = {},
): Tensor {
  if (xq.ndim !== 4) throw new Error(`tttScan: XQ must be [B, heads, L, headDim], got ${fmt(xq.shape)}`);
  const [batch, heads, length, dim] = xq.shape;
  const miniBatch = opts.miniBatch ?? tokenEta.size;
  const mlp = kind === 'mlp';
  const hidden = mlp ? 4 * dim : dim;
  const want = (t: Tensor | undefined, n: number, what: string, shape: string) => {
    if (!t) throw new Error(`tttScan: ${kind} needs ${what}`);
    if (t.size !== n) throw new Error(`tttScan: ${what} ${fmt(t.shape)} must be ${shape}`);
    if (t.dtype !== 'f32') throw new Error(`tttScan: ${what} must be f32`);
  };
  for (const [t, w] of [[xk, 'XK'], [xv, 'XV']] as const) {
    if (t.shape.join() !== xq.shape.join()) throw new Error(`tttScan: ${w} ${fmt(t.shape)} must match XQ ${fmt(xq.shape)}`);
  }
  want(lr, batch * heads * length, 'lr', `[${batch}, ${heads}, ${length}]`);
  if (tokenEta.size !== miniBatch) throw new Error(`tttScan: tokenEta ${fmt(tokenEta.shape)} must have miniBatch = ${miniBatch} elements`);
  want(inner.w1, heads * dim * hidden, 'W1', `[${heads}, ${dim}, ${hidden}]`);
  want(inner.b1, heads * hidden, 'b1', `[${heads}, 1, ${hidden}]`);
  if (mlp) {
    want(inner.w2, heads * hidden * dim, 'W2', `[${heads}, ${hidden}, ${dim}]`);
    want(inner.b2, heads * dim, 'b2', `[${heads}, 1, ${dim}]`);
  }
  want(lnW, heads * dim, 'ttt_norm_weight', `[${heads}, ${dim}]`);
  want(lnB, heads * dim, 'ttt_norm_bias', `[${heads}, ${dim}]`);
  const all = [xq, xk, xv, lr, tokenEta, inner.w1, inner.b1, ...(mlp ? [inner.w2!, inner.b2!] : []), lnW, lnB];
  sameDevice('tttScan', ...all);

  const dims: TttDims = { mlp, batch, heads, length, dim, hidden, miniBatch };
  const bufs = {
    xq: xq.buf, xk: xk.buf, xv: xv.buf, lr: lr.buf, tokenEta: tokenEta.buf, w1: inner.w1.buf, b1: inner.b1.buf,
    w2: inner.w2?.buf ?? null, b2: inner.b2?.buf ?? null, lnW: lnW.buf, lnB: lnB.buf,
  };
  const out = like(xq, [batch, length, heads * dim]);
  const state = opts.state;
  if (state) {
    if (isGradEnabled() && all.some((t) => t.requiresGrad)) {
      throw new Error('tttScan: gradients do not flow through a decoding state; run decoding under noGrad()');
    }
    if (state.w1.device !== xq.device) {
      throw new Error(`tttScan: a buffer (the decoding state) is not on the ${xq.device} device; create the state with device '${xq.device}' (model.createState does)`);
    }
    if (state.w1.shape[0] !== batch || state.w1.shape[1] !== heads || state.w1.shape[2] !== dim || (state.w2 === null) === mlp) {
      throw new Error(`tttScan: decoding state was made for another shape or kind (state W1 ${fmt(state.w1.shape)})`);
    }
    const sb = {
      w1: state.w1.buf, b1: state.b1.buf, w2: state.w2?.buf ?? null, b2: state.b2?.buf ?? null,
      gw1: state.gw1.buf, gb1: state.gb1.buf, gw2: state.gw2?.buf ?? null, gb2: state.gb2?.buf ?? null,
    };
    xq.backend.ttt.forward(dims, bufs, out.buf, state.position, sb, null);
    state.position += length;
    return out;
  }
  const nSeg = Math.ceil(length / miniBatch);
  const needGrad = isGradEnabled() && all.some((t) => t.requiresGrad);
  const perHead = batch * heads * nSeg;
  const saved = needGrad
    ? {
      w1: like(xq, [perHead * dim * hidden]), b1: like(xq, [perHead * hidden]),
      w2: mlp ? like(xq, [perHead * hidden * dim]) : null, b2: mlp ? like(xq, [perHead * dim]) : null,
    }
    : null;
  const savedBufs = saved && { w1: saved.w1.buf, b1: saved.b1.buf, w2: saved.w2?.buf ?? null, b2: saved.b2?.buf ?? null };
  xq.backend.ttt.forward(dims, bufs, out.buf, 0, null, savedBufs);
  return record(out, `ttt${mlp ? 'Mlp' : 'Linear'}Scan`, all, (g) => {
    const grads = all.map((t) => like(t));
    const [dxq, dxk, dxv, dlr, dTe, dw1, db1] = grads;
    const [dw2, db2] = mlp ? grads.slice(7, 9) : [null, null];
    const [dlnW, dlnB] = grads.slice(-2);
    xq.backend.ttt.backward(dims, bufs, savedBufs!, g.buf, {
      dxq: dxq.buf, dxk: dxk.buf, dxv: dxv.buf, dlr: dlr.buf, dTokenEta: dTe.buf, dw1: dw1.buf, db1: db1.buf,
      dw2: dw2?.buf ?? null, db2: db2?.buf ?? null, dlnW: dlnW.buf, dlnB: dlnB.buf,
    });
    return grads;
  });
}
