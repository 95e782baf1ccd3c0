// PEER (Mixture of a Million Experts) CPU kernels, f32.
//
// Retrieval: the sub-key scores of a block of query rows are computed by SGEMM on the TS side; here
// each row takes an exact top-k over both halves and then the top-k of the k*k candidate sums.
// Experts: single-neuron experts e_i(x) = act(u_i . x) v_i mixed with router weights g. The forward
// is a fused gather-dot + weighted scatter per token, the backward a fused pass per token (dx, the
// gradients of the router scores) plus a pass per touched expert row (row-sparse du, dv), so the
// [tokens, heads, k, C] gathered tensor never exists.
//
// Layouts (row-major): x, y, dy, dx [T, C]; u, v [N, C]; idx, z (raw scores), g (router weights),
// pre (u . x) [T, H, k]. Every entry (t, h, r) is an "occurrence" o = (t * H + h) * k + r.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include <sys/mman.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "isa.h"
#include "registry.h"
#include "threadpool.h"

namespace frugal {
namespace peer {
namespace {

// ---- vector helpers: AVX-512 path and a portable path with the same lane order ----------------
float dot_scalar(const float* a, const float* b, int64_t n) {
  float acc[16] = {};
  for (int64_t i = 0; i < n; i++) acc[i & 15] += a[i] * b[i];
  for (int w = 8; w >= 1; w >>= 1)
    for (int l = 0; l < w; l++) acc[l] += acc[l + w];
  return acc[0];
}
void axpy_scalar(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) float dot_avx512(const float* a, const float* b, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
  if (i < n) {
    __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc);
  }
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, acc);
  for (int w = 8; w >= 1; w >>= 1)
    for (int l = 0; l < w; l++) lanes[l] += lanes[l + w];
  return lanes[0];
}
__attribute__((target("avx512f"))) void axpy_avx512(float alpha, const float* x, float* y, int64_t n) {
  const __m512 a = _mm512_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(a, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  if (i < n) {
    __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}
#endif

using DotFn = float (*)(const float*, const float*, int64_t);
using AxpyFn = void (*)(float, const float*, float*, int64_t);
struct Vec {
  DotFn dot;
  AxpyFn axpy;
};
Vec vec() {
#if defined(__x86_64__)
  if (has_avx512()) return {dot_avx512, axpy_avx512};
#endif
  return {dot_scalar, axpy_scalar};
}

inline void prefetch_row(const float* p, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) __builtin_prefetch(p + i);
}

// ---- activations and router scores -----------------------------------------------------------
constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;
inline float act(int kind, float s) {
  return kind == 0 ? 0.5f * s * (1.0f + std::erf(s * kInvSqrt2)) : (s > 0.0f ? s : 0.0f);
}
inline float act_grad(int kind, float s) {
  if (kind == 0) return 0.5f * (1.0f + std::erf(s * kInvSqrt2)) + s * kInvSqrt2Pi * std::exp(-0.5f * s * s);
  return s > 0.0f ? 1.0f : 0.0f;
}
// Router weights of one head from its k raw scores: softmax (kind 0) or sigmoid (kind 1).
inline void router(int kind, const float* z, float* g, int64_t k) {
  if (kind == 1) {
    for (int64_t r = 0; r < k; r++) g[r] = 1.0f / (1.0f + std::exp(-z[r]));
    return;
  }
  float m = z[0];
  for (int64_t r = 1; r < k; r++) m = std::max(m, z[r]);
  float s = 0.0f;
  for (int64_t r = 0; r < k; r++) s += (g[r] = std::exp(z[r] - m));
  for (int64_t r = 0; r < k; r++) g[r] /= s;
}
// dz from dg through the router of one head.
inline void router_backward(int kind, const float* g, const float* dg, float* dz, int64_t k) {
  if (kind == 1) {
    for (int64_t r = 0; r < k; r++) dz[r] = dg[r] * g[r] * (1.0f - g[r]);
    return;
  }
  float s = 0.0f;
  for (int64_t r = 0; r < k; r++) s += g[r] * dg[r];
  for (int64_t r = 0; r < k; r++) dz[r] = g[r] * (dg[r] - s);
}

// ---- top-k --------------------------------------------------------------------------------------
// Keeps the best k of a stream sorted descending; ties keep the earlier element first, which is
// what a stable descending sort (and PyTorch's topk on distinct values) gives.
struct TopK {
  float* val;
  int32_t* pos;
  int64_t k, cnt = 0;
  void push(float x, int32_t p) {
    if (cnt == k && !(x > val[k - 1])) return;
    int64_t i = cnt < k ? cnt++ : k - 1;
    while (i > 0 && val[i - 1] < x) { val[i] = val[i - 1]; pos[i] = pos[i - 1]; i--; }
    val[i] = x; pos[i] = p;
  }
};

// Top-k of one row: a threshold test rejects most elements before the insertion (16 at a time
// with AVX-512), so the scan costs about one compare per element.
void topk_row_scalar(TopK& t, const float* x, int64_t n) {
  for (int64_t j = 0; j < n; j++) t.push(x[j], static_cast<int32_t>(j));
}
#if defined(__x86_64__)
__attribute__((target("avx512f"))) void topk_row_avx512(TopK& t, const float* x, int64_t n) {
  int64_t j = 0;
  for (; j < n && t.cnt < t.k; j++) t.push(x[j], static_cast<int32_t>(j));
  for (; j + 16 <= n; j += 16) {
    __mmask16 m = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + j), _mm512_set1_ps(t.val[t.k - 1]), _CMP_GT_OQ);
    while (m) {
      const int b = __builtin_ctz(m);
      m &= m - 1;
      t.push(x[j + b], static_cast<int32_t>(j + b));
    }
  }
  for (; j < n; j++) t.push(x[j], static_cast<int32_t>(j));
}
#endif
using TopkRowFn = void (*)(TopK&, const float*, int64_t);
TopkRowFn topk_row() {
#if defined(__x86_64__)
  if (has_avx512()) return topk_row_avx512;
#endif
  return topk_row_scalar;
}

