// Top-k over the last axis; the gradient of the values flows back to the selected positions.
import { record } from '../tensor/autograd.ts';
import { Tensor, zeros } from '../tensor/tensor.ts';
import { fmt, kernelsOf, like } from './util.ts';

export function topk(x: Tensor, k: number): { values: Tensor; indices: Tensor } {
  const n = x.shape.at(-1)!;
  if (!Number.isInteger(k) || k < 1 || k > n) throw new Error(`topk: k=${k} must be in [1, ${n}] for ${fmt(x.shape)}`);
  const rows = x.size / n;
  const shape = [...x.shape.slice(0, -1), k];
  const values = like(x, shape);
  const indices = like(x, shape, 'i32');
  kernelsOf(x).topk(x.buf, rows, n, k, values.buf, indices.buf);
  record(values, 'topk', [x], (g) => {
    // Scatter g into a zero tensor at row*n + index.
    const gx = zeros(x.shape, { device: x.device });
    const idx = indices.dataSync();
    const flat = new Int32Array(idx.length);
    for (let i = 0; i < idx.length; i++) flat[i] = Math.floor(i / k) * n + idx[i];
    kernelsOf(x).scatterAdd(g.buf, x.backend.upload(flat), flat.length, 1, gx.buf);
    return [gx];
  });
  return { values, indices };
}
