// Top-k over the last axis; the gradient of the values flows back to the selected positions.
import { record } from '../tensor/autograd.ts';
import { fromArray, Tensor, zeros } from '../tensor/tensor.ts';
import { contiguousView, fmt, kernelsOf, like } from './util.ts';

export function topk(x: Tensor, k: number): { values: Tensor; indices: Tensor } {
  const n = x.shape.at(-1)!;
  if (!Number.isInteger(k) || k < 1 || k > n) throw new Error(`topk: k=${k} must be in [1, ${n}] for ${fmt(x.shape)}`);
  const rows = x.size / n;
  const shape = [...x.shape.slice(0, -1), k];
  const values = like(x, shape);
  const indices = like(x, shape, 'i32');
  kernelsOf(x).topk(x.buf, rows, n, k, values.buf, indices.buf);
  record(values, 'topk', [x], (g) => {
    // Scatter g into a zero tensor at row*n + index; the flat positions are formed on the backend
    // (indices + per-row start), so no host readback is needed.
    const gx = zeros(x.shape, { device: x.device });
    const rowStart = fromArray(Int32Array.from({ length: rows }, (_, r) => r * n), [rows], x.device);
    const flat = like(indices, [rows, k], 'i32');
    kernelsOf(x).binary('add', indices.buf, contiguousView([rows, k]), rowStart.buf,
      { shape: [rows, k], strides: [1, 0], offset: 0 }, flat.buf);
    kernelsOf(x).scatterAdd(g.buf, flat.buf, rows * k, 1, gx.buf);
    return [gx];
  });
  return { values, indices };
}