template <typename T>
T* arg(const Napi::CallbackInfo& info, int i, size_t want, const char* what);
template <>
float* arg<float>(const Napi::CallbackInfo& info, int i, size_t want, const char* what) {
  size_t len;
  float* p = f32(info, i, &len);
  if (len < want) throw Napi::RangeError::New(info.Env(), std::string("peer: ") + what + " is too short");
  return p;
}
template <>
int32_t* arg<int32_t>(const Napi::CallbackInfo& info, int i, size_t want, const char* what) {
  size_t len;
  int32_t* p = i32(info, i, &len);
  if (len < want) throw Napi::RangeError::New(info.Env(), std::string("peer: ") + what + " is too short");
  return p;
}
void positive(const Napi::CallbackInfo& info, std::initializer_list<int64_t> vs) {
  for (int64_t v : vs)
    if (v < 1) throw Napi::RangeError::New(info.Env(), "peer: sizes must be positive");
}

// peerTopkPairs(s0, s1, rows, n, k, idx, score, sub, outBase, outStride)
// s0, s1 [rows, n]: the two halves' sub-key scores. Row r writes output row outBase + r*outStride of
// idx/score [*, k] and sub [*, k, 2] (the two sub-key ids of each pick).
Napi::Value js_topk_pairs(const Napi::CallbackInfo& info) {
  const int64_t rows = num(info, 2), n = num(info, 3), k = num(info, 4), base = num(info, 8), stride = num(info, 9);
  positive(info, {rows, n, k});
  if (k > n || base < 0 || stride < 1) throw Napi::RangeError::New(info.Env(), "peer: bad top-k arguments");
  const float* s0 = arg<float>(info, 0, rows * n, "s0");
  const float* s1 = arg<float>(info, 1, rows * n, "s1");
  const size_t outRows = base + (rows - 1) * stride + 1;
  int32_t* idx = arg<int32_t>(info, 5, outRows * k, "idx");
  float* score = arg<float>(info, 6, outRows * k, "score");
  int32_t* sub = arg<int32_t>(info, 7, outRows * k * 2, "sub");
  const TopkRowFn scan = topk_row();
  parallel_for(rows, [&](int64_t r0, int64_t r1) {
    std::vector<float> v0(k), v1(k), vc(k);
    std::vector<int32_t> p0(k), p1(k), pc(k);
    for (int64_t r = r0; r < r1; r++) {
      TopK a{v0.data(), p0.data(), k}, b{v1.data(), p1.data(), k}, c{vc.data(), pc.data(), k};
      const float* x0 = s0 + r * n;
      const float* x1 = s1 + r * n;
      scan(a, x0, n);
      scan(b, x1, n);
      // Candidates in (i-major, j-minor) order over the two sorted lists. A candidate with
      // (i+1)(j+1) > k is dominated by at least k earlier candidates (i' <= i, j' <= j), so it can
      // never be picked, ties included: skipping it changes nothing.
      for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; (i + 1) * (j + 1) <= k; j++) c.push(v0[i] + v1[j], static_cast<int32_t>(i * k + j));
      const int64_t o = (base + r * stride) * k;
      for (int64_t m = 0; m < k; m++) {
        const int32_t i = p0[pc[m] / k], j = p1[pc[m] % k];
        idx[o + m] = static_cast<int32_t>(i * n + j);
        score[o + m] = vc[m];
        sub[(o + m) * 2] = i;
        sub[(o + m) * 2 + 1] = j;
      }
    }
  });
  return info.Env().Undefined();
}

