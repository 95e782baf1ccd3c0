// GGUF block-quantized linears: y [M, N] = x [M, K] @ W^T with W [N, K] stored as Q8_0, Q4_0 or Q1_0
// blocks (row-major, each row a whole number of blocks). Activations are quantized once per call to
// int8 with a scale per 32 values; the products are int8 dot products with f32 block scales, so the
// weights are never expanded to f32. AVX-512 / AVX2 / portable builds of the same loops, picked at
// run time (or forced, for the tests).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "isa.h"
#include "registry.h"
#include "threadpool.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace frugal {
namespace quant {
enum { kQ8_0 = 0, kQ4_0 = 1, kQ1_0 = 2 };

static inline float half_to_float(uint32_t h) {
  const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: renormalize
      int e = -1;
      uint32_t m = man;
      do { e++; m <<= 1; } while ((m & 0x400) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (m & 0x3ff) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | man << 13;
  } else {
    bits = sign | (exp + 112) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Byte b -> eight int8 values, +1 where bit i of b is set and -1 where clear (byte i of the word).
static const uint64_t* sign_table() {
  static const auto table = [] {
    std::vector<uint64_t> t(256);
    for (int b = 0; b < 256; b++) {
      int8_t v[8];
      for (int i = 0; i < 8; i++) v[i] = (b >> i) & 1 ? 1 : -1;
      std::memcpy(&t[b], v, 8);
    }
    return t;
  }();
  return table.data();
}

#define FRUGAL_ISA_IMPL "quant_impl.h"
#include "isa_variants.h"

namespace {
using TileFn = void (*)(int, const uint8_t*, int64_t, int64_t, int64_t, int64_t, int64_t, const int8_t*, const float*,
                        int64_t, float*, int8_t*, float*);
using QuantFn = void (*)(const float*, int64_t, int64_t, int8_t*, float*);

constexpr int64_t kTile = 8;  // weight rows unpacked together; one activation load feeds all of them

// quantMatmul(x f32 [M*K], M, K, w u8, type 0 Q8_0 | 1 Q4_0 | 2 Q1_0, N, y f32 [M*N], isa);
// sizes are checked by the TS caller (src/backend/cpu/quant.ts).
Napi::Value js_quant_matmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const float* x = f32(info, 0);
  const int64_t M = num(info, 1), K = num(info, 2);
  const uint8_t* w = u8(info, 3);
  const int type = static_cast<int>(num(info, 4));
  const int64_t N = num(info, 5);
  float* y = f32(info, 6);
  const int isa = resolve_isa(static_cast<int>(num(info, 7)));
  require_isa(env, "quantMatmul", isa);
  if (type < 0 || type > 2) throw Napi::Error::New(env, "quantMatmul: unknown block type");
  const int64_t rowBytes = type == kQ8_0 ? K / 32 * 34 : type == kQ4_0 ? K / 32 * 18 : K / 128 * 18;
  TileFn tileFn = portable::tile;
  QuantFn quantFn = portable::quantize_rows;
#if defined(__x86_64__)
  if (isa == kAvx512) { tileFn = avx512::tile; quantFn = avx512::quantize_rows; }
  if (isa == kAvx2) { tileFn = avx2::tile; quantFn = avx2::quantize_rows; }
#endif
  std::vector<int8_t> qx(static_cast<size_t>(M * K));
  std::vector<float> sx(static_cast<size_t>(M * (K / 32)));
  quantFn(x, M, K, qx.data(), sx.data());
  const int64_t tiles = (N + kTile - 1) / kTile;
  auto run = [&](int64_t t) {
    thread_local std::vector<int8_t> wq;
    thread_local std::vector<float> ws;
    wq.resize(static_cast<size_t>(kTile * K));
    ws.resize(static_cast<size_t>(kTile * (K / 32)));
    tileFn(type, w, rowBytes, K, t * kTile, std::min(N, (t + 1) * kTile), M, qx.data(), sx.data(), N, y, wq.data(), ws.data());
  };
  if (M * N * K < (1 << 16)) {
    for (int64_t t = 0; t < tiles; t++) run(t);
  } else {
    parallel_tasks(tiles, run);
  }
  return env.Undefined();
}

Napi::Value js_quant_isa_available(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), cpu_has(static_cast<int>(num(info, 0))));
}
}  // namespace
FRUGAL_EXPORT("quantMatmul", js_quant_matmul)
FRUGAL_EXPORT("quantIsaAvailable", js_quant_isa_available)
}  // namespace quant
}  // namespace frugal
