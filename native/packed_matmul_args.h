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
  // beta . x_t (column) or sum(x_t) (row, single), summed in double: 8 partial sums over the
  // first K - K % 8 inputs, then the rest, in a fixed order (the same on every code path).
  float scale_inputs(int64_t t, float* u) const {
    const float* xt = x + t * K;
    double sb[8] = {0, 0, 0, 0, 0, 0, 0, 0}, rest = 0;
    const int64_t K8 = K / 8 * 8;
    if (pattern == 0) {
      for (int64_t j = 0; j < K8; j += 8)
        for (int l = 0; l < 8; l++) {
          u[j + l] = alpha[j + l] * xt[j + l];
          sb[l] += static_cast<double>(beta[j + l]) * xt[j + l];
        }
      for (int64_t j = K8; j < K; j++) {
        u[j] = alpha[j] * xt[j];
        rest += static_cast<double>(beta[j]) * xt[j];
      }
    } else {
      for (int64_t j = 0; j < K8; j += 8)
        for (int l = 0; l < 8; l++) {
          u[j + l] = xt[j + l];
          sb[l] += xt[j + l];
        }
      for (int64_t j = K8; j < K; j++) {
        u[j] = xt[j];
        rest += xt[j];
      }
    }
    return static_cast<float>((((sb[0] + sb[1]) + (sb[2] + sb[3])) + ((sb[4] + sb[5]) + (sb[6] + sb[7]))) + rest);
  }
  // y_ti from the signed sum s = sum_j s_ij u_tj and the token's bias term.
  float output(int64_t i, float s, float bias) const {
    if (pattern == 0) return s + bias;
    const int64_t q = pattern == 1 ? i : 0;
    return alpha[q] * s + beta[q] * bias;
  }
  // y[i] = output(i, d (2 p[i] - qs), bias) for i in [0, N), one loop per pattern.
  void outputs(const int32_t* p, float d, int32_t qs, float bias, float* yt) const {
    if (pattern == 0) {
      for (int64_t i = 0; i < N; i++) yt[i] = d * static_cast<float>(2 * p[i] - qs) + bias;
    } else if (pattern == 1) {
      for (int64_t i = 0; i < N; i++) yt[i] = alpha[i] * (d * static_cast<float>(2 * p[i] - qs)) + beta[i] * bias;
    } else {
      const float a0 = alpha[0], b0 = beta[0] * bias;
      for (int64_t i = 0; i < N; i++) yt[i] = a0 * (d * static_cast<float>(2 * p[i] - qs)) + b0;
    }
  }
};
}  // namespace frugal
