// Memory-bound training kernels that JS loops make slow: cross-entropy (hard and soft targets),
// AdamW, SiLU and sum of squares; vectorized (AVX-512 / AVX2 / portable) and threaded.
#include <cmath>
#include <cstdint>
#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "elementwise.h"
#include "isa.h"
#include "registry.h"
#include "threadpool.h"

namespace frugal {
namespace elementwise {

#define FRUGAL_ISA_IMPL "elementwise_impl.h"
#include "isa_variants.h"

namespace {
#define DISPATCH(fn, ...) FRUGAL_ISA_PICK(fn)(__VA_ARGS__)

// Elementwise work is split in chunks of at least this many elements per task.
constexpr int64_t kGrain = 1 << 15;

void for_chunks(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= kGrain) { fn(0, n); return; }
  int64_t tasks = (n + kGrain - 1) / kGrain;
  parallel_tasks(tasks, [&](int64_t t) { fn(t * kGrain, std::min(n, (t + 1) * kGrain)); });
}

void check_len(const Napi::CallbackInfo& info, size_t have, int64_t need, const char* what) {
  if ((int64_t)have < need) throw Napi::RangeError::New(info.Env(), std::string(what) + ": array too short");
}

// crossEntropy(logits, target(i32 | f32), rows, n, soft, ignoreIndex, loss, dlogits | null)
Napi::Value js_cross_entropy(const Napi::CallbackInfo& info) {
  size_t lx, ll;
  float* x = f32(info, 0, &lx);
  int64_t rows = num(info, 2), n = num(info, 3);
  bool soft = info[4].As<Napi::Boolean>().Value();
  int32_t ignore = (int32_t)num(info, 5);
  float* loss = f32(info, 6, &ll);
  float* d = info[7].IsNull() || info[7].IsUndefined() ? nullptr : f32(info, 7);
  check_len(info, lx, rows * n, "crossEntropy logits");
  check_len(info, ll, rows, "crossEntropy loss");
  if (soft) {
    size_t lt;
    float* t = f32(info, 1, &lt);
    check_len(info, lt, rows * n, "crossEntropy teacher logits");
    parallel_tasks(rows, [&](int64_t r) {
      loss[r] = DISPATCH(ce_soft_row, x + r * n, t + r * n, n, d ? d + r * n : nullptr);
    });
  } else {
    size_t lt;
    int32_t* t = i32(info, 1, &lt);
    check_len(info, lt, rows, "crossEntropy targets");
    for (int64_t r = 0; r < rows; r++) {
      if (t[r] != ignore && (t[r] < 0 || t[r] >= n))
        throw Napi::RangeError::New(info.Env(), "crossEntropy: target " + std::to_string(t[r]) + " out of range [0, " + std::to_string(n) + ")");
    }
    parallel_tasks(rows, [&](int64_t r) {
      float* dr = d ? d + r * n : nullptr;
      if (t[r] == ignore) {
        loss[r] = 0;
        if (dr) std::fill(dr, dr + n, 0.0f);
        return;
      }
      loss[r] = DISPATCH(ce_hard_row, x + r * n, n, t[r], dr);
    });
  }
  return info.Env().Undefined();
}

// adamw(w, g, m, v, n, lr, b1, b2, eps, weightDecay, step, gradScale)
Napi::Value js_adamw(const Napi::CallbackInfo& info) {
  size_t lw, lg, lm, lv;
  float *w = f32(info, 0, &lw), *g = f32(info, 1, &lg), *m = f32(info, 2, &lm), *v = f32(info, 3, &lv);
  int64_t n = num(info, 4);
  check_len(info, std::min(std::min(lw, lg), std::min(lm, lv)), n, "adamw");
  float lr = (float)dnum(info, 5), b1 = (float)dnum(info, 6), b2 = (float)dnum(info, 7), eps = (float)dnum(info, 8);
  float wd = (float)dnum(info, 9), gs = (float)dnum(info, 11);
  double step = dnum(info, 10);
  float bc1 = (float)(1 - std::pow((double)b1, step)), bc2 = (float)(1 - std::pow((double)b2, step));
  float decay = 1 - lr * wd;
  for_chunks(n, [&](int64_t b, int64_t e) { DISPATCH(adamw_range, w, g, m, v, b, e, lr, b1, b2, eps, decay, bc1, bc2, gs); });
  return info.Env().Undefined();
}

Napi::Value js_silu(const Napi::CallbackInfo& info) {
  size_t lx, ly;
  float *x = f32(info, 0, &lx), *y = f32(info, 1, &ly);
  int64_t n = num(info, 2);
  check_len(info, std::min(lx, ly), n, "silu");
  for_chunks(n, [&](int64_t b, int64_t e) { DISPATCH(silu_range, x, y, b, e); });
  return info.Env().Undefined();
}

Napi::Value js_silu_backward(const Napi::CallbackInfo& info) {
  size_t lx, lg, ld;
  float *x = f32(info, 0, &lx), *g = f32(info, 1, &lg), *dx = f32(info, 2, &ld);
  int64_t n = num(info, 3);
  check_len(info, std::min(std::min(lx, lg), ld), n, "siluBackward");
  for_chunks(n, [&](int64_t b, int64_t e) { DISPATCH(silu_bwd_range, x, g, dx, b, e); });
  return info.Env().Undefined();
}

// binary(op, a, b, out, n, bn): op 0..3 = add, sub, mul, div; b has bn elements (n, 1 or a row length).
Napi::Value js_binary(const Napi::CallbackInfo& info) {
  size_t la, lb, lo;
  int op = (int)num(info, 0);
  float *a = f32(info, 1, &la), *b = f32(info, 2, &lb), *o = f32(info, 3, &lo);
  int64_t n = num(info, 4), bn = num(info, 5);
  if (op < 0 || op > 3 || bn <= 0 || n % bn != 0) throw Napi::RangeError::New(info.Env(), "binary: bad arguments");
  check_len(info, std::min(la, lo), n, "binary");
  check_len(info, lb, bn, "binary operand");
  // Chunks are whole rows so the row-broadcast loop stays simple.
  int64_t grain = std::max<int64_t>(bn, (kGrain / bn) * bn);
  int64_t tasks = (n + grain - 1) / grain;
  parallel_tasks(tasks, [&](int64_t t) { DISPATCH(binary_range, op, a, b, o, t * grain, std::min(n, (t + 1) * grain), bn); });
  return info.Env().Undefined();
}

Napi::Value js_sum_squares(const Napi::CallbackInfo& info) {
  size_t lx;
  float* x = f32(info, 0, &lx);
  int64_t n = num(info, 1);
  check_len(info, lx, n, "sumSquares");
  int64_t tasks = std::max<int64_t>(1, (n + kGrain - 1) / kGrain);
  std::vector<double> part(tasks, 0.0);
  parallel_tasks(tasks, [&](int64_t t) { part[t] = DISPATCH(sumsq_range, x, t * kGrain, std::min(n, (t + 1) * kGrain)); });
  double s = 0;
  for (double p : part) s += p;
  return Napi::Number::New(info.Env(), s);
}
}  // namespace

void silu(const float* x, float* y, int64_t n) {
  for_chunks(n, [&](int64_t b, int64_t e) { DISPATCH(silu_range, x, y, b, e); });
}

FRUGAL_EXPORT("crossEntropy", js_cross_entropy)
FRUGAL_EXPORT("adamw", js_adamw)
FRUGAL_EXPORT("silu", js_silu)
FRUGAL_EXPORT("siluBackward", js_silu_backward)
FRUGAL_EXPORT("sumSquares", js_sum_squares)
FRUGAL_EXPORT("binary", js_binary)
}  // namespace elementwise
}  // namespace frugal
