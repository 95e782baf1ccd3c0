// Packed 1-bit FBI-Linear inference kernels.
//
// A binarized weight row i is stored as sign bits (1 = positive, 0 = negative), row-major, 32 per
// uint32 word, rows padded with zero bits to whole words. With s_ij = +-1,
//   y_ti = sum_j s_ij u_tj            where u = alpha (.) x for "column" scales, else u = x
//        = 2 * P_ti - U_t,            P_ti = sum of u_tj over the set bits, U_t = sum_j u_tj
// and then, per scale pattern:
//   column: y_ti = (2 P_ti - U_t) + beta . x_t
//   row:    y_ti = alpha_i (2 P_ti - U_t) + beta_i sum(x_t)
//   single: y_ti = alpha (2 P_ti - U_t) + beta sum(x_t)
// P is a masked sum: AVX-512 adds 16 activations under a 16-bit mask register straight from the
// weight bits (one masked add per 16 weights); AVX2 turns each byte into an 8-lane mask through a
// 256-entry table and adds with an AND; the portable path precomputes, for each group of 8
// activations, the 256 possible subset sums, so each row costs one table lookup per 8 weights.
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "isa.h"
#include "packed_matmul_args.h"
#include "registry.h"
#include "threadpool.h"

namespace frugal {
namespace fbi {
namespace {

struct Problem {
  const float* u;      // [M, kpad] pre-scaled activations, zero past K
  const uint32_t* bits;  // [N, wpr]
  int64_t M, N, K, kpad, wpr;
  float* p;            // [M, N] masked sums P
};

// ---- portable path: per-token lookup tables over groups of 8 activations -------------------
void masked_sums_scalar(const Problem& pr) {
  const int64_t groups = pr.kpad / 8;
  std::vector<float> table(static_cast<size_t>(groups) * 256);
  for (int64_t t = 0; t < pr.M; t++) {
    const float* u = pr.u + t * pr.kpad;
    // table[g][b] = sum of u[8g + k] over the set bits k of b, built from the sum without b's lowest bit.
    parallel_for(groups, [&](int64_t g0, int64_t g1) {
      for (int64_t g = g0; g < g1; g++) {
        float* tg = table.data() + g * 256;
        tg[0] = 0.0f;
        for (int b = 1; b < 256; b++) tg[b] = tg[b & (b - 1)] + u[8 * g + __builtin_ctz(b)];
      }
    });
    parallel_for(pr.N, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; i++) {
        const uint8_t* row = reinterpret_cast<const uint8_t*>(pr.bits + i * pr.wpr);
        float acc = 0.0f;
        for (int64_t g = 0; g < groups; g++) acc += table[g * 256 + row[g]];
        pr.p[t * pr.N + i] = acc;
      }
    });
  }
}

#if defined(__x86_64__)
// ---- AVX-512: masked adds under mask registers taken from the weight bits ------------------
template <int T, int R>
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void tile512(const Problem& pr, int64_t t0, int64_t i0) {
  __m512 acc[T][R];
  for (int a = 0; a < T; a++)
    for (int r = 0; r < R; r++) acc[a][r] = _mm512_setzero_ps();
  const uint16_t* rows[R];
  for (int r = 0; r < R; r++) rows[r] = reinterpret_cast<const uint16_t*>(pr.bits + (i0 + r) * pr.wpr);
  const int64_t chunks = pr.kpad / 16;
  for (int64_t c = 0; c < chunks; c++) {
    __mmask16 m[R];
    for (int r = 0; r < R; r++) m[r] = rows[r][c];
    for (int a = 0; a < T; a++) {
      __m512 u = _mm512_loadu_ps(pr.u + (t0 + a) * pr.kpad + 16 * c);
      for (int r = 0; r < R; r++) acc[a][r] = _mm512_mask_add_ps(acc[a][r], m[r], acc[a][r], u);
    }
  }
  for (int a = 0; a < T; a++)
    for (int r = 0; r < R; r++) pr.p[(t0 + a) * pr.N + i0 + r] = _mm512_reduce_add_ps(acc[a][r]);
}

// ---- AVX2: byte -> 8-lane mask through a table, AND, add ------------------------------------
struct ByteMasks {
  alignas(32) int32_t m[256][8];
  ByteMasks() {
    for (int b = 0; b < 256; b++)
      for (int k = 0; k < 8; k++) m[b][k] = (b >> k) & 1 ? -1 : 0;
  }
};
const ByteMasks kByteMasks;

__attribute__((target("avx2,fma"))) inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <int T, int R>
__attribute__((target("avx2,fma"))) inline void tile256(const Problem& pr, int64_t t0, int64_t i0) {
  __m256 acc[T][R];
  for (int a = 0; a < T; a++)
    for (int r = 0; r < R; r++) acc[a][r] = _mm256_setzero_ps();
  const uint8_t* rows[R];
  for (int r = 0; r < R; r++) rows[r] = reinterpret_cast<const uint8_t*>(pr.bits + (i0 + r) * pr.wpr);
  const int64_t chunks = pr.kpad / 8;
  for (int64_t c = 0; c < chunks; c++) {
    __m256 m[R];
    for (int r = 0; r < R; r++) m[r] = _mm256_load_ps(reinterpret_cast<const float*>(kByteMasks.m[rows[r][c]]));
    for (int a = 0; a < T; a++) {
      __m256 u = _mm256_loadu_ps(pr.u + (t0 + a) * pr.kpad + 8 * c);
      for (int r = 0; r < R; r++) acc[a][r] = _mm256_add_ps(acc[a][r], _mm256_and_ps(m[r], u));
    }
  }
  for (int a = 0; a < T; a++)
    for (int r = 0; r < R; r++) pr.p[(t0 + a) * pr.N + i0 + r] = hsum256(acc[a][r]);
}

// Tiles of T tokens x R rows; rows are split over threads, tokens walked in groups that stay in cache.
template <int T, int R, void (*Tile)(const Problem&, int64_t, int64_t), void (*Tile1)(const Problem&, int64_t, int64_t)>
void masked_sums_simd(const Problem& pr) {
  const int64_t group = 64;
  for (int64_t g0 = 0; g0 < pr.M; g0 += group) {
    const int64_t g1 = std::min(pr.M, g0 + group);
    const int64_t blocks = (pr.N + R - 1) / R;
    parallel_for(blocks, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; b++) {
        const int64_t i0 = b * R;
        const bool full = i0 + R <= pr.N;
        int64_t t = g0;
        if (full)
          for (; t + T <= g1; t += T) Tile(pr, t, i0);
        for (; t < g1; t++)
          for (int64_t i = i0; i < std::min(pr.N, i0 + R); i++) Tile1(pr, t, i);
      }
    });
  }
}

