// Batched matrix multiply with optional transposed operands and broadcast batch dims.
import { record } from '../tensor/autograd.ts';
import { Tensor } from '../tensor/tensor.ts';
import { broadcastShapes, expand, sumTo } from './shape.ts';
import { expectDtype, fmt, kernelsOf, like, likeOut, sameDevice } from './util.ts';

export interface MatmulOpts {
  transA?: boolean;
  transB?: boolean;
}

/** op(a) @ op(b) for a [..., M, K] (or [..., K, M] with transA) and b [..., K, N] (or [..., N, K]). */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOpts = {}): Tensor {
  const { transA = false, transB = false } = opts;
  sameDevice('matmul', a, b);
  expectDtype('matmul', a, 'f32', 'a');
  expectDtype('matmul', b, 'f32', 'b');
  if (a.ndim < 2 || b.ndim < 2) throw new Error(`matmul: needs at least 2-D operands, got ${fmt(a.shape)} and ${fmt(b.shape)}`);
  const [ar, ac] = a.shape.slice(-2), [br, bc] = b.shape.slice(-2);
  const m = transA ? ac : ar, k = transA ? ar : ac;
  const kb = transB ? bc : br, n = transB ? br : bc;
  if (k !== kb) {
    throw new Error(`matmul: inner dimensions differ: ${fmt(a.shape)}${transA ? 'ᵀ' : ''} @ ${fmt(b.shape)}${transB ? 'ᵀ' : ''} (${k} vs ${kb})`);
  }
  const batchA = a.shape.slice(0, -2), batchB = b.shape.slice(0, -2);
  const batchShape = broadcastShapes('matmul', batchA, batchB);
  const batch = batchShape.reduce((p, s) => p * s, 1);
  // Each operand is either full-batch or a single matrix shared by all (stride 0); other broadcasts expand.
  const prep = (t: Tensor, bs: number[]) => {
    const tb = bs.reduce((p, s) => p * s, 1);
    if (tb === batch || tb === 1) return { t, stride: tb === 1 ? 0 : t.shape.at(-1)! * t.shape.at(-2)! };
    const e = expand(t, [...batchShape, ...t.shape.slice(-2)]);
    return { t: e, stride: t.shape.at(-1)! * t.shape.at(-2)! };
  };
  const pa = prep(a, batchA), pb = prep(b, batchB);
  const out = likeOut(a, [...batchShape, m, n]);
  kernelsOf(a).matmul(pa.t.buf, pb.t.buf, out.buf, {
    batch, m, n, k, transA, transB, strideA: pa.stride, strideB: pb.stride, strideC: m * n, alpha: 1, beta: 0,
  });
  return record(out, 'matmul', [a, b], (g) => {
    // C = A B: dA = g B^T, dB = A^T g (with transposes folded into the GEMM flags).
    let ga: Tensor | null = null, gb: Tensor | null = null;
    if (a.requiresGrad) ga = transA ? matmul(b, g, { transA: transB, transB: true }) : matmul(g, b, { transB: !transB });
    if (b.requiresGrad) gb = transB ? matmul(g, a, { transA: true, transB: transA }) : matmul(a, g, { transA: !transA });
    return [ga && sumTo(ga, a.shape), gb && sumTo(gb, b.shape)];
  });
}
