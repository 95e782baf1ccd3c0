// Softmax and log-softmax over the last axis.
import { record } from '../tensor/autograd.ts';
import { Tensor } from '../tensor/tensor.ts';
import { expectDtype, kernelsOf, like } from './util.ts';

function softmaxImpl(x: Tensor, log: boolean): Tensor {
  expectDtype(log ? 'logSoftmax' : 'softmax', x, 'f32');
  const n = x.shape.at(-1) ?? 1;
  const rows = x.size / n;
  const out = like(x);
  kernelsOf(x).softmax(x.buf, rows, n, out.buf, log);
  return record(out, log ? 'logSoftmax' : 'softmax', [x], (g) => {
    const dx = like(x);
    kernelsOf(x).softmaxBackward(out.buf, g.buf, rows, n, dx.buf, log);
    return [dx];
  });
}

export const softmax = (x: Tensor) => softmaxImpl(x, false);
export const logSoftmax = (x: Tensor) => softmaxImpl(x, true);
