// Small-M matrix products (decode: one or a few rows times a weight matrix) are memory-bound; the
// packed GEMM's panel packing would dominate, so these stream B once. Included three times by
// gemv.cc under different `#pragma GCC target` settings.
#include "vec16.h"

// C[m, n] = alpha * A[m, :] . B[n, :] + beta * C[m, n] for n in [n0, n1) (B stored [N, K]).
static void gemv_t(int64_t M, int64_t n0, int64_t n1, int64_t K, float alpha, const float* A, int64_t lda,
                   const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  for (int64_t n = n0; n < n1; n++) {
    const float* b = B + n * ldb;
    for (int64_t m = 0; m < M; m++) {
      const float* a = A + m * lda;
      v16 acc0 = v16{}, acc1 = v16{};
      int64_t k = 0;
      for (; k + 32 <= K; k += 32) {
        acc0 += ld(a + k) * ld(b + k);
        acc1 += ld(a + k + 16) * ld(b + k + 16);
      }
      for (; k + 16 <= K; k += 16) acc0 += ld(a + k) * ld(b + k);
      acc0 += acc1;
      float s = 0;
      for (int i = 0; i < 16; i++) s += acc0[i];
      for (; k < K; k++) s += a[k] * b[k];
      float* c = C + m * ldc + n;
      *c = beta == 0.0f ? alpha * s : alpha * s + beta * *c;
    }
  }
}

// C[m, n0:n1] = alpha * A[m, :] @ B[:, n0:n1] + beta * C (B stored [K, N]); n1 - n0 <= 256.
static void gemv_n(int64_t M, int64_t n0, int64_t n1, int64_t K, float alpha, const float* A, int64_t lda,
                   const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  float acc[256];
  const int64_t w = n1 - n0;
  for (int64_t m = 0; m < M; m++) {
    for (int64_t j = 0; j < w; j++) acc[j] = 0.0f;
    const float* a = A + m * lda;
    for (int64_t k = 0; k < K; k++) {
      const float av = a[k];
      const float* b = B + k * ldb + n0;
      int64_t j = 0;
      for (; j + 16 <= w; j += 16) st(acc + j, ld(acc + j) + av * ld(b + j));
      for (; j < w; j++) acc[j] += av * b[j];
    }
    float* c = C + m * ldc + n0;
    for (int64_t j = 0; j < w; j++) c[j] = beta == 0.0f ? alpha * acc[j] : alpha * acc[j] + beta * c[j];
  }
}