// peerTopkMerge(scores, rows, m, k, colBase, bestVal, bestIdx, fresh): merges a chunk of m columns
// (global ids colBase + c) into running sorted top-k lists per row (brute-force reference).
Napi::Value js_topk_merge(const Napi::CallbackInfo& info) {
  const int64_t rows = num(info, 1), m = num(info, 2), k = num(info, 3), colBase = num(info, 4);
  const bool fresh = info[7].ToBoolean();
  positive(info, {rows, m, k});
  const float* s = arg<float>(info, 0, rows * m, "scores");
  float* bv = arg<float>(info, 5, rows * k, "bestVal");
  int32_t* bi = arg<int32_t>(info, 6, rows * k, "bestIdx");
  parallel_for(rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      TopK t{bv + r * k, bi + r * k, k, fresh ? 0 : k};
      for (int64_t c = 0; c < m; c++) t.push(s[r * m + c], static_cast<int32_t>(colBase + c));
    }
  });
  return info.Env().Undefined();
}

// peerRetrieveBackward(q, keys, sub, dz, T, H, Hk, n, dh, k, dq, dkeys)
// q, dq [T, H, 2, dh]; keys, dkeys [Hk, 2, n, dh] (Hk = 1: shared by all heads; Hk = H: per head);
// sub [T, H, k, 2]; dz [T, H, k]. z = q0 . keys[., 0, i] + q1 . keys[., 1, j]. Overwrites dq, dkeys.
Napi::Value js_retrieve_backward(const Napi::CallbackInfo& info) {
  const int64_t T = num(info, 4), H = num(info, 5), Hk = num(info, 6), n = num(info, 7), dh = num(info, 8), k = num(info, 9);
  positive(info, {T, H, Hk, n, dh, k});
  if (Hk != 1 && Hk != H) throw Napi::RangeError::New(info.Env(), "peer: keys must be shared (1) or per head (H)");
  const float* q = arg<float>(info, 0, T * H * 2 * dh, "q");
  const float* keys = arg<float>(info, 1, Hk * 2 * n * dh, "keys");
  const int32_t* sub = arg<int32_t>(info, 2, T * H * k * 2, "sub");
  const float* dz = arg<float>(info, 3, T * H * k, "dz");
  float* dq = arg<float>(info, 10, T * H * 2 * dh, "dq");
  float* dkeys = arg<float>(info, 11, Hk * 2 * n * dh, "dkeys");
  for (int64_t i = 0; i < T * H * k * 2; i++)
    if (sub[i] < 0 || sub[i] >= n) throw Napi::RangeError::New(info.Env(), "peer: sub-key index out of range");
  const Vec V = vec();
  parallel_for(T * H, [&](int64_t a, int64_t b) {
    for (int64_t th = a; th < b; th++) {
      const int64_t hk = Hk == 1 ? 0 : th % H;
      float* d = dq + th * 2 * dh;
      std::memset(d, 0, 2 * dh * sizeof(float));
      for (int64_t r = 0; r < k; r++) {
        const float g = dz[th * k + r];
        for (int p = 0; p < 2; p++) V.axpy(g, keys + ((hk * 2 + p) * n + sub[(th * k + r) * 2 + p]) * dh, d + p * dh, dh);
      }
    }
  });
  // Each task owns a band of key rows and scans every occurrence: no races, a fixed summation order.
  std::memset(dkeys, 0, Hk * 2 * n * dh * sizeof(float));
  const int64_t keyRows = Hk * 2 * n, bands = std::min<int64_t>(keyRows, 4 * num_threads());
  parallel_tasks(bands, [&](int64_t band) {
    const int64_t lo = band * keyRows / bands, hi = (band + 1) * keyRows / bands;
    for (int64_t th = 0; th < T * H; th++) {
      const int64_t hk = Hk == 1 ? 0 : th % H;
      for (int64_t r = 0; r < k; r++) {
        for (int p = 0; p < 2; p++) {
          const int64_t row = (hk * 2 + p) * n + sub[(th * k + r) * 2 + p];
          if (row < lo || row >= hi) continue;
          V.axpy(dz[th * k + r], q + (th * 2 + p) * dh, dkeys + row * dh, dh);
        }
      }
    }
  });
  return info.Env().Undefined();
}

