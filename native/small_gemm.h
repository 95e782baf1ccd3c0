// The small GEMM of the fused kernels, C[m, n] (+)= A(m x kk) B[kk, n], for products too small for
// the packed SGEMM (gemm.cc): every product of the TTT scan forward (float) and backward (double)
// and of the attention tiles (float). Written once for an element type T with 64-byte GCC vector
// types (16 floats or 8 doubles). No include guard on purpose: like vec16.h it is included by each
// *_impl.h inside its instruction-set namespace, so each copy compiles for that target. Needs <cstdint>.
//
// A(i, k) = A[i * sam + k * sak], so A may be read transposed; B is row-major with ldb. An R x NV
// block of C stays in registers across the k loop; columns go in blocks of 4, 3, 2 or 1 vectors,
// then a scalar tail. Without `accumulate` C is overwritten instead of added to. Every element of C
// sums its k terms in order, whatever R, so the block shape never changes a result.

template <typename T, int R, int NV>
static inline void small_gemm_block(int64_t m, int64_t kk, const T* A, int64_t sam, int64_t sak, const T* B, int64_t ldb,
                                    T* C, int64_t ldc, bool accumulate) {
  typedef T vec __attribute__((vector_size(64)));
  typedef T vecu __attribute__((vector_size(64), aligned(sizeof(T))));
  constexpr int W = 64 / sizeof(T);
  int64_t i = 0;
  for (; i + R <= m; i += R) {
    vec c[R][NV];
    for (int r = 0; r < R; r++)
      for (int v = 0; v < NV; v++) c[r][v] = accumulate ? *reinterpret_cast<const vecu*>(C + (i + r) * ldc + W * v) : vec{};
    for (int64_t k = 0; k < kk; k++) {
      vec b[NV];
      for (int v = 0; v < NV; v++) b[v] = *reinterpret_cast<const vecu*>(B + k * ldb + W * v);
      for (int r = 0; r < R; r++) {
        const T x = A[(i + r) * sam + k * sak];
        for (int v = 0; v < NV; v++) c[r][v] += x * b[v];
      }
    }
    for (int r = 0; r < R; r++)
      for (int v = 0; v < NV; v++) *reinterpret_cast<vecu*>(C + (i + r) * ldc + W * v) = c[r][v];
  }
  if constexpr (R > 1) {
    if (i < m) small_gemm_block<T, 1, NV>(m - i, kk, A + i * sam, sam, sak, B, ldb, C + i * ldc, ldc, accumulate);
  }
}

template <typename T, int R>
static inline void small_gemm(int64_t m, int64_t n, int64_t kk, const T* A, int64_t sam, int64_t sak, const T* B,
                              int64_t ldb, T* C, int64_t ldc, bool accumulate = true) {
  constexpr int64_t W = 64 / sizeof(T);
  int64_t j = 0;
  for (; j + 4 * W <= n; j += 4 * W) small_gemm_block<T, R, 4>(m, kk, A, sam, sak, B + j, ldb, C + j, ldc, accumulate);
  const int64_t rest = (n - j) / W;
  switch (rest) {
    case 3: small_gemm_block<T, R, 3>(m, kk, A, sam, sak, B + j, ldb, C + j, ldc, accumulate); break;
    case 2: small_gemm_block<T, R, 2>(m, kk, A, sam, sak, B + j, ldb, C + j, ldc, accumulate); break;
    case 1: small_gemm_block<T, R, 1>(m, kk, A, sam, sak, B + j, ldb, C + j, ldc, accumulate); break;
    default: break;
  }
  j += W * rest;
  if (j == n) return;
  for (int64_t i = 0; i < m; i++) {
    if (!accumulate)
      for (int64_t c = j; c < n; c++) C[i * ldc + c] = T(0);
    for (int64_t k = 0; k < kk; k++) {
      const T x = A[i * sam + k * sak];
      for (int64_t c = j; c < n; c++) C[i * ldc + c] += x * B[k * ldb + c];
    }
  }
}
