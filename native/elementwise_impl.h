// Row-wise and elementwise training kernels written once with GCC vector types; elementwise.cc
// includes this inside three `#pragma GCC target` regions (AVX-512, AVX2+FMA, baseline).
// Needs <cmath>, <cstdint> included by the caller.

#include "vec16.h"

static inline v16 splat(float x) { return v16{} + x; }

// e^x with relative error ~2e-7 (inputs below about -87 flush to ~1e-38; above 88 saturate at
// 2^127, so SiLU of a large negative input stays finite).
static inline v16 expv(v16 x) {
  v16 y = x * 1.44269504088896341f;
  const v16 hi = v16{} + 127.0f;
  return exp2v(y > hi ? hi : y);
}

static inline float hsum(v16 v) {
  float s = 0;
  for (int i = 0; i < 16; i++) s += v[i];
  return s;
}
static inline float hmax(v16 v) {
  float m = v[0];
  for (int i = 1; i < 16; i++) m = v[i] > m ? v[i] : m;
  return m;
}

static float row_max(const float* x, int64_t n) {
  int64_t j = 0;
  float m = -INFINITY;
  if (n >= 16) {
    v16 vm = ld(x);
    for (j = 16; j + 16 <= n; j += 16) { v16 a = ld(x + j); vm = a > vm ? a : vm; }
    m = hmax(vm);
  }
  for (; j < n; j++) m = x[j] > m ? x[j] : m;
  return m;
}

// sum_j exp(x_j - m); optionally stores exp(x_j - m) * scale into out.
static double row_sumexp(const float* x, int64_t n, float m, float* out, float scale) {
  int64_t j = 0;
  v16 acc = v16{};
  for (; j + 16 <= n; j += 16) {
    v16 e = expv(ld(x + j) - m);
    acc += e;
    if (out) st(out + j, e * scale);
  }
  double s = hsum(acc);
  for (; j < n; j++) {
    float e = std::exp(x[j] - m);
    s += e;
    if (out) out[j] = e * scale;
  }
  return s;
}

// Hard-label cross-entropy for one row: returns the loss, writes softmax - onehot into d (if any).
static float ce_hard_row(const float* x, int64_t n, int32_t y, float* d) {
  float m = row_max(x, n);
  double s = row_sumexp(x, n, m, nullptr, 0.f);
  float lse = m + (float)std::log(s);
  if (d) {
    row_sumexp(x, n, m, d, (float)(1.0 / s));
    d[y] -= 1.0f;
  }
  return lse - x[y];
}

// Soft-target cross-entropy for one row (targets = softmax(t)): -sum p log q; d = q - p.
static float ce_soft_row(const float* x, const float* t, int64_t n, float* d) {
  float m = row_max(x, n), tm = row_max(t, n);
  double s = row_sumexp(x, n, m, nullptr, 0.f);
  double ts = row_sumexp(t, n, tm, nullptr, 0.f);
  float lse = m + (float)std::log(s);
  float invq = (float)(1.0 / s), invp = (float)(1.0 / ts);
  int64_t j = 0;
  v16 acc = v16{};
  for (; j + 16 <= n; j += 16) {
    v16 xv = ld(x + j);
    v16 p = expv(ld(t + j) - tm) * invp;
    acc += p * (xv - lse);
    if (d) st(d + j, expv(xv - m) * invq - p);
  }
  double a = hsum(acc);
  for (; j < n; j++) {
    float p = std::exp(t[j] - tm) * invp;
    a += p * (x[j] - lse);
    if (d) d[j] = std::exp(x[j] - m) * invq - p;
  }
  return (float)-a;
}

