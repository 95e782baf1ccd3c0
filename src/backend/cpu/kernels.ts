// CPU kernels for the generic ops. Memory-bound elementwise kernels are plain typed-array loops
// (V8 compiles them well); compute-bound ones (GEMM, attention) call the native addon.
import type { BinaryOp, Kernels, ReduceOp, Strided, TypedArray, UnaryOp } from '../types.ts';
import { sgemmBatched } from './gemm.ts';
import { factoredRows } from './peer.ts';
import { erf } from '../math.ts';
import { nativeElementwise } from './elementwise.ts';

type A = TypedArray;
const SQRT1_2 = Math.SQRT1_2;
const GELU_C = Math.sqrt(2 / Math.PI);

function unaryFn(op: UnaryOp | 'identity'): (x: number) => number {
  switch (op) {
    case 'identity': return (x) => x;
    case 'neg': return (x) => -x;
    case 'exp': return Math.exp;
    case 'log': return Math.log;
    case 'sqrt': return Math.sqrt;
    case 'rsqrt': return (x) => 1 / Math.sqrt(x);
    case 'tanh': return Math.tanh;
    case 'sigmoid': return (x) => 1 / (1 + Math.exp(-x));
    case 'relu': return (x) => (x > 0 ? x : 0);
    case 'silu': return (x) => x / (1 + Math.exp(-x));
    case 'gelu': return (x) => 0.5 * x * (1 + erf(x * SQRT1_2));
    case 'gelu_tanh': return (x) => 0.5 * x * (1 + Math.tanh(GELU_C * (x + 0.044715 * x * x * x)));
    case 'abs': return Math.abs;
    case 'sign': return (x) => (x > 0 ? 1 : x < 0 ? -1 : 0);
    case 'square': return (x) => x * x;
    case 'reciprocal': return (x) => 1 / x;
  }
}

/** d op(x) / dx given x and y = op(x). */
function unaryGrad(op: UnaryOp): (x: number, y: number) => number {
  switch (op) {
    case 'neg': return () => -1;
    case 'exp': return (_x, y) => y;
    case 'log': return (x) => 1 / x;
    case 'sqrt': return (_x, y) => 0.5 / y;
    case 'rsqrt': return (x, y) => -0.5 * y / x;
    case 'tanh': return (_x, y) => 1 - y * y;
    case 'sigmoid': return (_x, y) => y * (1 - y);
    case 'relu': return (x) => (x > 0 ? 1 : 0);
    case 'silu': return (x) => { const s = 1 / (1 + Math.exp(-x)); return s * (1 + x * (1 - s)); };
    case 'gelu': return (x) => 0.5 * (1 + erf(x * SQRT1_2)) + x * Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI);
    case 'gelu_tanh': return (x) => {
      const u = GELU_C * (x + 0.044715 * x * x * x);
      const t = Math.tanh(u);
      return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * x * x);
    };
    case 'abs': return (x) => (x > 0 ? 1 : x < 0 ? -1 : 0);
    case 'sign': return () => 0;
    case 'square': return (x) => 2 * x;
    case 'reciprocal': return (_x, y) => -y * y;
  }
}

function binaryFn(op: BinaryOp): (a: number, b: number) => number {
  switch (op) {
    case 'add': return (a, b) => a + b;
    case 'sub': return (a, b) => a - b;
    case 'mul': return (a, b) => a * b;
    case 'div': return (a, b) => a / b;
    case 'pow': return Math.pow;
    case 'maximum': return (a, b) => (a >= b ? a : b);
    case 'minimum': return (a, b) => (a <= b ? a : b);
    case 'eq': return (a, b) => (a === b ? 1 : 0);
    case 'gt': return (a, b) => (a > b ? 1 : 0);
  }
}