void check_indices(const Napi::CallbackInfo& info, const int32_t* idx, int64_t count, int64_t N) {
  for (int64_t i = 0; i < count; i++)
    if (idx[i] < 0 || idx[i] >= N) throw Napi::RangeError::New(info.Env(), "peer: expert index out of range");
}

// peerExpertsForward(x, u, v, idx, z, T, C, N, H, k, actKind, scoreKind, y, g, pre)
// y = sum_{h, r} g[t,h,r] * act(u_idx . x_t) * v_idx with g = router(z) per head. Writes y, g, pre.
Napi::Value js_experts_forward(const Napi::CallbackInfo& info) {
  const int64_t T = num(info, 5), C = num(info, 6), N = num(info, 7), H = num(info, 8), k = num(info, 9);
  const int actKind = static_cast<int>(num(info, 10)), scoreKind = static_cast<int>(num(info, 11));
  positive(info, {T, C, N, H, k});
  const int64_t E = T * H * k, M = H * k;
  const float* x = arg<float>(info, 0, T * C, "x");
  const float* u = arg<float>(info, 1, N * C, "u");
  const float* v = arg<float>(info, 2, N * C, "v");
  const int32_t* idx = arg<int32_t>(info, 3, E, "idx");
  const float* z = arg<float>(info, 4, E, "z");
  float* y = arg<float>(info, 12, T * C, "y");
  float* g = arg<float>(info, 13, E, "g");
  float* pre = arg<float>(info, 14, E, "pre");
  check_indices(info, idx, E, N);
  const Vec V = vec();
  parallel_for(T, [&](int64_t a, int64_t b) {
    for (int64_t t = a; t < b; t++) {
      const float* xt = x + t * C;
      float* yt = y + t * C;
      std::memset(yt, 0, C * sizeof(float));
      for (int64_t h = 0; h < H; h++) router(scoreKind, z + (t * H + h) * k, g + (t * H + h) * k, k);
      const int32_t* it = idx + t * M;
      for (int64_t m = 0; m < M; m++) {
        // Rows are random in a table far larger than the caches: fetch two retrievals ahead.
        if (m + 2 < M) { prefetch_row(u + int64_t(it[m + 2]) * C, C); prefetch_row(v + int64_t(it[m + 2]) * C, C); }
        const float s = V.dot(u + int64_t(it[m]) * C, xt, C);
        pre[t * M + m] = s;
        V.axpy(g[t * M + m] * act(actKind, s), v + int64_t(it[m]) * C, yt, C);
      }
    }
  });
  return info.Env().Undefined();
}

