// Fused multi-head attention (online softmax, O(L) memory): forward and backward are single kernels.
import { record } from '../tensor/autograd.ts';
import { Tensor } from '../tensor/tensor.ts';
import { expectDtype, fmt, like, likeOut, sameDevice } from './util.ts';

export interface AttentionOpts {
  causal?: boolean;
  /** Defaults to 1/sqrt(D). */
  scale?: number;
}

/**
 * q [B, L, H, D], k and v [B, S, Hkv, D] (H a multiple of Hkv: grouped KV heads) -> [B, L, H, D].
 * With causal and S > L, the queries are the last L positions of the S keys (decoding with a cache).
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOpts = {}): Tensor {
  sameDevice('attention', q, k, v);
  for (const [t, n] of [[q, 'q'], [k, 'k'], [v, 'v']] as const) {
    expectDtype('attention', t, 'f32', n);
    if (t.ndim !== 4) throw new Error(`attention: ${n} must be [B, L, H, D], got ${fmt(t.shape)}`);
  }
  const [b, l, h, d] = q.shape;
  const [bk, s, hkv, dk] = k.shape;
  if (bk !== b || dk !== d || v.shape.some((x, i) => x !== k.shape[i]) || h % hkv !== 0 || (opts.causal !== false && s < l)) {
    throw new Error(`attention: incompatible shapes q ${fmt(q.shape)}, k ${fmt(k.shape)}, v ${fmt(v.shape)}`);
  }
  const p = { b, l, s, h, hkv, d, scale: opts.scale ?? 1 / Math.sqrt(d), causal: opts.causal ?? true };
  // The forward kernels write every row of o and lse.
  const o = likeOut(q);
  const lse = likeOut(q, [b, h, l]);
  q.backend.attention.forward(q.buf, k.buf, v.buf, o.buf, lse.buf, p);
  return record(o, 'attention', [q, k, v], (g) => {
    const dq = like(q), dk2 = like(k), dv = like(v);
    q.backend.attention.backward(q.buf, k.buf, v.buf, o.buf, g.buf, lse.buf, dq.buf, dk2.buf, dv.buf, p);
    return [dq, dk2, dv];
  });
}
