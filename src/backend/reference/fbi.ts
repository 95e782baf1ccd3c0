// The plain reference of the FBI and low-bit serving kernels (src/backend/contracts.ts FbiKernels):
// weights decoded one value at a time, sums in float64. Quantization of the activations follows the
// contract exactly (float32 arithmetic for the scales and the rounding, round half to even), so the
// kernels differ from it only by their summation order.
import { unsupported } from '../contracts.ts';
import type { FbiKernels, FbiMatmulArgs, QuantBlockType } from '../contracts.ts';
import { int8RowBytes } from '../contracts.ts';

const f32 = (b: unknown) => b as Float32Array;
const i32 = (b: unknown) => b as Int32Array;
const fr = Math.fround;

/** Round half to even (C's nearbyint in the default rounding mode). */
function rint(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Sign s_ij (+1 / -1) of row i, input j from row-major bits. */
const sign = (bits: Int32Array, wpr: number, i: number, j: number) => ((bits[i * wpr + (j >> 5)] >>> (j & 31)) & 1 ? 1 : -1);

/** Per-token int8 quantization: q = rint(u / d), d = max|u| / 127 (the scale computed in float32). */
function quantizeToken(u: ArrayLike<number>): { q: Int32Array; d: number } {
  let amax = 0;
  for (let j = 0; j < u.length; j++) amax = Math.max(amax, Math.abs(u[j]));
  const d = fr(amax / 127), inv = amax > 0 ? fr(127 / amax) : 0;
  const q = new Int32Array(u.length);
  for (let j = 0; j < u.length; j++) q[j] = Math.max(-127, Math.min(127, rint(fr(u[j] * inv))));
  return { q, d };
}

function packed(a: FbiMatmulArgs, int8: boolean): void {
  const x = f32(a.x), bits = i32(a.bits), alpha = f32(a.alpha), beta = f32(a.beta), y = f32(a.y);
  const { rows, inF: K, outF: N } = a;
  const wpr = Math.ceil(K / 32);
  for (let t = 0; t < rows; t++) {
    // u: the activations after the column scales; bias: beta . x (column) or sum(x).
    const u = new Float64Array(K);
    let bias = 0;
    for (let j = 0; j < K; j++) {
      const xj = x[t * K + j];
      u[j] = a.pattern === 'column' ? fr(alpha[j] * xj) : xj;
      bias += a.pattern === 'column' ? beta[j] * xj : xj;
    }
    const qt = int8 ? quantizeToken(u) : null;
    for (let i = 0; i < N; i++) {
      let s = 0;
      for (let j = 0; j < K; j++) s += sign(bits, wpr, i, j) * (qt ? qt.q[j] : u[j]);
      if (qt) s *= qt.d;
      const k = a.pattern === 'row' ? i : 0;
      y[t * N + i] = a.pattern === 'column' ? s + bias : alpha[k] * s + beta[k] * bias;
    }
  }
}

function f16ToF32(h: number): number {
  const sgn = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return sgn * m * 2 ** -24;
  if (e === 31) return m ? NaN : sgn * Infinity;
  return sgn * (1 + m / 1024) * 2 ** (e - 15);
}

/** Weight (n, k) of a GGUF block row. */
function quantWeight(w: Uint8Array, type: QuantBlockType, K: number, n: number, k: number): number {
  const half = (o: number) => f16ToF32(w[o] | (w[o + 1] << 8));
  if (type === 'Q8_0') {
    const o = n * (K / 32) * 34 + (k >> 5) * 34;
    return half(o) * ((w[o + 2 + (k & 31)] << 24) >> 24);
  }
  if (type === 'Q4_0') {
    const o = n * (K / 32) * 18 + (k >> 5) * 18, i = k & 31;
    const nib = i < 16 ? w[o + 2 + i] & 15 : w[o + 2 + i - 16] >> 4;
    return half(o) * (nib - 8);
  }
  const o = n * (K / 128) * 18 + (k >> 7) * 18, i = k & 127;
  return (w[o + 2 + (i >> 3)] >> (i & 7)) & 1 ? half(o) : -half(o);
}

/** The reference as an FbiKernels table (host typed-array buffers). */
export const referenceFbi: FbiKernels = {
  // Defined as the op-by-op forward of the same model (test/infer/fused-decode.test.ts compares them).
  decodeStack: unsupported('reference', 'fbi.decodeStack'),
  packSigns(w, inF, outF, bits) {
    const src = f32(w), out = i32(bits), wpr = Math.ceil(inF / 32);
    out.fill(0);
    for (let i = 0; i < outF; i++) for (let j = 0; j < inF; j++) if (src[i * inF + j] > 0) out[i * wpr + (j >> 5)] |= 1 << (j & 31);
  },
  packedMatmul: (a) => packed(a, false),
  int8Matmul: (a) => packed(a, true),
  f16Matmul(x, w, rows, inF, outF, y) {
    const xs = f32(x), ys = f32(y), words = i32(w);
    const h = new Uint16Array(words.buffer, words.byteOffset, outF * inF);
    for (let t = 0; t < rows; t++) for (let n = 0; n < outF; n++) {
      let s = 0;
      for (let k = 0; k < inF; k++) s += xs[t * inF + k] * f16ToF32(h[n * inF + k]);
      ys[t * outF + n] = s;
    }
  },
  int8HeadMatmul(x, q, scale, rows, inF, outF, y) {
    const xs = f32(x), ys = f32(y), sc = f32(scale), words = i32(q);
    const qs = new Int8Array(words.buffer, words.byteOffset, words.length * 4), kp = int8RowBytes(inF);
    for (let t = 0; t < rows; t++) {
      const xt = quantizeToken(xs.subarray(t * inF, (t + 1) * inF));
      for (let n = 0; n < outF; n++) {
        let s = 0;
        for (let k = 0; k < inF; k++) s += xt.q[k] * qs[n * kp + k];
        ys[t * outF + n] = xt.d * sc[n] * s;
      }
    }
  },
  quantMatmul(x, w, type, rows, inF, outF, y) {
    // Activations to int8 with one scale per 32 values (d = max|x| / 127 in float32, q = rint(x / d)).
    const xs = f32(x), ys = f32(y);
    for (let t = 0; t < rows; t++) {
      const xq = new Float64Array(inF);
      for (let b = 0; b < inF / 32; b++) {
        let amax = 0;
        for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(xs[t * inF + b * 32 + i]));
        const d = fr(amax / 127), id = d > 0 ? fr(1 / d) : 0;
        for (let i = 0; i < 32; i++) xq[b * 32 + i] = d * rint(fr(xs[t * inF + b * 32 + i] * id));
      }
      for (let n = 0; n < outF; n++) {
        let s = 0;
        for (let k = 0; k < inF; k++) s += xq[k] * quantWeight(w, type, inF, n, k);
        ys[t * outF + n] = s;
      }
    }
  },
};
