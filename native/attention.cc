// Fused multi-head attention (FlashAttention-style), forward and backward, f32.
// Layouts: q, o, dO [B, L, H, D]; k, v, dk, dv [B, S, Hkv, D]; lse [B, H, L]. Query head h reads
// kv head h / (H / Hkv). Causal: query i (of the last L of S positions) sees keys j <= i + S - L.
//
// Forward: one task per (b, h, block of kBQ queries); key blocks of kBK are streamed with an online
// softmax, so memory beyond inputs/outputs is a few tiles per thread, never L x S.
// Backward: one task per (b, kv head, block of kBK keys), which owns its dk/dv rows and visits every
// query of every head in its group (no races on dk/dv); dq gets contributions from every key block,
// so each thread adds into its own dq-sized accumulator (the first thread into dq itself) and they
// are summed at the end: extra memory (threads - 1) * |q| plus D_i = rowsum(dO * o), [B, H, L].
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "attention.h"
#include "isa.h"
#include "registry.h"
#include "threadpool.h"

namespace frugal {
namespace attention {

// AttnParams, kBQ, kBK: attention.h.

#define FRUGAL_ISA_IMPL "attention_impl.h"
#include "isa_variants.h"

namespace {
using FwdFn = void (*)(const AttnParams&, int64_t, int64_t, int64_t);
using BwdFn = void (*)(const AttnParams&, const float*, float*, int64_t, int64_t, int64_t);

void pick(FwdFn* f, BwdFn* b) {
  *f = FRUGAL_ISA_PICK(forward_task);
  *b = FRUGAL_ISA_PICK(backward_task);
}

// Few query rows (decode): each row reads its keys and values in place, no tiles.
constexpr int64_t kDecodeRows = 4;
// Below this much work (rows x keys x head size, all heads) a decode attention runs on the calling
// thread; above it the rows are spread over the pool (the cache reads are memory-bound: at the
// fbi-1.3b width one token reads 16 KB of keys and values per position and layer).
constexpr int64_t kDecodeParallelWork = int64_t{1} << 17;
}  // namespace

void forward(const AttnParams& p) {
  if (p.L <= kDecodeRows) {
    auto row = FRUGAL_ISA_PICK(decode_row);
    const int64_t tasks = p.B * p.H * p.L;
    auto one = [&](int64_t t) { row(p, t / (p.H * p.L), t / p.L % p.H, t % p.L); };
    if (tasks * p.S * p.D < kDecodeParallelWork) {
      for (int64_t t = 0; t < tasks; t++) one(t);
    } else {
      parallel_tasks(tasks, one);
    }
    return;
  }
  FwdFn fwd; BwdFn bwd;
  pick(&fwd, &bwd);
  const int64_t nqb = (p.L + kBQ - 1) / kBQ;
  // Causal rows late in the sequence cost the most: hand those out first so the pool balances.
  parallel_tasks(p.B * p.H * nqb, [&](int64_t t) {
    int64_t qb = nqb - 1 - t % nqb, bh = t / nqb;
    fwd(p, bh / p.H, bh % p.H, qb * kBQ);
  });
}

namespace {
void backward(const AttnParams& p, float* dq) {
  FwdFn fwd; BwdFn bwd;
  pick(&fwd, &bwd);
  const int64_t qn = p.B * p.L * p.H * p.D;
  std::vector<float> dsum(p.B * p.H * p.L);
  parallel_for(p.B * p.L, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const int64_t b = r / p.L, i = r % p.L;
      for (int64_t h = 0; h < p.H; h++) {
        const float* o = p.o + (r * p.H + h) * p.D;
        const float* g = p.dout + (r * p.H + h) * p.D;
        double s = 0;
        for (int64_t d = 0; d < p.D; d++) s += static_cast<double>(o[d]) * g[d];
        dsum[(b * p.H + h) * p.L + i] = static_cast<float>(s);
      }
    }
  });
  std::memset(dq, 0, qn * sizeof(float));
  // Deterministic dq: a fixed number of task groups (one per thread), each owning a private dq
  // accumulator and walking its key blocks in a fixed order (interleaved, so the heavy early causal
  // blocks spread over the groups); the accumulators are then summed in group order. The result
  // does not depend on which thread happens to run which task.
  const int64_t nkb = (p.S + kBK - 1) / kBK;
  const int64_t ntasks = p.B * p.Hkv * nkb;
  const int64_t groups = std::max<int64_t>(1, std::min<int64_t>(num_threads(), ntasks));
  std::vector<std::vector<float>> extra(groups - 1, std::vector<float>(qn, 0.0f));
  parallel_tasks(groups, [&](int64_t g) {
    float* acc = g == 0 ? dq : extra[g - 1].data();
    for (int64_t t = g; t < ntasks; t += groups) {
      int64_t kb = t % nkb, bh = t / nkb;
      bwd(p, dsum.data(), acc, bh / p.Hkv, bh % p.Hkv, kb * kBK);
    }
  });
  if (!extra.empty()) {
    parallel_for(qn, [&](int64_t a, int64_t e) {
      for (auto& x : extra)
        for (int64_t i = a; i < e; i++) dq[i] += x[i];
    });
  }
}

// Shapes are validated by the TS wrapper with friendly messages; these checks only keep a bad
// direct call from touching memory outside the arrays.
AttnParams parse(const Napi::CallbackInfo& info, int first_dim, bool backward) {
  Napi::Env env = info.Env();
  AttnParams p{};
  p.B = num(info, first_dim); p.L = num(info, first_dim + 1); p.S = num(info, first_dim + 2);
  p.H = num(info, first_dim + 3); p.Hkv = num(info, first_dim + 4); p.D = num(info, first_dim + 5);
  p.scale = static_cast<float>(dnum(info, first_dim + 6));
  p.causal = info[first_dim + 7].ToBoolean();
  if (p.B < 1 || p.L < 1 || p.S < 1 || p.H < 1 || p.Hkv < 1 || p.D < 1 || p.H % p.Hkv != 0 ||
      (p.causal && p.S < p.L))
    throw Napi::RangeError::New(env, "attention: invalid shape");
  const size_t qn = p.B * p.L * p.H * p.D, kn = p.B * p.S * p.Hkv * p.D, ln = p.B * p.H * p.L;
  auto get = [&](int i, size_t want) {
    size_t len;
    float* ptr = f32(info, i, &len);
    if (len != want) throw Napi::RangeError::New(env, "attention: argument " + std::to_string(i) + " has the wrong length");
    return ptr;
  };
  p.q = get(0, qn); p.k = get(1, kn); p.v = get(2, kn); p.o = get(3, qn);
  if (!backward) {
    p.lse = get(4, ln);
  } else {
    p.dout = get(4, qn); p.lse = get(5, ln); get(6, qn); p.dk = get(7, kn); p.dv = get(8, kn);
  }
  return p;
}

Napi::Value js_forward(const Napi::CallbackInfo& info) {
  forward(parse(info, 5, false));
  return info.Env().Undefined();
}
Napi::Value js_backward(const Napi::CallbackInfo& info) {
  AttnParams p = parse(info, 9, true);
  backward(p, f32(info, 6));
  return info.Env().Undefined();
}
Napi::Value js_isa(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), isa_name(cpu_isa())); }
}  // namespace

FRUGAL_EXPORT("attentionForward", js_forward)
FRUGAL_EXPORT("attentionBackward", js_backward)
FRUGAL_EXPORT("attentionIsa", js_isa)
}  // namespace attention
}  // namespace frugal
