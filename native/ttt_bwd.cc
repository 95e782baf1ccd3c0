// TTT scan backward (TTT-Linear / TTT-MLP) of a stateless forward from position 0, one task per
// (batch, head) on the pool; the per-head math is in ttt_bwd_impl.h (float64, like the TypeScript
// reference it ports). Gradients shared over the batch (initial weights, LN weight/bias, token eta)
// go to per-task partial buffers that are summed afterwards in a fixed order (batch index ascending
// for each head, then heads ascending for token eta), so results do not depend on thread timing.
//
// JS: tttBackward(flags, B, nh, L, f, h, K, xq, xk, xv, lr, tokenEta, w1, b1, w2, b2, lnW, lnB,
//                 saved[4], dOut, grads[11])
// flags bit 0: MLP. saved: [w1, b1, w2, b2] at each segment start ([B, nh, nSeg, ...]).
// grads: [dxq, dxk, dxv, dlr, dTokenEta, dw1, db1, dw2, db2, dlnW, dlnB] (dw2/db2 null for linear),
// all overwritten.
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
namespace ttt_bwd {

constexpr double kLnEps = 1e-6;

struct BwdParams {
  bool mlp;
  int64_t B, nh, L, f, h, K, nseg;
  const float *xq, *xk, *xv, *lr, *te, *lnW, *lnB, *dOut;
  const float* sv[4];
  float *dxq, *dxk, *dxv, *dlr;
};

// One task's share of the gradients that are reduced over tasks.
struct BwdPartial {
  double* dw[4];  // this head's dW1, db1, dW2, db2 from this batch row (written)
  double* dlnW;   // [f], accumulated
  double* dlnB;   // [f], accumulated
  double* dte;    // [K], accumulated
};

#define FRUGAL_ISA_IMPL "ttt_bwd_impl.h"
#include "isa_variants.h"

namespace {
using TaskFn = void (*)(const BwdParams&, int64_t, const BwdPartial&);

// The TS wrapper validates shapes with friendly messages; these checks only keep a bad direct call
// from touching memory outside the arrays.
Napi::Value js_backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  BwdParams p{};
  p.mlp = num(info, 0) & 1;
  p.B = num(info, 1); p.nh = num(info, 2); p.L = num(info, 3); p.f = num(info, 4); p.h = num(info, 5);
  p.K = num(info, 6);
  if (p.B < 1 || p.nh < 1 || p.L < 1 || p.f < 1 || p.K < 1 || p.h != (p.mlp ? 4 * p.f : p.f))
    throw Napi::RangeError::New(env, "tttBackward: invalid shape");
  p.nseg = (p.L + p.K - 1) / p.K;
  const int64_t B = p.B, nh = p.nh, L = p.L, f = p.f, h = p.h, K = p.K;
  auto get = [&](const Napi::Value& v, int64_t want, const std::string& what) { return f32_exact(v, want, "tttBackward: " + what); };
  const int64_t xn = B * nh * L * f;
  p.xq = get(info[7], xn, "xq"); p.xk = get(info[8], xn, "xk"); p.xv = get(info[9], xn, "xv");
  p.lr = get(info[10], B * nh * L, "lr"); p.te = get(info[11], K, "tokenEta");
  const int64_t wsz[4] = {f * h, h, h * f, f};
  const char* wname[4] = {"w1", "b1", "w2", "b2"};
  const int nw = p.mlp ? 4 : 2;
  // The initial weights themselves are not read: the saved segment-start weights include segment 0.
  for (int i = 0; i < nw; i++) get(info[12 + i], nh * wsz[i], wname[i]);
  p.lnW = get(info[16], nh * f, "lnW"); p.lnB = get(info[17], nh * f, "lnB");
  if (!info[18].IsArray()) throw Napi::TypeError::New(env, "tttBackward: saved must be an array");
  auto sa = info[18].As<Napi::Array>();
  for (int i = 0; i < nw; i++) p.sv[i] = get(sa.Get(static_cast<uint32_t>(i)), B * nh * p.nseg * wsz[i], std::string("saved ") + wname[i]);
  p.dOut = get(info[19], xn, "dOut");
  if (!info[20].IsArray()) throw Napi::TypeError::New(env, "tttBackward: grads must be an array");
  auto ga = info[20].As<Napi::Array>();
  p.dxq = get(ga.Get(0u), xn, "dxq"); p.dxk = get(ga.Get(1u), xn, "dxk"); p.dxv = get(ga.Get(2u), xn, "dxv");
  p.dlr = get(ga.Get(3u), B * nh * L, "dlr");
  float* dte = get(ga.Get(4u), K, "dTokenEta");
  float* dw[4] = {};
  for (int i = 0; i < nw; i++) dw[i] = get(ga.Get(static_cast<uint32_t>(5 + i)), nh * wsz[i], std::string("d") + wname[i]);
  float* dlnW = get(ga.Get(9u), nh * f, "dlnW");
  float* dlnB = get(ga.Get(10u), nh * f, "dlnB");

  // Per-task partial buffers: [dW1, db1, dW2, db2, dlnW, dlnB, dte] for each (batch, head).
  int64_t per = 2 * f + K;
  for (int i = 0; i < nw; i++) per += wsz[i];
  const int64_t ntask = B * nh;
  std::vector<double> partial(ntask * per, 0.0);
  auto slot = [&](int64_t task) {
    BwdPartial s{};
    double* base = partial.data() + task * per;
    for (int i = 0; i < nw; i++) { s.dw[i] = base; base += wsz[i]; }
    s.dlnW = base; s.dlnB = base + f; s.dte = base + 2 * f;
    return s;
  };
  TaskFn task = FRUGAL_ISA_PICK(bwd_head_task);
  parallel_tasks(ntask, [&](int64_t bh) { task(p, bh, slot(bh)); });

  // Fixed-order reduction.
  for (int64_t hh = 0; hh < nh; hh++) {
    for (int i = 0; i < nw; i++) {
      for (int64_t e = 0; e < wsz[i]; e++) {
        double acc = 0;
        for (int64_t bi = 0; bi < B; bi++) acc += slot(bi * nh + hh).dw[i][e];
        dw[i][hh * wsz[i] + e] = static_cast<float>(acc);
      }
    }
    for (int64_t j = 0; j < f; j++) {
      double aw = 0, ab = 0;
      for (int64_t bi = 0; bi < B; bi++) {
        const BwdPartial s = slot(bi * nh + hh);
        aw += s.dlnW[j];
        ab += s.dlnB[j];
      }
      dlnW[hh * f + j] = static_cast<float>(aw);
      dlnB[hh * f + j] = static_cast<float>(ab);
    }
  }
  for (int64_t k = 0; k < K; k++) {
    double acc = 0;
    for (int64_t t = 0; t < ntask; t++) acc += slot(t).dte[k];
    dte[k] = static_cast<float>(acc);
  }
  return env.Undefined();
}
}  // namespace

FRUGAL_EXPORT("tttBackward", js_backward)
}  // namespace ttt_bwd
}  // namespace frugal
