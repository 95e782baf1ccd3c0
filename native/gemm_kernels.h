// Register-tiled SGEMM microkernels: C[mr, nr] = alpha * Ap[MR, kc] . Bp[kc, NR] + beta * C.
// Ap is packed k-major in MR-row panels (Ap[k * MR + r]), Bp k-major in NR-column panels (Bp[k * NR + c]),
// both zero padded, so the hot loop never branches on edges; only the store looks at mr/nr.
// beta == 0 never reads C (C may hold NaN/garbage, as BLAS allows).
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace frugal {
namespace gemm {

using KernelFn = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                          float beta, int mr, int nr);

// Writes a full MR x NR tile computed into `tile` to C for the valid mr x nr corner.
template <int NR>
inline void store_tile(const float* tile, float* c, int64_t ldc, float alpha, float beta, int mr, int nr) {
  for (int i = 0; i < mr; i++) {
    float* ci = c + i * ldc;
    const float* ti = tile + i * NR;
    if (beta == 0.0f)
      for (int j = 0; j < nr; j++) ci[j] = alpha * ti[j];
    else
      for (int j = 0; j < nr; j++) ci[j] = alpha * ti[j] + beta * ci[j];
  }
}

// Portable path: plain loops the compiler may vectorize with the baseline ISA.
constexpr int kScalarMR = 4, kScalarNR = 16;
inline void kernel_scalar(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                          float beta, int mr, int nr) {
  float acc[kScalarMR][kScalarNR] = {};
  for (int64_t k = 0; k < kc; k++) {
    const float* bk = b + k * kScalarNR;
    const float* ak = a + k * kScalarMR;
    for (int i = 0; i < kScalarMR; i++)
      for (int j = 0; j < kScalarNR; j++) acc[i][j] += ak[i] * bk[j];
  }
  store_tile<kScalarNR>(&acc[0][0], c, ldc, alpha, beta, mr, nr);
}

#if defined(__x86_64__)
// AVX2 + FMA: 6 x 16 tile = 12 ymm accumulators, 2 B loads and 6 broadcasts per k.
constexpr int kAvx2MR = 6, kAvx2NR = 16;
__attribute__((target("avx2,fma"))) inline void kernel_avx2(int64_t kc, const float* a, const float* b, float* c,
                                                             int64_t ldc, float alpha, float beta, int mr,
                                                             int nr) {
  __m256 acc[kAvx2MR][2];
#pragma GCC unroll 6
  for (int i = 0; i < kAvx2MR; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; k++) {
    __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
    for (int i = 0; i < kAvx2MR; i++) {
      __m256 ai = _mm256_broadcast_ss(a + i);
      acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
    }
    a += kAvx2MR;
    b += kAvx2NR;
  }
  __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  if (mr == kAvx2MR && nr == kAvx2NR) {
#pragma GCC unroll 6
    for (int i = 0; i < kAvx2MR; i++) {
      float* ci = c + i * ldc;
      __m256 r0 = _mm256_mul_ps(va, acc[i][0]), r1 = _mm256_mul_ps(va, acc[i][1]);
      if (beta != 0.0f) {
        r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), r0);
        r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8), r1);
      }
      _mm256_storeu_ps(ci, r0);
      _mm256_storeu_ps(ci + 8, r1);
    }
    return;
  }
  alignas(32) float tile[kAvx2MR * kAvx2NR];
  for (int i = 0; i < kAvx2MR; i++) {
    _mm256_store_ps(tile + i * kAvx2NR, acc[i][0]);
    _mm256_store_ps(tile + i * kAvx2NR + 8, acc[i][1]);
  }
  store_tile<kAvx2NR>(tile, c, ldc, alpha, beta, mr, nr);
}

// AVX-512: 14 x 32 tile = 28 zmm accumulators; each k loads 2 B vectors and feeds 28 FMAs whose A
// operand is an embedded broadcast from memory, so the FMA ports (2 per core) stay the bottleneck.
constexpr int kAvx512MR = 14, kAvx512NR = 32;
__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma"))) inline void kernel_avx512(
    int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float beta, int mr, int nr) {
  __m512 acc[kAvx512MR][2];
#pragma GCC unroll 14
  for (int i = 0; i < kAvx512MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  // Pull the C tile toward L1 while the k loop runs; the store at the end then rarely misses.
  for (int i = 0; i < mr; i++) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16), _MM_HINT_T0);
  }
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; k++) {
    __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
    _mm_prefetch(reinterpret_cast<const char*>(b + 8 * kAvx512NR), _MM_HINT_T0);
#pragma GCC unroll 14
    for (int i = 0; i < kAvx512MR; i++) {
      __m512 ai = _mm512_set1_ps(a[i]);
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
    }
    a += kAvx512MR;
    b += kAvx512NR;
  }
  __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  // Masked loads/stores cover the N edge; rows past mr are skipped.
  __mmask16 m0 = nr >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << nr) - 1);
  __mmask16 m1 = nr >= 32 ? __mmask16(0xFFFF) : nr <= 16 ? __mmask16(0) : __mmask16((1u << (nr - 16)) - 1);
#pragma GCC unroll 14
  for (int i = 0; i < kAvx512MR; i++) {
    if (i >= mr) break;
    float* ci = c + i * ldc;
    __m512 r0 = _mm512_mul_ps(va, acc[i][0]), r1 = _mm512_mul_ps(va, acc[i][1]);
    if (beta != 0.0f) {
      r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), r0);
      r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), r1);
    }
    _mm512_mask_storeu_ps(ci, m0, r0);
    _mm512_mask_storeu_ps(ci + 16, m1, r1);
  }
}
#endif

}  // namespace gemm
}  // namespace frugal