#endif

void masked_sums(const Problem& pr, int isa) {
#if defined(__x86_64__)
  if (isa == kAvx512) {
    if (pr.M == 1) masked_sums_simd<1, 4, tile512<1, 4>, tile512<1, 1>>(pr);
    else masked_sums_simd<4, 4, tile512<4, 4>, tile512<1, 1>>(pr);
  } else if (isa == kAvx2) {
    if (pr.M == 1) masked_sums_simd<1, 8, tile256<1, 8>, tile256<1, 1>>(pr);
    else masked_sums_simd<3, 4, tile256<3, 4>, tile256<1, 1>>(pr);
  } else
#endif
  {
    masked_sums_scalar(pr);
  }
}

int64_t row_major_words(int64_t K, int64_t N) { return N * ((K + 31) / 32); }

// fbiPackedMatmul(x f32 [M,K], bits u32 [N,wpr], alpha, beta, pattern, M, K, N, y f32 [M,N], isa):
// the arguments as in packed_matmul_args.h, the weights as row-major sign bits.
Napi::Value PackedMatmul(const Napi::CallbackInfo& info) {
  const PackedMatmulArgs a(info, "fbiPackedMatmul", row_major_words, cpu_has);
  const int64_t M = a.M, K = a.K, N = a.N;
  if (M == 0) return info.Env().Undefined();

  const int64_t wpr = (K + 31) / 32, kpad = wpr * 32;
  std::vector<float> u(static_cast<size_t>(M * kpad), 0.0f), usum(M), bias(M);
  for (int64_t t = 0; t < M; t++) {
    float* ut = u.data() + t * kpad;
    bias[t] = a.scale_inputs(t, ut);
    double su = 0;
    for (int64_t j = 0; j < K; j++) su += ut[j];
    usum[t] = static_cast<float>(su);
  }
  Problem pr{u.data(), a.w, M, N, K, kpad, wpr, a.y};
  masked_sums(pr, a.isa);
  for (int64_t t = 0; t < M; t++) {
    float* yt = a.y + t * N;
    for (int64_t i = 0; i < N; i++) yt[i] = a.output(i, 2.0f * yt[i] - usum[t], bias[t]);
  }
  return info.Env().Undefined();
}

