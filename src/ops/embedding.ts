// Embedding lookup with a row-sparse gradient (only the looked-up rows are touched).
import { record } from '../tensor/autograd.ts';
import { RowSparse, Tensor } from '../tensor/tensor.ts';
import { checkIndices, expectDtype, fmt, kernelsOf, likeOut, sameDevice } from './util.ts';

/** table [V, D], ids i32 [...] -> [..., D]. */
export function embedding(table: Tensor, ids: Tensor): Tensor {
  expectDtype('embedding', ids, 'i32', 'token ids');
  sameDevice('embedding', table, ids);
  if (table.ndim !== 2) throw new Error(`embedding: table must be [V, D], got ${fmt(table.shape)}`);
  const [v, d] = table.shape;
  checkIndices(ids, 0, v, null, (id) => `embedding: token id ${id} out of range for a vocabulary of ${v}`);
  const out = likeOut(table, [...ids.shape, d]);
  kernelsOf(table).gather(table.buf, ids.buf, ids.size, d, out.buf);
  return record(out, 'embedding', [table], (g) => {
    const flatIds = new Tensor(ids.buf, [ids.size], 'i32', ids.device);
    return [new RowSparse(flatIds, new Tensor(g.buf, [ids.size, d], g.dtype, g.device))];
  });
}
