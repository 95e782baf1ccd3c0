// TTT mini-batch scan forward (TTT-Linear / TTT-MLP), f32, one task per (batch, head) on the pool.
// Same semantics as the TypeScript reference in src/backend/cpu/ttt.ts (segments, remainder in
// primal form, decoding state with carried gradient sums, weights saved at each segment start for
// the backward); the per-head math is in ttt_impl.h.
//
// JS: tttForward(flags, B, nh, L, f, h, K, start, xq, xk, xv, lr, tokenEta, w1, b1, w2, b2, lnW, lnB,
//                out, state[8] or null, saved[4] or null)
// flags bit 0: MLP. state: [w1, b1, w2, b2, gw1, gb1, gw2, gb2] (MLP entries null for linear),
// saved: [w1, b1, w2, b2].
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "isa.h"
#include "registry.h"
#include "threadpool.h"

namespace frugal {
namespace ttt {

constexpr double kLnEps = 1e-6;

struct TttParams {
  bool mlp;
  int64_t B, nh, L, f, h, K, start, nseg;
  const float *xq, *xk, *xv, *lr, *te, *lnW, *lnB;
  const float* w[4];
  float* out;
  float* st[8];  // null entries when there is no decoding state
  float* sv[4];  // null entries when nothing is saved
};

#define FRUGAL_ISA_IMPL "ttt_impl.h"
#include "isa_variants.h"

namespace {
using TaskFn = void (*)(const TttParams&, int64_t);

// The TS wrapper validates shapes with friendly messages; these checks only keep a bad direct call
// from touching memory outside the arrays.
Napi::Value js_forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TttParams p{};
  const int64_t flags = num(info, 0);
  p.mlp = flags & 1;
  p.B = num(info, 1); p.nh = num(info, 2); p.L = num(info, 3); p.f = num(info, 4); p.h = num(info, 5);
  p.K = num(info, 6); p.start = num(info, 7);
  if (p.B < 1 || p.nh < 1 || p.L < 1 || p.f < 1 || p.K < 1 || p.start < 0 || p.h != (p.mlp ? 4 * p.f : p.f))
    throw Napi::RangeError::New(env, "tttForward: invalid shape");
  p.nseg = 0;
  for (int64_t t = 0; t < p.L; p.nseg++) t += std::min(p.K - (p.start + t) % p.K, p.L - t);
  const int64_t B = p.B, nh = p.nh, L = p.L, f = p.f, h = p.h, K = p.K;
  auto get = [&](const Napi::Value& v, int64_t want, const std::string& what) { return f32_exact(v, want, "tttForward: " + what); };
  const int64_t xn = B * nh * L * f;
  p.xq = get(info[8], xn, "xq"); p.xk = get(info[9], xn, "xk"); p.xv = get(info[10], xn, "xv");
  p.lr = get(info[11], B * nh * L, "lr"); p.te = get(info[12], K, "tokenEta");
  const int64_t wsz[4] = {f * h, h, h * f, f};
  const char* wname[4] = {"w1", "b1", "w2", "b2"};
  for (int i = 0; i < (p.mlp ? 4 : 2); i++) p.w[i] = get(info[13 + i], nh * wsz[i], wname[i]);
  p.lnW = get(info[17], nh * f, "lnW"); p.lnB = get(info[18], nh * f, "lnB");
  p.out = get(info[19], xn, "out");
  if (info[20].IsArray()) {
    auto a = info[20].As<Napi::Array>();
    for (int i = 0; i < 8; i++) {
      if ((i % 4) >= 2 && !p.mlp) continue;
      p.st[i] = get(a.Get(i), B * nh * wsz[i % 4], std::string("state ") + (i >= 4 ? "g" : "") + wname[i % 4]);
    }
  }
  if (info[21].IsArray()) {
    auto a = info[21].As<Napi::Array>();
    for (int i = 0; i < (p.mlp ? 4 : 2); i++) p.sv[i] = get(a.Get(i), B * nh * p.nseg * wsz[i], std::string("saved ") + wname[i]);
  }
  TaskFn task = FRUGAL_ISA_PICK(head_task);
  parallel_tasks(B * nh, [&](int64_t bh) { task(p, bh); });
  return env.Undefined();
}
Napi::Value js_isa(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), isa_name(cpu_isa())); }
}  // namespace

FRUGAL_EXPORT("tttForward", js_forward)
FRUGAL_EXPORT("tttIsa", js_isa)
}  // namespace ttt
}  // namespace frugal
