// Fused attention forward (attention.cc), callable from other native files (the fused decode path).
// Layouts: q, o [B, L, H, D]; k, v [B, S, Hkv, D] (rows may sit in a longer buffer: only the first S
// positions are read); lse [B, H, L]. Query head h reads kv head h / (H / Hkv). Causal: query i (of
// the last L of S positions) sees keys j <= i + S - L.
#pragma once
#include <cstdint>

namespace frugal {
namespace attention {
struct AttnParams {
  const float *q, *k, *v;
  float *o, *lse;
  const float* dout;
  float *dk, *dv;
  int64_t B, L, S, H, Hkv, D;
  float scale;
  bool causal;
};
constexpr int64_t kBQ = 32, kBK = 64;

// o and lse of the attention forward: FlashAttention-style tiles, or for a few query rows (decode)
// one pass over the keys and values in place. Runs on the thread pool when the work is large.
void forward(const AttnParams& p);
}  // namespace attention
}  // namespace frugal
