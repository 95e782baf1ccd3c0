// Rotary position embedding on [B, L, H, D]; the backward is the inverse rotation.
import { record } from '../tensor/autograd.ts';
import { Tensor } from '../tensor/tensor.ts';
import { expectDtype, fmt, kernelsOf, likeOut } from './util.ts';

export interface RopeOpts {
  theta?: number;
  /** 'half' rotates (i, i + D/2) like HF rotate_half; 'interleaved' rotates pairs (2i, 2i+1). */
  style?: 'half' | 'interleaved';
}

/** positions: i32 [L]. */
export function rope(x: Tensor, positions: Tensor, opts: RopeOpts = {}): Tensor {
  const theta = opts.theta ?? 10000;
  const interleaved = opts.style === 'interleaved';
  if (x.ndim !== 4) throw new Error(`rope: expects [B, L, H, D], got ${fmt(x.shape)}`);
  const [b, l, h, d] = x.shape;
  if (d % 2) throw new Error(`rope: head dim ${d} must be even`);
  expectDtype('rope', positions, 'i32', 'positions');
  if (positions.size !== l) throw new Error(`rope: ${positions.size} positions for sequence length ${l}`);
  const run = (src: Tensor, sign: number) => {
    const out = likeOut(src);
    kernelsOf(src).rope(src.buf, positions.buf, b, l, h, d, theta, interleaved, sign, out.buf);
    return out;
  };
  const out = run(x, 1);
  return record(out, 'rope', [x], (g) => [run(g, -1)]);
}