// fbiUnpack(bits u32 [N,wpr], alpha, beta, pattern, K, N, w f32 [N,K]): w = alpha * s + beta.
Napi::Value Unpack(const Napi::CallbackInfo& info) {
  size_t bn, an, betan, wn;
  const uint32_t* bits = u32(info, 0, &bn);
  const float* alpha = f32(info, 1, &an);
  const float* beta = f32(info, 2, &betan);
  const int pattern = static_cast<int>(num(info, 3));
  const int64_t K = num(info, 4), N = num(info, 5);
  float* w = f32(info, 6, &wn);
  const int64_t wpr = (K + 31) / 32;
  const int64_t nscale = pattern == 0 ? K : pattern == 1 ? N : 1;
  if (pattern < 0 || pattern > 2 || K <= 0 || N <= 0 || static_cast<int64_t>(bn) < N * wpr ||
      static_cast<int64_t>(an) < nscale || static_cast<int64_t>(betan) < nscale || static_cast<int64_t>(wn) < N * K)
    throw Napi::RangeError::New(info.Env(), "fbiUnpack: bad sizes or pattern");
  parallel_for(N, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) {
      const uint32_t* row = bits + i * wpr;
      float* wi = w + i * K;
      for (int64_t j = 0; j < K; j++) {
        const int64_t q = pattern == 0 ? j : pattern == 1 ? i : 0;
        const float s = (row[j >> 5] >> (j & 31)) & 1u ? 1.0f : -1.0f;
        wi[j] = alpha[q] * s + beta[q];
      }
    }
  });
  return info.Env().Undefined();
}

// fbiPackSigns(w f32 [N,K], K, N, bits u32 [N,wpr]): bit = 1 where w > 0.
Napi::Value PackSigns(const Napi::CallbackInfo& info) {
  size_t wn, bn;
  const float* w = f32(info, 0, &wn);
  const int64_t K = num(info, 1), N = num(info, 2);
  uint32_t* bits = u32(info, 3, &bn);
  const int64_t wpr = (K + 31) / 32;
  if (K <= 0 || N <= 0 || static_cast<int64_t>(wn) < N * K || static_cast<int64_t>(bn) < N * wpr)
    throw Napi::RangeError::New(info.Env(), "fbiPackSigns: bad sizes");
  parallel_for(N, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) {
      uint32_t* row = bits + i * wpr;
      std::memset(row, 0, wpr * sizeof(uint32_t));
      const float* wi = w + i * K;
      for (int64_t j = 0; j < K; j++)
        if (wi[j] > 0.0f) row[j >> 5] |= 1u << (j & 31);
    }
  });
  return info.Env().Undefined();
}

Napi::Value IsaName(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), isa_name(cpu_isa())); }

Napi::Value IsaAvailable(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), cpu_has(static_cast<int>(num(info, 0))));
}

}  // namespace
}  // namespace fbi
}  // namespace frugal

FRUGAL_EXPORT("fbiPackedMatmul", frugal::fbi::PackedMatmul)
FRUGAL_EXPORT("fbiUnpack", frugal::fbi::Unpack)
FRUGAL_EXPORT("fbiPackSigns", frugal::fbi::PackSigns)
FRUGAL_EXPORT("fbiIsa", frugal::fbi::IsaName)
FRUGAL_EXPORT("fbiIsaAvailable", frugal::fbi::IsaAvailable)