/** Calls fn(outIndex, srcIndex) over a strided view, innermost axis fastest. */
function forStrided(v: Strided, fn: (o: number, s: number) => void): void {
  const nd = v.shape.length;
  const total = v.shape.reduce((p, x) => p * x, 1);
  if (total === 0) return;
  if (nd === 0) { fn(0, v.offset); return; }
  const idx = new Array(nd).fill(0);
  const inner = v.shape[nd - 1];
  const innerStride = v.strides[nd - 1];
  let base = v.offset;
  for (let o = 0; o < total; o += inner) {
    for (let j = 0, s = base; j < inner; j++, s += innerStride) fn(o + j, s);
    for (let ax = nd - 2; ax >= 0; ax--) {
      idx[ax]++;
      base += v.strides[ax];
      if (idx[ax] < v.shape[ax]) break;
      base -= v.strides[ax] * v.shape[ax];
      idx[ax] = 0;
    }
  }
}

function isContiguousFull(v: Strided, n: number): boolean {
  let expect = 1;
  for (let i = v.shape.length - 1; i >= 0; i--) {
    if (v.shape[i] !== 1 && v.strides[i] !== expect) return false;
    expect *= v.shape[i];
  }
  return v.offset === 0 && expect === n;
}

const NATIVE_BINARY: Partial<Record<BinaryOp, number>> = { add: 0, sub: 1, mul: 2, div: 3 };

