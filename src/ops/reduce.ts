// Reductions over one or more axes, plus argmax. Output drops reduced axes unless keepdim.
import { record } from '../tensor/autograd.ts';
import { Tensor } from '../tensor/tensor.ts';
import { affine, equal, mul, div } from './elementwise.ts';
import { expand, reshape, sumTo } from './shape.ts';
import { axisOf, kernelsOf, like, likeOut, splitAt } from './util.ts';

function normAxes(op: string, x: Tensor, axes?: number | number[]): number[] {
  if (axes === undefined) return [...Array(x.ndim).keys()];
  const list = (Array.isArray(axes) ? axes : [axes]).map((a) => axisOf(op, a, x.ndim));
  return [...new Set(list)].sort((a, b) => a - b);
}

function keptShape(x: Tensor, axes: number[]): number[] {
  return x.shape.map((s, i) => (axes.includes(i) ? 1 : s));
}

function reduceRaw(op: 'sum' | 'max' | 'min', x: Tensor, axes: number[]): Tensor {
  let cur = x;
  // Reduce the highest axis first so earlier axis indices stay valid.
  for (const ax of [...axes].reverse()) {
    const [outer, n, inner] = splitAt(cur.shape, ax);
    const shape = [...cur.shape];
    shape[ax] = 1;
    const out = likeOut(cur, shape);
    kernelsOf(cur).reduce(op, cur.buf, outer, n, inner, out.buf);
    cur = out;
  }
  return cur === x ? like(x, x.shape) : cur;
}

function finish(x: Tensor, kept: Tensor, axes: number[], keepdim: boolean): Tensor {
  return keepdim ? kept : new Tensor(kept.buf, x.shape.filter((_, i) => !axes.includes(i)), kept.dtype, kept.device);
}

export function sum(x: Tensor, axes?: number | number[], keepdim = false): Tensor {
  const ax = normAxes('sum', x, axes);
  const out = finish(x, reduceRaw('sum', x, ax), ax, keepdim);
  return record(out, 'sum', [x], (g) => [expand(reshape(g, keptShape(x, ax)), x.shape)]);
}

export function mean(x: Tensor, axes?: number | number[], keepdim = false): Tensor {
  const ax = normAxes('mean', x, axes);
  const count = ax.reduce((p, a) => p * x.shape[a], 1);
  return affine(sum(x, ax, keepdim), 1 / count);
}

function extremum(op: 'max' | 'min', x: Tensor, axes?: number | number[], keepdim = false): Tensor {
  const ax = normAxes(op, x, axes);
  const kept = reduceRaw(op, x, ax);
  const out = finish(x, kept, ax, keepdim);
  return record(out, op, [x], (g) => {
    // Gradient flows to every position equal to the extremum, split evenly among ties.
    const mask = equal(x, expand(kept, x.shape));
    const counts = sumTo(mask, keptShape(x, ax));
    return [mul(mask, expand(div(reshape(g, keptShape(x, ax)), counts), x.shape))];
  });
}
export const max = (x: Tensor, axes?: number | number[], keepdim = false) => extremum('max', x, axes, keepdim);
export const min = (x: Tensor, axes?: number | number[], keepdim = false) => extremum('min', x, axes, keepdim);

/** Index of the maximum along one axis (i32, first on ties). */
export function argmax(x: Tensor, axis = -1, keepdim = false): Tensor {
  const ax = axisOf('argmax', axis, x.ndim);
  const [outer, n, inner] = splitAt(x.shape, ax);
  const shape = keepdim ? keptShape(x, [ax]) : x.shape.filter((_, i) => i !== ax);
  const out = like(x, shape, 'i32');
  kernelsOf(x).argmax(x.buf, outer, n, inner, out.buf);
  return out;
}