// AdamW over [b, e): decoupled decay, bias-corrected moments (PyTorch semantics).
static void adamw_range(float* w, const float* g, float* m, float* v, int64_t b, int64_t e, float lr, float b1,
                        float b2, float eps, float decay, float bc1, float bc2, float gs) {
  const float step = lr / bc1, ib2 = 1.0f / bc2;
  int64_t j = b;
  for (; j + 16 <= e; j += 16) {
    v16 gg = ld(g + j) * gs;
    v16 mm = ld(m + j) * b1 + gg * (1 - b1);
    v16 vv = ld(v + j) * b2 + gg * gg * (1 - b2);
    st(m + j, mm);
    st(v + j, vv);
    v16 den = vv * ib2;
    for (int i = 0; i < 16; i++) den[i] = std::sqrt(den[i]);  // vectorized by the compiler
    st(w + j, ld(w + j) * decay - step * mm / (den + eps));
  }
  for (; j < e; j++) {
    float gg = g[j] * gs;
    m[j] = b1 * m[j] + (1 - b1) * gg;
    v[j] = b2 * v[j] + (1 - b2) * gg * gg;
    w[j] = w[j] * decay - step * m[j] / (std::sqrt(v[j] * ib2) + eps);
  }
}

// silu forward and backward: y = x * s, dy/dx = s * (1 + x * (1 - s)), s = sigmoid(x).
static void silu_range(const float* x, float* y, int64_t b, int64_t e) {
  int64_t j = b;
  for (; j + 16 <= e; j += 16) {
    v16 xv = ld(x + j);
    st(y + j, xv / (1.0f + expv(-xv)));
  }
  for (; j < e; j++) y[j] = x[j] / (1.0f + std::exp(-x[j]));
}
static void silu_bwd_range(const float* x, const float* g, float* dx, int64_t b, int64_t e) {
  int64_t j = b;
  for (; j + 16 <= e; j += 16) {
    v16 xv = ld(x + j);
    v16 s = 1.0f / (1.0f + expv(-xv));
    st(dx + j, ld(g + j) * s * (1.0f + xv * (1.0f - s)));
  }
  for (; j < e; j++) {
    float s = 1.0f / (1.0f + std::exp(-x[j]));
    dx[j] = g[j] * s * (1.0f + x[j] * (1.0f - s));
  }
}

static double sumsq_range(const float* x, int64_t b, int64_t e) {
  int64_t j = b;
  v16 acc = v16{};
  for (; j + 16 <= e; j += 16) { v16 a = ld(x + j); acc += a * a; }
  double s = hsum(acc);
  for (; j < e; j++) s += (double)x[j] * x[j];
  return s;
}

// out = a (op) b over [b0, e0) where b is indexed j % bn (bn = n: same shape; 1: scalar; else a row).
// op: 0 add, 1 sub, 2 mul, 3 div.
template <int OP>
static inline float bin1(float a, float b) {
  return OP == 0 ? a + b : OP == 1 ? a - b : OP == 2 ? a * b : a / b;
}
template <int OP>
static void binary_range_op(const float* a, const float* b, float* o, int64_t b0, int64_t e0, int64_t bn) {
  if (bn == 1) {
    const float c = b[0];
    for (int64_t j = b0; j < e0; j++) o[j] = bin1<OP>(a[j], c);
  } else if (b0 % bn == 0 && e0 % bn == 0) {
    for (int64_t r = b0; r < e0; r += bn)
      for (int64_t j = 0; j < bn; j++) o[r + j] = bin1<OP>(a[r + j], b[j]);
  } else {
    for (int64_t j = b0; j < e0; j++) o[j] = bin1<OP>(a[j], b[j % bn]);
  }
}
static void binary_range(int op, const float* a, const float* b, float* o, int64_t b0, int64_t e0, int64_t bn) {
  switch (op) {
    case 0: binary_range_op<0>(a, b, o, b0, e0, bn); break;
    case 1: binary_range_op<1>(a, b, o, b0, e0, bn); break;
    case 2: binary_range_op<2>(a, b, o, b0, e0, bn); break;
    default: binary_range_op<3>(a, b, o, b0, e0, bn); break;
  }
}