export const cpuKernels: Kernels = {
  fill(out, value) { (out as unknown as A).fill(value); },

  copy(src, so, dst, d0, n) {
    (dst as unknown as A).set((src as unknown as A).subarray(so, so + n), d0);
  },

  copyStrided(src, view, dst) {
    const s = src as unknown as A, d = dst as unknown as A;
    forStrided(view, (o, i) => { d[o] = s[i]; });
  },

  binary(op, a, av, b, bv, out) {
    const x = a as unknown as A, y = b as unknown as A, o = out as unknown as A;
    const n = o.length;
    const ac = isContiguousFull(av, n), bc = isContiguousFull(bv, n);
    // Contiguous a with b the same shape, a scalar, or a vector along the last axis: native.
    const nd = bv.shape.length;
    const bn = bc ? n
      : bv.strides.every((st) => st === 0) ? 1
      : nd > 0 && bv.strides[nd - 1] === 1 && bv.strides.slice(0, -1).every((st) => st === 0) ? bv.shape[nd - 1] : 0;
    const code = NATIVE_BINARY[op];
    if (ac && bn > 0 && code !== undefined && x instanceof Float32Array && n > 0) {
      const yb = bv.offset === 0 ? (y as Float32Array) : (y as Float32Array).subarray(bv.offset);
      nativeElementwise().binary(code, x, yb, o as Float32Array, n, bn);
      return;
    }
    const f = binaryFn(op);
    // General case: materialize b's index per element by walking its view.
    const bi = new Int32Array(n);
    forStrided(bv, (k, j) => { bi[k] = j; });
    if (ac) for (let i = 0; i < n; i++) o[i] = f(x[i], y[bi[i]]);
    else forStrided(av, (k, i) => { o[k] = f(x[i], y[bi[k]]); });
  },

  unary(op, a, out, alpha, beta) {
    const x = a as unknown as A, o = out as unknown as A;
    const n = o.length;
    if (op === 'identity') { for (let i = 0; i < n; i++) o[i] = alpha * x[i] + beta; return; }
    if (op === 'silu' && alpha === 1 && beta === 0 && x instanceof Float32Array) {
      nativeElementwise().silu(x, o as Float32Array, n);
      return;
    }
    const f = unaryFn(op);
    if (alpha === 1 && beta === 0) for (let i = 0; i < n; i++) o[i] = f(x[i]);
    else for (let i = 0; i < n; i++) o[i] = f(alpha * x[i] + beta);
  },

  unaryBackward(op, x, y, dy, dx) {
    const xs = x as unknown as A, ys = y as unknown as A, g = dy as unknown as A, o = dx as unknown as A;
    if (op === 'silu') {
      nativeElementwise().siluBackward(xs as Float32Array, g as Float32Array, o as Float32Array, o.length);
      return;
    }
    const f = unaryGrad(op);
    for (let i = 0; i < o.length; i++) o[i] = g[i] * f(xs[i], ys[i]);
  },

  // The native silu and multiply in sequence: the same arithmetic as the unfused ops.
  swiglu(gate, up, n, out) {
    const s = new Float32Array(n);
    nativeElementwise().silu(gate as unknown as Float32Array, s, n);
    nativeElementwise().binary(NATIVE_BINARY.mul!, s, up as unknown as Float32Array, out as unknown as Float32Array, n, n);
  },

  swigluBackward(gate, up, dy, n, dgate, dup) {
    const a = gate as unknown as Float32Array, g = dy as unknown as Float32Array;
    const t = new Float32Array(n);
    nativeElementwise().binary(NATIVE_BINARY.mul!, g, up as unknown as Float32Array, t, n, n);
    nativeElementwise().siluBackward(a, t, dgate as unknown as Float32Array, n);
    nativeElementwise().silu(a, t, n);
    nativeElementwise().binary(NATIVE_BINARY.mul!, g, t, dup as unknown as Float32Array, n, n);
  },

  reduce(op: ReduceOp, a, outer, n, inner, out) {
    const x = a as unknown as A, o = out as unknown as A;
    for (let p = 0; p < outer; p++) {
      for (let q = 0; q < inner; q++) {
        let base = p * n * inner + q;
        let acc = op === 'sum' ? 0 : x[base];
        if (op === 'sum') for (let j = 0; j < n; j++, base += inner) acc += x[base];
        else if (op === 'max') for (let j = 0; j < n; j++, base += inner) acc = x[base] > acc ? x[base] : acc;
        else for (let j = 0; j < n; j++, base += inner) acc = x[base] < acc ? x[base] : acc;
        o[p * inner + q] = acc;
      }
    }
  },

  argmax(a, outer, n, inner, out) {
    const x = a as unknown as A, o = out as unknown as A;
    for (let p = 0; p < outer; p++) {
      for (let q = 0; q < inner; q++) {
        const base = p * n * inner + q;
        let best = 0, bv = x[base];
        for (let j = 1; j < n; j++) { const v = x[base + j * inner]; if (v > bv) { bv = v; best = j; } }
        o[p * inner + q] = best;
      }
    }
  },

  matmul(a, b, c, p) {
    const lda = p.transA ? p.m : p.k, ldb = p.transB ? p.k : p.n;
    sgemmBatched(p.batch, p.transA, p.transB, p.m, p.n, p.k, p.alpha, a as unknown as Float32Array, 0, lda, p.strideA,
      b as unknown as Float32Array, 0, ldb, p.strideB, p.beta, c as unknown as Float32Array, 0, p.n, p.strideC);
  },

  softmax(a, rows, n, out, log) {
    const x = a as unknown as A, o = out as unknown as A;
    for (let r = 0; r < rows; r++) {
      const base = r * n;
      let mx = -Infinity;
      for (let j = 0; j < n; j++) if (x[base + j] > mx) mx = x[base + j];
      let sum = 0;
      for (let j = 0; j < n; j++) sum += Math.exp(x[base + j] - mx);
      if (log) { const lse = mx + Math.log(sum); for (let j = 0; j < n; j++) o[base + j] = x[base + j] - lse; }
      else { const inv = 1 / sum; for (let j = 0; j < n; j++) o[base + j] = Math.exp(x[base + j] - mx) * inv; }
    }
  },

  softmaxBackward(y, dy, rows, n, dx, log) {
    const ys = y as unknown as A, g = dy as unknown as A, o = dx as unknown as A;
    for (let r = 0; r < rows; r++) {
      const base = r * n;
      let s = 0;
      if (log) {
        for (let j = 0; j < n; j++) s += g[base + j];
        for (let j = 0; j < n; j++) o[base + j] = g[base + j] - Math.exp(ys[base + j]) * s;
      } else {
        for (let j = 0; j < n; j++) s += g[base + j] * ys[base + j];
        for (let j = 0; j < n; j++) o[base + j] = ys[base + j] * (g[base + j] - s);
      }
    }
  },

  crossEntropy(logits, target, rows, n, soft, ignoreIndex, loss, dlogits) {
    nativeElementwise().crossEntropy(logits as unknown as Float32Array, target as unknown as Int32Array | Float32Array,
      rows, n, soft, ignoreIndex, loss as unknown as Float32Array, dlogits as unknown as Float32Array | null);
  },

  norm(kind, x, weight, bias, rows, n, eps, out, rstd, mean) {
    const xs = x as unknown as A, w = weight as unknown as A | null, bb = bias as unknown as A | null;
    const o = out as unknown as A, rs = rstd as unknown as A, mu = mean as unknown as A | null;
    for (let r = 0; r < rows; r++) {
      const base = r * n;
      let m = 0;
      if (kind === 'layer') { for (let j = 0; j < n; j++) m += xs[base + j]; m /= n; }
      let v = 0;
      for (let j = 0; j < n; j++) { const c = xs[base + j] - m; v += c * c; }
      const inv = 1 / Math.sqrt(v / n + eps);
      rs[r] = inv;
      if (mu) mu[r] = m;
      for (let j = 0; j < n; j++) {
        let y = (xs[base + j] - m) * inv;
        if (w) y *= w[j];
        if (bb) y += bb[j];
        o[base + j] = y;
      }
    }
  },

  normBackward(kind, x, weight, rstd, mean, dy, rows, n, dx, dweight, dbias) {
    const xs = x as unknown as A, w = weight as unknown as A | null, rs = rstd as unknown as A;
    const mu = mean as unknown as A | null, g = dy as unknown as A, o = dx as unknown as A;
    const dw = dweight as unknown as A | null, db = dbias as unknown as A | null;
    if (dw) dw.fill(0);
    if (db) db.fill(0);
    for (let r = 0; r < rows; r++) {
      const base = r * n, inv = rs[r], m = mu ? mu[r] : 0;
      // xhat = (x - m) * inv; gh = dy * w; dx = inv * (gh - mean(gh) [layer] - xhat * mean(gh * xhat))
      let sg = 0, sgx = 0;
      for (let j = 0; j < n; j++) {
        const xh = (xs[base + j] - m) * inv;
        const gh = g[base + j] * (w ? w[j] : 1);
        sg += gh;
        sgx += gh * xh;
        if (dw) dw[j] += g[base + j] * xh;
        if (db) db[j] += g[base + j];
      }
      sg /= n;
      sgx /= n;
      for (let j = 0; j < n; j++) {
        const xh = (xs[base + j] - m) * inv;
        const gh = g[base + j] * (w ? w[j] : 1);
        o[base + j] = inv * (gh - (kind === 'layer' ? sg : 0) - xh * sgx);
      }
    }
  },

  rope(x, pos, b, l, h, d, theta, interleaved, sign, out) {
    const xs = x as unknown as A, ps = pos as unknown as A, o = out as unknown as A;
    const half = d / 2;
    const cos = new Float64Array(half), sin = new Float64Array(half);
    for (let t = 0; t < l; t++) {
      for (let i = 0; i < half; i++) {
        const ang = ps[t] * Math.pow(theta, (-2 * i) / d);
        cos[i] = Math.cos(ang);
        sin[i] = sign * Math.sin(ang);
      }
      for (let bi = 0; bi < b; bi++) {
        for (let hh = 0; hh < h; hh++) {
          const base = ((bi * l + t) * h + hh) * d;
          for (let i = 0; i < half; i++) {
            const i0 = interleaved ? base + 2 * i : base + i;
            const i1 = interleaved ? i0 + 1 : i0 + half;
            const x0 = xs[i0], x1 = xs[i1];
            o[i0] = x0 * cos[i] - x1 * sin[i];
            o[i1] = x1 * cos[i] + x0 * sin[i];
          }
        }
      }
    }
  },

  gather(table, idx, n, width, out) {
    const t = table as unknown as A, ix = idx as unknown as A, o = out as unknown as A;
    const rows = t.length / width;
    for (let i = 0; i < n; i++) {
      const r = ix[i];
      if (r < 0 || r >= rows) throw new Error(`index ${r} out of range [0, ${rows})`);
      o.set(t.subarray(r * width, r * width + width), i * width);
    }
  },

  scatterAdd(src, idx, n, width, table) {
    const s = src as unknown as A, ix = idx as unknown as A, t = table as unknown as A;
    for (let i = 0; i < n; i++) {
      const base = ix[i] * width, sb = i * width;
      for (let j = 0; j < width; j++) t[base + j] += s[sb + j];
    }
  },

  conv1d(x, w, bias, b, l, c, k, out) {
    const xs = x as unknown as A, ws = w as unknown as A, bs = bias as unknown as A | null, o = out as unknown as A;
    for (let bi = 0; bi < b; bi++)
      for (let t = 0; t < l; t++)
        for (let ch = 0; ch < c; ch++) {
          let acc = bs ? bs[ch] : 0;
          for (let j = 0; j < k; j++) {
            const src = t - (k - 1) + j;
            if (src >= 0) acc += ws[ch * k + j] * xs[(bi * l + src) * c + ch];
          }
          o[(bi * l + t) * c + ch] = acc;
        }
  },

  conv1dBackward(x, w, dy, b, l, c, k, dx, dw, dbias) {
    const xs = x as unknown as A, ws = w as unknown as A, g = dy as unknown as A;
    const gx = dx as unknown as A, gw = dw as unknown as A, gb = dbias as unknown as A | null;
    gx.fill(0); gw.fill(0); if (gb) gb.fill(0);
    for (let bi = 0; bi < b; bi++)
      for (let t = 0; t < l; t++)
        for (let ch = 0; ch < c; ch++) {
          const gy = g[(bi * l + t) * c + ch];
          if (gb) gb[ch] += gy;
          for (let j = 0; j < k; j++) {
            const src = t - (k - 1) + j;
            if (src < 0) continue;
            gw[ch * k + j] += gy * xs[(bi * l + src) * c + ch];
            gx[(bi * l + src) * c + ch] += gy * ws[ch * k + j];
          }
        }
  },

  topk(a, rows, n, k, values, indices) {
    const x = a as unknown as A, v = values as unknown as A, ix = indices as unknown as A;
    // Partial selection keeping a sorted list of the best k (k is small in every use here).
    const bv = new Float64Array(k), bi = new Int32Array(k);
    for (let r = 0; r < rows; r++) {
      let cnt = 0;
      const base = r * n;
      for (let j = 0; j < n; j++) {
        const val = x[base + j];
        if (cnt === k && !(val > bv[k - 1])) continue;
        let p = cnt < k ? cnt++ : k - 1;
        while (p > 0 && bv[p - 1] < val) { bv[p] = bv[p - 1]; bi[p] = bi[p - 1]; p--; }
        bv[p] = val; bi[p] = j;
      }
      for (let i = 0; i < k; i++) { v[r * k + i] = bv[i]; ix[r * k + i] = bi[i]; }
    }
  },

  findOutOfRange(idx, n, lo, hi, skip, found) {
    const x = idx as unknown as Int32Array, o = found as unknown as Int32Array;
    o[0] = 0; o[1] = -1; o[2] = 0;
    for (let i = 0; i < n; i++) {
      const v = x[i];
      if (v === skip || (v >= lo && v < hi)) continue;
      if (o[0]++ === 0) { o[1] = i; o[2] = v; }
    }
  },

  factoredRows(f, out, target) {
    const n = target ? (out as unknown as A).length / f.width : f.rows;
    factoredRows(f.slot as unknown as Int32Array, f.token as unknown as Int32Array, f.coef as unknown as Float32Array,
      f.basis as unknown as Float32Array, f.terms, f.rows, f.width, out as unknown as Float32Array,
      target as unknown as Int32Array | null, n);
  },
};
