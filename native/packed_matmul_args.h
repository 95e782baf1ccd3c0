// The arguments the packed 1-bit products share, read and checked in one place:
//   fbiPackedMatmul (fbi.cc)  and  fbiInt8Matmul (fbi_int8.cc)
//   (x f32 [M,K], weights u32, alpha f32, beta f32, pattern 0 column | 1 row | 2 single,
//    M, K, N, y f32 [M,N], isa 0 auto | 1 scalar | 2 avx2 | 3 avx512)
// Only the weight layout differs (row-major bits or the interleaved words), so the caller says how
// many words it needs. Both then compute y_ti = (2 P_ti - U_t) scaled and shifted per pattern, the
// part written here once too (`scale_inputs`, `output`).
#pragma once
#include <cstdint>

#include "isa.h"
#include "registry.h"

namespace frugal {
struct PackedMatmulArgs {
  const float* x = nullptr;
  const uint32_t* w = nullptr;
  const float* alpha = nullptr;
  const float* beta = nullptr;
  int pattern = 0;
  int64_t M = 0, K = 0, N = 0;
  float* y = nullptr;
  int isa = 0;

  // Filled in field by field by native callers that checked their own arrays (fbi_decode.cc).
  PackedMatmulArgs() = default;

  // what: the JS function name for messages; words(K, N): the weight words the layout needs;
  // available: which forced paths this CPU runs.
  PackedMatmulArgs(const Napi::CallbackInfo& info, const char* what, int64_t (*words)(int64_t, int64_t),
                   bool (*available)(int)) {
    size_t xn, wn, an, bn, yn;
    x = f32(info, 0, &xn);
    w = u32(info, 1, &wn);
    alpha = f32(info, 2, &an);
    beta = f32(info, 3, &bn);
    pattern = static_cast<int>(num(info, 4));
    M = num(info, 5); K = num(info, 6); N = num(info, 7);
    y = f32(info, 8, &yn);
    isa = resolve_isa(static_cast<int>(num(info, 9)), available);
    const Napi::Env env = info.Env();
    const std::string name(what);
    if (M < 0 || K <= 0 || N <= 0) throw Napi::RangeError::New(env, name + ": bad sizes");
    if (pattern < 0 || pattern > 2) throw Napi::RangeError::New(env, name + ": pattern must be 0, 1 or 2");
    const int64_t nscale = pattern == 0 ? K : pattern == 1 ? N : 1;
    if (static_cast<int64_t>(xn) < M * K || static_cast<int64_t>(wn) < words(K, N) || static_cast<int64_t>(an) < nscale ||
        static_cast<int64_t>(bn) < nscale || static_cast<int64_t>(yn) < M * N)
      throw Napi::RangeError::New(env, name + ": an array is shorter than the sizes need");
    require_isa(env, what, isa, available);
  }

  // u_t = alpha (.) x_t (column scales) or x_t into u[0, K); returns the bias term of token t:
  // beta . x_t (column) or sum(x_t) (row, single), summed in double.
  float scale_inputs(int64_t t, float* u) const {
    const float* xt = x + t * K;
    double sb = 0;
    for (int64_t j = 0; j < K; j++) {
      u[j] = pattern == 0 ? alpha[j] * xt[j] : xt[j];
      sb += pattern == 0 ? static_cast<double>(beta[j]) * xt[j] : xt[j];
    }
    return static_cast<float>(sb);
  }

  // y_ti from the signed sum s = sum_j s_ij u_tj and the token's bias term.
  float output(int64_t i, float s, float bias) const {
    if (pattern == 0) return s + bias;
    const int64_t q = pattern == 1 ? i : 0;
    return alpha[q] * s + beta[q] * bias;
  }
};
}  // namespace frugal