// peerExpertsBackwardTokens(u, v, idx, g, pre, dy, T, C, N, H, k, actKind, scoreKind, dx, dz, ds, w)
// Per token: dx, the raw-score gradient dz, and per occurrence ds = d(loss)/d(u . x) and w = g * act
// (the coefficients the row-gradient pass needs). Overwrites dx, dz, ds, w.
Napi::Value js_experts_backward_tokens(const Napi::CallbackInfo& info) {
  const int64_t T = num(info, 6), C = num(info, 7), N = num(info, 8), H = num(info, 9), k = num(info, 10);
  const int actKind = static_cast<int>(num(info, 11)), scoreKind = static_cast<int>(num(info, 12));
  positive(info, {T, C, N, H, k});
  const int64_t E = T * H * k, M = H * k;
  const float* u = arg<float>(info, 0, N * C, "u");
  const float* v = arg<float>(info, 1, N * C, "v");
  const int32_t* idx = arg<int32_t>(info, 2, E, "idx");
  const float* g = arg<float>(info, 3, E, "g");
  const float* pre = arg<float>(info, 4, E, "pre");
  const float* dy = arg<float>(info, 5, T * C, "dy");
  float* dx = arg<float>(info, 13, T * C, "dx");
  float* dz = arg<float>(info, 14, E, "dz");
  float* ds = arg<float>(info, 15, E, "ds");
  float* w = arg<float>(info, 16, E, "w");
  check_indices(info, idx, E, N);
  const Vec V = vec();
  parallel_for(T, [&](int64_t a, int64_t b) {
    std::vector<float> dg(k);
    for (int64_t t = a; t < b; t++) {
      const float* dyt = dy + t * C;
      float* dxt = dx + t * C;
      std::memset(dxt, 0, C * sizeof(float));
      const int32_t* it = idx + t * M;
      for (int64_t h = 0; h < H; h++) {
        for (int64_t r = 0; r < k; r++) {
          const int64_t m = h * k + r, o = t * M + m;
          if (m + 2 < M) { prefetch_row(u + int64_t(it[m + 2]) * C, C); prefetch_row(v + int64_t(it[m + 2]) * C, C); }
          const float s = pre[o], a_ = act(actKind, s);
          const float dyv = V.dot(dyt, v + int64_t(it[m]) * C, C);
          dg[r] = a_ * dyv;
          w[o] = g[o] * a_;
          ds[o] = g[o] * dyv * act_grad(actKind, s);
          V.axpy(ds[o], u + int64_t(it[m]) * C, dxt, C);
        }
        router_backward(scoreKind, g + (t * H + h) * k, dg.data(), dz + (t * H + h) * k, k);
      }
    }
  });
  return info.Env().Undefined();
}

// peerGroupRows(idx, E, N, rows, offsets, occ) -> U
// Groups the E occurrences by expert: rows[0..U) lists each touched expert once (in order of first
// use), occ[offsets[q]..offsets[q+1]) are the occurrences of rows[q], ascending.
Napi::Value js_group_rows(const Napi::CallbackInfo& info) {
  const int64_t E = num(info, 1), N = num(info, 2);
  positive(info, {E, N});
  const int32_t* idx = arg<int32_t>(info, 0, E, "idx");
  int32_t* rows = arg<int32_t>(info, 3, E, "rows");
  int32_t* offsets = arg<int32_t>(info, 4, E + 1, "offsets");
  int32_t* occ = arg<int32_t>(info, 5, E, "occ");
  check_indices(info, idx, E, N);
  std::vector<int32_t> slot(N, -1);
  std::vector<int32_t> count;
  count.reserve(E);
  int64_t U = 0;
  for (int64_t o = 0; o < E; o++) {
    int32_t& s = slot[idx[o]];
    if (s < 0) { s = static_cast<int32_t>(U); rows[U++] = idx[o]; count.push_back(0); }
    count[s]++;
  }
  offsets[0] = 0;
  for (int64_t q = 0; q < U; q++) offsets[q + 1] = offsets[q] + count[q];
  std::vector<int32_t> fill(offsets, offsets + U);
  for (int64_t o = 0; o < E; o++) occ[fill[slot[idx[o]]]++] = static_cast<int32_t>(o);
  return Napi::Number::New(info.Env(), static_cast<double>(U));
}

