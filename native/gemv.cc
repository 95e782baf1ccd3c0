// Small-M products (M <= 8, A not transposed): the decode-time shape of every linear layer.
#include <algorithm>
#include <cstdint>

#include "isa.h"
#include "registry.h"
#include "threadpool.h"

namespace frugal {
namespace gemv {
#define FRUGAL_ISA_IMPL "gemv_impl.h"
#include "isa_variants.h"

namespace {
using Fn = void (*)(int64_t, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float,
                    float*, int64_t);
Fn pick(bool transB) { return transB ? FRUGAL_ISA_PICK(gemv_t) : FRUGAL_ISA_PICK(gemv_n); }

// sgemvSmall(transB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc); bounds are
// checked by the TS caller (src/backend/cpu/gemm.ts) before any call.
Napi::Value js_sgemv_small(const Napi::CallbackInfo& info) {
  bool transB = info[0].As<Napi::Boolean>().Value();
  int64_t M = num(info, 1), N = num(info, 2), K = num(info, 3);
  float alpha = (float)dnum(info, 4);
  const float* A = f32(info, 5) + num(info, 6);
  int64_t lda = num(info, 7);
  const float* B = f32(info, 8) + num(info, 9);
  int64_t ldb = num(info, 10);
  float beta = (float)dnum(info, 11);
  float* C = f32(info, 12) + num(info, 13);
  int64_t ldc = num(info, 14);
  Fn fn = pick(transB);
  // Column blocks of 256 (the accumulator width of gemv_n); enough blocks to feed every thread.
  const int64_t blk = 256, blocks = (N + blk - 1) / blk;
  if (M * N * K < (1 << 16)) {
    for (int64_t b = 0; b < blocks; b++) fn(M, b * blk, std::min(N, (b + 1) * blk), K, alpha, A, lda, B, ldb, beta, C, ldc);
  } else {
    parallel_tasks(blocks, [&](int64_t b) { fn(M, b * blk, std::min(N, (b + 1) * blk), K, alpha, A, lda, B, ldb, beta, C, ldc); });
  }
  return info.Env().Undefined();
}
}  // namespace
FRUGAL_EXPORT("sgemvSmall", js_sgemv_small)
}  // namespace gemv
}  // namespace frugal
