// Fused RMSNorm and LayerNorm over the last axis (forward saves 1/std and mean for the backward).
import { record } from '../tensor/autograd.ts';
import { Tensor } from '../tensor/tensor.ts';
import { fmt, kernelsOf, likeOut, sameDevice } from './util.ts';

function normImpl(kind: 'rms' | 'layer', x: Tensor, weight: Tensor | null, bias: Tensor | null, eps: number): Tensor {
  const n = x.shape.at(-1)!;
  for (const [t, what] of [[weight, 'weight'], [bias, 'bias']] as const) {
    if (t && t.size !== n) throw new Error(`${kind}Norm: ${what} ${fmt(t.shape)} does not match the last axis ${n} of ${fmt(x.shape)}`);
    if (t) sameDevice(`${kind}Norm`, x, t);
  }
  const rows = x.size / n;
  const out = likeOut(x);
  const rstd = likeOut(x, [rows]);
  const mean = kind === 'layer' ? likeOut(x, [rows]) : null;
  kernelsOf(x).norm(kind, x.buf, weight?.buf ?? null, bias?.buf ?? null, rows, n, eps, out.buf, rstd.buf, mean?.buf ?? null);
  const inputs = [x, weight, bias].filter((t): t is Tensor => t !== null);
  return record(out, `${kind}Norm`, inputs, (g) => {
    const dx = likeOut(x);
    const dw = weight?.requiresGrad ? likeOut(weight) : null;
    const db = bias?.requiresGrad ? likeOut(bias) : null;
    kernelsOf(x).normBackward(kind, x.buf, weight?.buf ?? null, rstd.buf, mean?.buf ?? null, g.buf, rows, n, dx.buf,
      dw?.buf ?? null, db?.buf ?? null);
    const grads = [dx];
    if (weight) grads.push(dw as Tensor);
    if (bias) grads.push(db as Tensor);
    return grads;
  });
}

/** y = x / sqrt(mean(x^2) + eps) * weight. */
export const rmsNorm = (x: Tensor, weight: Tensor | null, eps = 1e-5) => normImpl('rms', x, weight, null, eps);
/** y = (x - mean) / sqrt(var + eps) * weight + bias (biased variance). */
export const layerNorm = (x: Tensor, weight: Tensor | null, bias: Tensor | null, eps = 1e-5) =>
  normImpl('layer', x, weight, bias, eps);
