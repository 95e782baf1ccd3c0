// The plain reference of fused attention (src/backend/contracts.ts AttentionKernels): the softmax is
// materialized, in float64. The native (native/attention.cc) and WebGPU kernels are held against it.
import type { AttentionDims, AttentionKernels } from '../contracts.ts';

type Arr = ArrayLike<number>;

const qi = (p: AttentionDims, b: number, i: number, h: number) => ((b * p.l + i) * p.h + h) * p.d;
const ki = (p: AttentionDims, b: number, j: number, g: number) => ((b * p.s + j) * p.hkv + g) * p.d;
const sees = (p: AttentionDims, i: number, j: number) => !p.causal || j <= i + p.s - p.l;

/** o [b, l, h, d], lse [b, h, l] and the probabilities P [b, h, l, s], all float64. */
export function attentionReferenceForward(p: AttentionDims, q: Arr, k: Arr, v: Arr): { o: Float64Array; lse: Float64Array; P: Float64Array } {
  const o = new Float64Array(p.b * p.l * p.h * p.d), lse = new Float64Array(p.b * p.h * p.l);
  const P = new Float64Array(p.b * p.h * p.l * p.s);
  const G = p.h / p.hkv;
  const sc = new Float64Array(p.s);
  for (let b = 0; b < p.b; b++) for (let h = 0; h < p.h; h++) for (let i = 0; i < p.l; i++) {
    const g = Math.floor(h / G), row = ((b * p.h + h) * p.l + i) * p.s;
    let mx = -Infinity;
    for (let j = 0; j < p.s; j++) {
      if (!sees(p, i, j)) continue;
      let d = 0;
      for (let x = 0; x < p.d; x++) d += q[qi(p, b, i, h) + x] * k[ki(p, b, j, g) + x];
      sc[j] = d * p.scale;
      mx = Math.max(mx, sc[j]);
    }
    let sum = 0;
    for (let j = 0; j < p.s; j++) if (sees(p, i, j)) sum += Math.exp(sc[j] - mx);
    lse[(b * p.h + h) * p.l + i] = mx + Math.log(sum);
    for (let j = 0; j < p.s; j++) {
      const pr = sees(p, i, j) ? Math.exp(sc[j] - mx) / sum : 0;
      P[row + j] = pr;
      for (let x = 0; x < p.d; x++) o[qi(p, b, i, h) + x] += pr * v[ki(p, b, j, g) + x];
    }
  }
  return { o, lse, P };
}

/** dq, dk, dv (float64) of sum(o * dO). */
export function attentionReferenceBackward(p: AttentionDims, q: Arr, k: Arr, v: Arr, dO: Arr): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const { P } = attentionReferenceForward(p, q, k, v);
  const dq = new Float64Array(q.length), dk = new Float64Array(k.length), dv = new Float64Array(v.length);
  const G = p.h / p.hkv;
  const dP = new Float64Array(p.s);
  for (let b = 0; b < p.b; b++) for (let h = 0; h < p.h; h++) for (let i = 0; i < p.l; i++) {
    const g = Math.floor(h / G), row = ((b * p.h + h) * p.l + i) * p.s;
    let rowDot = 0;
    for (let j = 0; j < p.s; j++) {
      let d = 0;
      for (let x = 0; x < p.d; x++) d += dO[qi(p, b, i, h) + x] * v[ki(p, b, j, g) + x];
      dP[j] = d;
      rowDot += P[row + j] * d;
    }
    for (let j = 0; j < p.s; j++) {
      const pr = P[row + j], dS = pr * (dP[j] - rowDot);
      for (let x = 0; x < p.d; x++) {
        dv[ki(p, b, j, g) + x] += pr * dO[qi(p, b, i, h) + x];
        dq[qi(p, b, i, h) + x] += p.scale * dS * k[ki(p, b, j, g) + x];
        dk[ki(p, b, j, g) + x] += p.scale * dS * q[qi(p, b, i, h) + x];
      }
    }
  }
  return { dq, dk, dv };
}

const put = (dst: unknown, src: Float64Array) => (dst as Float32Array).set(src);
const arr = (b: unknown) => b as Float32Array;

/** The reference as an AttentionKernels table (host Float32Array buffers). */
export const referenceAttention: AttentionKernels = {
  forward(q, k, v, o, lse, p) {
    const r = attentionReferenceForward(p, arr(q), arr(k), arr(v));
    put(o, r.o);
    put(lse, r.lse);
  },
  backward(q, k, v, _o, dO, _lse, dq, dk, dv, p) {
    const r = attentionReferenceBackward(p, arr(q), arr(k), arr(v), arr(dO));
    put(dq, r.dq);
    put(dk, r.dk);
    put(dv, r.dv);
  },
};
