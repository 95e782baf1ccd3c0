// The CPU's optimizer table (src/backend/contracts.ts OptimKernels): AdamW dense on the native addon
// and row-sparse in place, gradient sums of squares, coalescing of row-sparse gradients on the host,
// and the factored-gradient updates of native/peer.cc.
import type { AdamWHyper, FactoredRows, OptimKernels } from '../contracts.ts';
import type { Buf, TypedArray } from '../types.ts';
import { nativeElementwise } from './elementwise.ts';
import { factoredAdamw, factoredSumSquares } from './peer.ts';

type A = TypedArray;
const f32 = (b: Buf) => b as unknown as Float32Array;
const i32 = (b: Buf) => b as unknown as Int32Array;

export const cpuOptim: OptimKernels = {
  adamw(param, grad, m, v, rows, nRows, width, h: AdamWHyper, scale = null) {
    const w = param as unknown as A, g = grad as unknown as A, ms = m as unknown as A, vs = v as unknown as A;
    const ix = rows as unknown as A | null;
    const bc1 = 1 - Math.pow(h.beta1, h.step), bc2 = 1 - Math.pow(h.beta2, h.step);
    // The device scale is rounded to f32 like the WebGPU kernel's product of two f32 factors.
    const s = scale ? Math.fround(Math.fround(h.gradScale) * f32(scale)[0]) : h.gradScale;
    const stepSize = h.lr / bc1, decay = 1 - h.lr * h.weightDecay, b1 = h.beta1, b2 = h.beta2;
    const update = (pi: number, gi: number) => {
      const gg = g[gi] * s;
      ms[pi] = b1 * ms[pi] + (1 - b1) * gg;
      vs[pi] = b2 * vs[pi] + (1 - b2) * gg * gg;
      w[pi] = w[pi] * decay - stepSize * ms[pi] / (Math.sqrt(vs[pi] / bc2) + h.eps);
    };
    if (!ix) {
      nativeElementwise().adamw(w as Float32Array, g as Float32Array, ms as Float32Array, vs as Float32Array, w.length,
        h.lr, b1, b2, h.eps, h.weightDecay, h.step, s);
      return;
    }
    for (let r = 0; r < nRows; r++) {
      if (r > 0 && ix[r] === ix[r - 1]) continue;
      const base = ix[r] * width;
      for (let j = 0; j < width; j++) update(base + j, r * width + j);
    }
  },

  sumSquares(a, n, out, at = 0) {
    (out as unknown as A)[at] = nativeElementwise().sumSquares(a as unknown as Float32Array, n);
  },

  clipScale(sumSq, count, maxNorm, scale, out) {
    const ss = f32(sumSq);
    let sq = 0;
    for (let i = 0; i < count; i++) sq += ss[i];
    const norm = Math.sqrt(sq) * scale;
    const o = f32(out);
    o[0] = scale * (maxNorm > 0 && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1);
    o[1] = norm;
  },

  coalesceRows(rows, values, n, width) {
    const ix = i32(rows), src = f32(values);
    const order = new Map<number, number>();
    for (let i = 0; i < n; i++) if (!order.has(ix[i])) order.set(ix[i], order.size);
    const out = new Float32Array(order.size * width);
    for (let i = 0; i < n; i++) {
      const base = order.get(ix[i])! * width;
      for (let j = 0; j < width; j++) out[base + j] += src[i * width + j];
    }
    return { rows: Int32Array.from(order.keys()), values: out, count: order.size };
  },

  factoredSumSquares(f: FactoredRows) {
    return factoredSumSquares(i32(f.slot), i32(f.token), f32(f.coef), f32(f.basis), f.terms, f.rows, f.width);
  },

  factoredAdamw(f, target, param, m, v, h) {
    const N = f32(param).length / f.width;
    factoredAdamw(i32(f.slot), i32(f.token), f32(f.coef), f32(f.basis), f.terms, f.rows, f.width, i32(target), N,
      f32(param), f32(m), f32(v), h.lr, h.beta1, h.beta2, h.eps, h.weightDecay, h.step, h.gradScale);
  },
};