// peerRowGrads(offsets, occ, U, ds, w, x, dy, C, M, du, dv)
// du[q] = sum_o ds[o] x[t(o)], dv[q] = sum_o w[o] dy[t(o)] over the occurrences of row q, where
// t(o) = o / M (M = H * k occurrences per token). Overwrites du, dv [U, C].
Napi::Value js_row_grads(const Napi::CallbackInfo& info) {
  const int64_t U = num(info, 2), C = num(info, 7), M = num(info, 8);
  positive(info, {U, C, M});
  const int32_t* offsets = arg<int32_t>(info, 0, U + 1, "offsets");
  const int64_t E = offsets[U];
  const int32_t* occ = arg<int32_t>(info, 1, E, "occ");
  const float* ds = arg<float>(info, 3, E, "ds");
  const float* w = arg<float>(info, 4, E, "w");
  size_t xl, dyl;
  const float* x = f32(info, 5, &xl);
  const float* dy = f32(info, 6, &dyl);
  float* du = arg<float>(info, 9, U * C, "du");
  float* dv = arg<float>(info, 10, U * C, "dv");
  for (int64_t i = 0; i < E; i++)
    if (occ[i] < 0 || (occ[i] / M + 1) * C > static_cast<int64_t>(std::min(xl, dyl)))
      throw Napi::RangeError::New(info.Env(), "peer: occurrence out of range");
  const Vec V = vec();
  parallel_for(U, [&](int64_t a, int64_t b) {
    for (int64_t q = a; q < b; q++) {
      float* duq = du + q * C;
      float* dvq = dv + q * C;
      std::memset(duq, 0, C * sizeof(float));
      std::memset(dvq, 0, C * sizeof(float));
      for (int32_t e = offsets[q]; e < offsets[q + 1]; e++) {
        const int64_t o = occ[e], t = o / M;
        V.axpy(ds[o], x + t * C, duq, C);
        V.axpy(w[o], dy + t * C, dvq, C);
      }
    }
  });
  return info.Env().Undefined();
}

// ---- factored row gradients ---------------------------------------------------------------------
// A factored row gradient is a sum of rank-1 terms: term r adds coef[r] * basis[token[r]] to row
// slot[r] of a [U, C] row block (slot indexes the unique row list). Each expert-table gradient of
// PEER has this form (one term per retrieval), so it can be kept as O(R) scalars plus a [B, C] basis
// instead of U x C values; the kernels below build one row at a time from its terms.
struct Factored {
  const int32_t* slot;
  const int32_t* token;
  const float* coef;
  const float* basis;
  int64_t R, U, B, C;
  // Terms grouped by slot: order[offsets[q]..offsets[q+1]) are row q's terms, ascending (a stable
  // counting sort), so a row sums its terms in the order the materialized kernel used.
  std::vector<int32_t> offsets, order;
  void group() {
    offsets.assign(U + 1, 0);
    for (int64_t r = 0; r < R; r++) offsets[slot[r] + 1]++;
    for (int64_t q = 0; q < U; q++) offsets[q + 1] += offsets[q];
    order.resize(R);
    std::vector<int32_t> fill(offsets.begin(), offsets.end() - 1);
    for (int64_t r = 0; r < R; r++) order[fill[slot[r]]++] = static_cast<int32_t>(r);
  }
  // Writes row q's gradient into out[C] (overwrites).
  void row(const Vec& V, int64_t q, float* out) const {
    std::memset(out, 0, C * sizeof(float));
    for (int32_t e = offsets[q]; e < offsets[q + 1]; e++) {
      const int32_t r = order[e];
      V.axpy(coef[r], basis + int64_t(token[r]) * C, out, C);
    }
  }
};

