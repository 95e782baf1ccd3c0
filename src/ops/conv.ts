// Causal depthwise 1-D convolution over the sequence axis (TTT Mamba backbone, kernel 4).
import { record } from '../tensor/autograd.ts';
import { Tensor } from '../tensor/tensor.ts';
import { fmt, kernelsOf, like } from './util.ts';

/** x [B, L, C], weight [C, K], bias [C] | null: y[t] = bias + sum_j w[j] x[t - K + 1 + j]. */
export function causalConv1d(x: Tensor, weight: Tensor, bias: Tensor | null): Tensor {
  if (x.ndim !== 3) throw new Error(`causalConv1d: x must be [B, L, C], got ${fmt(x.shape)}`);
  const [b, l, c] = x.shape;
  if (weight.ndim !== 2 || weight.shape[0] !== c) throw new Error(`causalConv1d: weight ${fmt(weight.shape)} must be [${c}, K]`);
  if (bias && bias.size !== c) throw new Error(`causalConv1d: bias ${fmt(bias.shape)} must have ${c} elements`);
  const k = weight.shape[1];
  const out = like(x);
  kernelsOf(x).conv1d(x.buf, weight.buf, bias?.buf ?? null, b, l, c, k, out.buf);
  const inputs = bias ? [x, weight, bias] : [x, weight];
  return record(out, 'causalConv1d', inputs, (g) => {
    const dx = like(x), dw = like(weight), db = bias ? like(bias) : null;
    kernelsOf(x).conv1dBackward(x.buf, weight.buf, g.buf, b, l, c, k, dx.buf, dw.buf, db?.buf ?? null);
    return db ? [dx, dw, db] : [dx, dw];
  });
}