// Arguments 0..6 of every factored kernel: slot, token, coef, basis, R, U, C.
Factored factored_args(const Napi::CallbackInfo& info) {
  const int64_t R = num(info, 4), U = num(info, 5), C = num(info, 6);
  positive(info, {R, U, C});
  Factored f{};
  f.R = R; f.U = U; f.C = C;
  f.slot = arg<int32_t>(info, 0, R, "slot");
  f.token = arg<int32_t>(info, 1, R, "token");
  f.coef = arg<float>(info, 2, R, "coef");
  size_t bl;
  f.basis = f32(info, 3, &bl);
  f.B = static_cast<int64_t>(bl) / C;
  for (int64_t r = 0; r < R; r++) {
    if (f.slot[r] < 0 || f.slot[r] >= U) throw Napi::RangeError::New(info.Env(), "peer: factored gradient slot out of range");
    if (f.token[r] < 0 || f.token[r] >= f.B) throw Napi::RangeError::New(info.Env(), "peer: factored gradient token out of range");
  }
  f.group();
  return f;
}

// peerFactoredRows(slot, token, coef, basis, R, U, C, out, rows, N)
// rows null: out [U, C] gets row q at q (overwrites). rows (i32 [U], unique, < N): out [N, C] gets
// row q added at rows[q] (densify).
Napi::Value js_factored_rows(const Napi::CallbackInfo& info) {
  const Factored f = factored_args(info);
  const int64_t C = f.C, U = f.U;
  const bool scatter = !info[8].IsNull() && !info[8].IsUndefined();
  const int64_t N = scatter ? num(info, 9) : U;
  float* out = arg<float>(info, 7, N * C, "out");
  const int32_t* rows = scatter ? arg<int32_t>(info, 8, U, "rows") : nullptr;
  if (scatter) check_indices(info, rows, U, N);
  const Vec V = vec();
  parallel_for(U, [&](int64_t a, int64_t b) {
    std::vector<float> tmp(scatter ? C : 0);
    for (int64_t q = a; q < b; q++) {
      if (!scatter) { f.row(V, q, out + q * C); continue; }
      f.row(V, q, tmp.data());
      float* dst = out + int64_t(rows[q]) * C;
      for (int64_t c = 0; c < C; c++) dst[c] += tmp[c];
    }
  });
  return info.Env().Undefined();
}

// peerFactoredSumSquares(slot, token, coef, basis, R, U, C) -> sum over rows of |row|^2 (double).
Napi::Value js_factored_sum_squares(const Napi::CallbackInfo& info) {
  const Factored f = factored_args(info);
  const int64_t tasks = std::min<int64_t>(f.U, 4 * num_threads());
  std::vector<double> part(tasks, 0.0);
  const Vec V = vec();
  parallel_tasks(tasks, [&](int64_t t) {
    std::vector<float> tmp(f.C);
    double s = 0;
    for (int64_t q = t * f.U / tasks; q < (t + 1) * f.U / tasks; q++) {
      f.row(V, q, tmp.data());
      for (int64_t c = 0; c < f.C; c++) s += double(tmp[c]) * tmp[c];
    }
    part[t] = s;
  });
  double s = 0;
  for (double p : part) s += p;
  return Napi::Number::New(info.Env(), s);
}

// peerFactoredAdamw(slot, token, coef, basis, R, U, C, rows, N, w, m, v, lr, b1, b2, eps, wd, step, gradScale)
// Lazy AdamW on the touched rows rows[q] of w, m, v [N, C] (PyTorch semantics, as the dense
// kernel): each row's gradient is built from its terms in a per-thread scratch row, so no [U, C]
// gradient block exists. Rows must be unique.
Napi::Value js_factored_adamw(const Napi::CallbackInfo& info) {
  const Factored f = factored_args(info);
  const int64_t C = f.C, U = f.U, N = num(info, 8);
  positive(info, {N});
  const int32_t* rows = arg<int32_t>(info, 7, U, "rows");
  float* w = arg<float>(info, 9, N * C, "w");
  float* m = arg<float>(info, 10, N * C, "m");
  float* v = arg<float>(info, 11, N * C, "v");
  check_indices(info, rows, U, N);
  {
    std::vector<uint8_t> seen(N, 0);
    for (int64_t q = 0; q < U; q++) {
      if (seen[rows[q]]) throw Napi::RangeError::New(info.Env(), "peer: factored gradient rows must be unique");
      seen[rows[q]] = 1;
    }
  }
  // Same constants and per-element formula as the elementwise (dense) AdamW kernel.
  const float lr = static_cast<float>(dnum(info, 12)), b1 = static_cast<float>(dnum(info, 13));
  const float b2 = static_cast<float>(dnum(info, 14)), fe = static_cast<float>(dnum(info, 15));
  const float wd = static_cast<float>(dnum(info, 16)), scale = static_cast<float>(dnum(info, 18));
  const double stepNo = dnum(info, 17);
  const float bc1 = static_cast<float>(1 - std::pow(static_cast<double>(b1), stepNo));
  const float bc2 = static_cast<float>(1 - std::pow(static_cast<double>(b2), stepNo));
  const float stepSize = lr / bc1, ib2 = 1.0f / bc2, decay = 1 - lr * wd;
  const Vec V = vec();
  parallel_for(U, [&](int64_t a, int64_t b) {
    std::vector<float> g(C);
    for (int64_t q = a; q < b; q++) {
      if (q + 1 < b) {
        const int64_t nx = int64_t(rows[q + 1]) * C;
        prefetch_row(w + nx, C); prefetch_row(m + nx, C); prefetch_row(v + nx, C);
      }
      f.row(V, q, g.data());
      const int64_t base = int64_t(rows[q]) * C;
      float* wr = w + base;
      float* mr = m + base;
      float* vr = v + base;
      for (int64_t c = 0; c < C; c++) {
        const float gg = g[c] * scale;
        mr[c] = b1 * mr[c] + (1 - b1) * gg;
        vr[c] = b2 * vr[c] + (1 - b2) * gg * gg;
        wr[c] = wr[c] * decay - stepSize * mr[c] / (std::sqrt(vr[c] * ib2) + fe);
      }
    }
  });
  return info.Env().Undefined();
}

// peerAdviseHugePages(array): asks the kernel to back the array's 2 MiB-aligned interior with
// transparent huge pages (expert tables and their row gradients are read and written at random
// rows; 4 KiB pages make nearly every row a TLB miss and every first touch a page fault). Only
// memory touched after the call benefits. Returns the number of bytes advised (0 if unsupported).
Napi::Value js_advise_huge_pages(const Napi::CallbackInfo& info) {
  double advised = 0;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  size_t len;
  float* p = f32(info, 0, &len);
  const uintptr_t huge = 2u << 20, a = reinterpret_cast<uintptr_t>(p), e = a + len * sizeof(float);
  const uintptr_t lo = (a + huge - 1) & ~(huge - 1), hi = e & ~(huge - 1);
  if (hi > lo && madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE) == 0) advised = static_cast<double>(hi - lo);
#endif
  return Napi::Number::New(info.Env(), advised);
}

Napi::Value js_isa(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), isa_name(has_avx512() ? kAvx512 : kScalar));  // no AVX2 build here
}

}  // namespace

FRUGAL_EXPORT("peerTopkPairs", js_topk_pairs)
FRUGAL_EXPORT("peerTopkMerge", js_topk_merge)
FRUGAL_EXPORT("peerRetrieveBackward", js_retrieve_backward)
FRUGAL_EXPORT("peerExpertsForward", js_experts_forward)
FRUGAL_EXPORT("peerExpertsBackwardTokens", js_experts_backward_tokens)
FRUGAL_EXPORT("peerGroupRows", js_group_rows)
FRUGAL_EXPORT("peerRowGrads", js_row_grads)
FRUGAL_EXPORT("peerFactoredRows", js_factored_rows)
FRUGAL_EXPORT("peerFactoredSumSquares", js_factored_sum_squares)
FRUGAL_EXPORT("peerFactoredAdamw", js_factored_adamw)
FRUGAL_EXPORT("peerIsa", js_isa)
FRUGAL_EXPORT("peerAdviseHugePages", js_advise_huge_pages)
}  // namespace peer
}  // namespace frugal
