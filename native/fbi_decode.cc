// The whole packed FBI decoder stack in one native call per step (prefill chunk or decoded token):
// embedding -> per layer [RMSNorm, packed q/k/v products with int8 activations, RoPE, KV append,
// attention, packed o product, residual, RMSNorm, packed gate/up, SiLU * up, packed down, residual]
// -> final RMSNorm -> LM head (f16 or int8 weights) for the last row or every row.
//
// Every step uses the kernels the per-module path runs (fbi_int8.cc products, attention.cc forward,
// elementwise.cc SiLU) and the per-module path's own arithmetic for the rest (RMSNorm summed in
// double, RoPE with the cos/sin table the JS side computed with the same formula), so its logits are
// the per-module path's bit for bit. What it removes is the per-op JS work: tensor allocation, the
// op wrappers' checks, the KV-cache views; buffers live in the decoding state, sized once.
//
// KV cache: per layer [capacity, Hkv * D] for K and for V, rows appended in place; the attention
// reads the first `position` rows where they are (decode rows need no tiles, see attention.cc).
#include <chrono>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <utility>
#include <string>
#include <vector>

#include "attention.h"
#include "elementwise.h"
#include "fbi_int8.h"
#include "isa.h"
#include "packed_matmul_args.h"
#include "registry.h"
#include "threadpool.h"

namespace frugal {
namespace fbi_decode {
namespace {

struct Linear {
  const uint32_t* w = nullptr;  // interleaved sign words
  const float* alpha = nullptr;
  const float* beta = nullptr;
  int pattern = 0;
  int64_t K = 0, N = 0;
};

struct Layer {
  const float* norm1 = nullptr;  // attention input norm
  const float* norm2 = nullptr;  // FFN input norm
  Linear q, k, v, o, gate, up, down;
};

enum Head : int { kHeadNone = 0, kHeadF16 = 1, kHeadInt8 = 2 };

struct Stack {
  int64_t C = 0, H = 0, Hkv = 0, D = 0, F = 0, V = 0;
  double eps = 1e-5;
  bool interleaved = false;  // RoPE pairs (2i, 2i+1) instead of (i, i + D/2)
  const float* embed = nullptr;
  const float* norm = nullptr;
  int head = kHeadNone;
  const uint16_t* head16 = nullptr;
  const int8_t* head8 = nullptr;
  const float* head_scale = nullptr;
  const int32_t* head_rowsum = nullptr;
  int64_t head_kp = 0;
  int isa = kScalar;
  std::vector<Layer> layers;
};

struct State {
  int64_t capacity = 0, position = 0;
  std::vector<float> k, v;       // [layers][capacity][Hkv * D]
  const double* cos = nullptr;   // [capacity][D / 2], owned by the JS side (kept alive with the state)
  const double* sin = nullptr;
  std::vector<float> h, xn, q, kk, vv, att, lse, g, u, tmp;
  // Time spent per phase over the state's steps, in seconds (fbiDecodeTimes reads them).
  double t_norms = 0, t_products = 0, t_rope_kv = 0, t_attention = 0, t_swiglu = 0, t_head = 0, t_call = 0;
};

using Clock = std::chrono::steady_clock;
// Adds the seconds since `t` to `acc` and restarts `t`.
inline void lap(Clock::time_point& t, double& acc) {
  const Clock::time_point now = Clock::now();
  acc += std::chrono::duration<double>(now - t).count();
  t = now;
}

template <typename T>
void sized(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}

// The step buffers for M rows (grown, never shrunk).
void size_rows(State& st, const Stack& s, int64_t M) {
  const int64_t qd = s.H * s.D, kvd = s.Hkv * s.D;
  sized(st.h, M * s.C); sized(st.xn, M * s.C); sized(st.tmp, M * s.C);
  sized(st.q, M * qd); sized(st.att, M * qd); sized(st.lse, M * s.H);
  sized(st.kk, M * kvd); sized(st.vv, M * kvd);
  sized(st.g, M * s.F); sized(st.u, M * s.F);
}

[[noreturn]] void fail(const Napi::Env& env, const std::string& msg) { throw Napi::Error::New(env, "fused decode: " + msg); }

template <typename T, napi_typedarray_type K>
const T* array_of(const Napi::Object& o, const char* key, int64_t need, const std::string& where) {
  Napi::Value v = o.Get(key);
  const std::string what = where + "." + key;
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != K) fail(o.Env(), what + " is missing or of the wrong array type");
  size_t len;
  const T* p = typed_ptr<T, K>(v, &len, what.c_str());
  if (static_cast<int64_t>(len) < need)
    fail(o.Env(), what + " has " + std::to_string(len) + " elements, needs " + std::to_string(need));
  return p;
}

int64_t int_of(const Napi::Object& o, const char* key, int64_t lo) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) fail(o.Env(), std::string(key) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= static_cast<double>(lo)) || d != std::floor(d) || d > 9.0e15) fail(o.Env(), std::string(key) + " must be an integer >= " + std::to_string(lo));
  return static_cast<int64_t>(d);
}

Linear linear_of(const Napi::Object& layer, const char* key, int64_t K, int64_t N, const std::string& where) {
  Napi::Value v = layer.Get(key);
  const std::string w = where + "." + key;
  if (!v.IsObject()) fail(layer.Env(), w + " is missing");
  const Napi::Object o = v.As<Napi::Object>();
  Linear l;
  l.K = K;
  l.N = N;
  l.pattern = static_cast<int>(int_of(o, "pattern", 0));
  if (l.pattern > 2) fail(layer.Env(), w + ".pattern must be 0 (column), 1 (row) or 2 (single)");
  const int64_t ns = l.pattern == 0 ? K : l.pattern == 1 ? N : 1;
  l.w = array_of<uint32_t, napi_uint32_array>(o, "bits", fbi8::interleaved_words(K, N), w);
  if (reinterpret_cast<uintptr_t>(l.w) % 8) fail(layer.Env(), w + ".bits must start at a multiple of 8 bytes");
  l.alpha = array_of<float, napi_float32_array>(o, "alpha", ns, w);
  l.beta = array_of<float, napi_float32_array>(o, "beta", ns, w);
  return l;
}

// fbiDecodeCreate(spec): a stack over the spec's arrays (the caller keeps the spec alive as long as
// the returned handle). spec: { hidden, heads, kvHeads, headDim, intermediate, vocab, eps,
// interleaved, isa, embed, norm, head: 0 | 1 | 2, headF16 | headQ + headScale + headRowSum,
// layers: [{ norm1, norm2, q, k, v, o, gate, up, down: { bits, alpha, beta, pattern } }] }.
Napi::Value Create(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (!info[0].IsObject()) fail(env, "expected a spec object");
  const Napi::Object o = info[0].As<Napi::Object>();
  auto* s = new Stack();
  try {
    s->C = int_of(o, "hidden", 1);
    s->H = int_of(o, "heads", 1);
    s->Hkv = int_of(o, "kvHeads", 1);
    s->D = int_of(o, "headDim", 2);
    s->F = int_of(o, "intermediate", 1);
    s->V = int_of(o, "vocab", 1);
    if (s->H % s->Hkv) fail(env, "heads must be a multiple of kvHeads");
    if (s->D % 2) fail(env, "headDim must be even");
    const Napi::Value eps = o.Get("eps");
    if (!eps.IsNumber() || !(eps.As<Napi::Number>().DoubleValue() >= 0)) fail(env, "eps must be a non-negative number");
    s->eps = eps.As<Napi::Number>().DoubleValue();
    s->interleaved = o.Get("interleaved").ToBoolean();
    const int isa = static_cast<int>(int_of(o, "isa", 0));
    if (isa > 3) fail(env, "isa must be 0..3");
    s->isa = fbi8::resolve_int8_isa(isa);
    if (!fbi8::int8_isa_available(s->isa)) fail(env, "the requested instruction set is not available on this CPU");
    s->embed = array_of<float, napi_float32_array>(o, "embed", s->V * s->C, "spec");
    s->norm = array_of<float, napi_float32_array>(o, "norm", s->C, "spec");
    s->head = static_cast<int>(int_of(o, "head", 0));
    if (s->head == kHeadF16) {
      s->head16 = array_of<uint16_t, napi_uint16_array>(o, "headF16", s->V * s->C, "spec");
    } else if (s->head == kHeadInt8) {
      s->head_kp = int_of(o, "headRowBytes", 64);
      if (s->head_kp % 64 || s->head_kp < s->C) fail(env, "headRowBytes must be a multiple of 64 and >= hidden");
      s->head8 = reinterpret_cast<const int8_t*>(array_of<uint8_t, napi_uint8_array>(o, "headQ", s->V * s->head_kp, "spec"));
      s->head_scale = array_of<float, napi_float32_array>(o, "headScale", s->V, "spec");
      s->head_rowsum = array_of<int32_t, napi_int32_array>(o, "headRowSum", s->V, "spec");
    } else if (s->head != kHeadNone) {
      fail(env, "head must be 0 (hidden states out), 1 (f16) or 2 (int8)");
    }
    const Napi::Value lv = o.Get("layers");
    if (!lv.IsArray()) fail(env, "layers must be an array");
    const Napi::Array layers = lv.As<Napi::Array>();
    const int64_t qd = s->H * s->D, kvd = s->Hkv * s->D;
    for (uint32_t i = 0; i < layers.Length(); i++) {
      const std::string where = "layers[" + std::to_string(i) + "]";
      const Napi::Value v = layers.Get(i);
      if (!v.IsObject()) fail(env, where + " is not an object");
      const Napi::Object lo = v.As<Napi::Object>();
      Layer l;
      l.norm1 = array_of<float, napi_float32_array>(lo, "norm1", s->C, where);
      l.norm2 = array_of<float, napi_float32_array>(lo, "norm2", s->C, where);
      l.q = linear_of(lo, "q", s->C, qd, where);
      l.k = linear_of(lo, "k", s->C, kvd, where);
      l.v = linear_of(lo, "v", s->C, kvd, where);
      l.o = linear_of(lo, "o", qd, s->C, where);
      l.gate = linear_of(lo, "gate", s->C, s->F, where);
      l.up = linear_of(lo, "up", s->C, s->F, where);
      l.down = linear_of(lo, "down", s->F, s->C, where);
      s->layers.push_back(l);
    }
  } catch (...) {
    delete s;
    throw;
  }
  return Napi::External<Stack>::New(env, s, [](Napi::Env, Stack* p) { delete p; });
}

Stack* stack_of(const Napi::Value& v) {
  if (!v.IsExternal()) fail(v.Env(), "expected a stack handle (fbiDecodeCreate)");
  return v.As<Napi::External<Stack>>().Data();
}
State* state_of(const Napi::Value& v) {
  if (!v.IsExternal()) fail(v.Env(), "expected a decoding state handle (fbiDecodeState)");
  return v.As<Napi::External<State>>().Data();
}

// fbiDecodeState(stack, capacity, cos f64 [capacity * D/2], sin f64 [capacity * D/2]): an empty
// decoding state with a KV cache of `capacity` positions (the caller keeps cos and sin alive).
Napi::Value NewState(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const Stack* s = stack_of(info[0]);
  const int64_t cap = num(info, 1);
  if (cap < 1) fail(env, "the state capacity must be at least 1 position");
  const int64_t half = s->D / 2;
  size_t cn, sn;
  const double* c = typed_ptr<double, napi_float64_array>(info[2], &cn, "rope cos");
  const double* sn_ = typed_ptr<double, napi_float64_array>(info[3], &sn, "rope sin");
  if (static_cast<int64_t>(cn) < cap * half || static_cast<int64_t>(sn) < cap * half) fail(env, "the RoPE tables are shorter than capacity x headDim / 2");
  const int64_t per = static_cast<int64_t>(s->layers.size()) * cap * s->Hkv * s->D;
  auto* st = new State();
  st->capacity = cap;
  st->cos = c;
  st->sin = sn_;
  try {
    st->k.assign(static_cast<size_t>(per), 0.0f);
    st->v.assign(static_cast<size_t>(per), 0.0f);
    // Step buffers for a prefill chunk of up to 64 tokens, touched now rather than in the first step.
    size_rows(*st, *s, std::min<int64_t>(cap, 64));
  } catch (const std::bad_alloc&) {
    delete st;
    fail(env, "out of memory for a KV cache of " + std::to_string(cap) + " positions");
  }
  return Napi::External<State>::New(env, st, [](Napi::Env, State* p) { delete p; });
}

// y = x / sqrt(mean(x^2) + eps) * w per row, summed and scaled in double as the per-module norm is.
void rms_norm(const float* x, const float* w, int64_t rows, int64_t n, double eps, float* y) {
  parallel_rows(rows, n, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* xr = x + r * n;
      double v = 0;
      for (int64_t j = 0; j < n; j++) {
        const double c = xr[j];
        v += c * c;
      }
      const double inv = 1 / std::sqrt(v / static_cast<double>(n) + eps);
      float* yr = y + r * n;
      for (int64_t j = 0; j < n; j++) yr[j] = static_cast<float>(static_cast<double>(xr[j]) * inv * static_cast<double>(w[j]));
    }
  });
}

// In-place RoPE of rows [M, heads, D] at positions pos0.. (the tables' rows), in double as the
// per-module kernel computes it.
void rope(float* x, int64_t M, int64_t heads, int64_t D, int64_t pos0, const State& st, bool interleaved) {
  const int64_t half = D / 2;
  parallel_rows(M, heads * D, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      const double* c = st.cos + (pos0 + t) * half;
      const double* s = st.sin + (pos0 + t) * half;
      for (int64_t h = 0; h < heads; h++) {
        float* b = x + (t * heads + h) * D;
        for (int64_t i = 0; i < half; i++) {
          float* p0 = interleaved ? b + 2 * i : b + i;
          float* p1 = interleaved ? p0 + 1 : p0 + half;
          const double x0 = *p0, x1 = *p1;
          *p0 = static_cast<float>(x0 * c[i] - x1 * s[i]);
          *p1 = static_cast<float>(x1 * c[i] + x0 * s[i]);
        }
      }
    }
  });
}

PackedMatmulArgs args_of(const Linear& l, const float* x, int64_t M, float* y, int isa) {
  PackedMatmulArgs a;
  a.x = x;
  a.w = l.w;
  a.alpha = l.alpha;
  a.beta = l.beta;
  a.pattern = l.pattern;
  a.M = M;
  a.K = l.K;
  a.N = l.N;
  a.y = y;
  a.isa = isa;
  return a;
}

// The products of one phase (same input rows, e.g. q, k, v): one token runs them as one parallel
// region, several tokens product by product (each parallel over its own rows and tokens).
void products(std::initializer_list<std::pair<const Linear*, float*>> list, const float* x, int64_t M, int isa) {
  PackedMatmulArgs a[4];
  int n = 0;
  for (const auto& [l, y] : list) a[n++] = args_of(*l, x, M, y, isa);
  if (M == 1) return fbi8::int8_decode_products(a, n);
  for (int i = 0; i < n; i++) fbi8::int8_product(a[i]);
}

void add_into(float* h, const float* d, int64_t rows, int64_t n) {
  parallel_rows(rows, n, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0 * n; i < r1 * n; i++) h[i] = h[i] + d[i];
  });
}

// fbiDecodeForward(stack, state, ids i32 [M], out f32, allRows): runs M tokens from the state's
// position, appends their keys and values, and writes the logits (or final hidden states when the
// stack has no head) of the last row, or of all M rows, into out. Returns the new position.
Napi::Value Forward(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const Stack& s = *stack_of(info[0]);
  State& st = *state_of(info[1]);
  size_t mn, on;
  const int32_t* ids = i32(info, 2, &mn);
  float* out = f32(info, 3, &on);
  const bool all = info[4].ToBoolean();
  const int64_t M = static_cast<int64_t>(mn);
  if (M < 1) fail(env, "no tokens to run");
  if (st.position + M > st.capacity)
    fail(env, "context overflow: position " + std::to_string(st.position) + " + " + std::to_string(M) + " tokens exceeds the " +
                  std::to_string(st.capacity) + " positions of this decoding state");
  const int64_t C = s.C, H = s.H, Hkv = s.Hkv, D = s.D, F = s.F;
  const int64_t width = s.head == kHeadNone ? C : s.V, rows_out = all ? M : 1;
  if (static_cast<int64_t>(on) < rows_out * width) fail(env, "the output array is shorter than rows x " + std::to_string(width));
  for (int64_t t = 0; t < M; t++)
    if (ids[t] < 0 || ids[t] >= s.V) fail(env, "token id " + std::to_string(ids[t]) + " is outside the vocabulary of " + std::to_string(s.V));

  const int64_t qd = H * D, kvd = Hkv * D, pos0 = st.position, S = pos0 + M;
  size_rows(st, s, M);
  float *h = st.h.data(), *xn = st.xn.data(), *q = st.q.data(), *kk = st.kk.data(), *vv = st.vv.data();
  float *att = st.att.data(), *lse = st.lse.data(), *g = st.g.data(), *u = st.u.data(), *tmp = st.tmp.data();
  const Clock::time_point start = Clock::now();
  Clock::time_point tp = start;
  for (int64_t t = 0; t < M; t++) std::memcpy(h + t * C, s.embed + static_cast<int64_t>(ids[t]) * C, C * sizeof(float));
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));

  for (size_t li = 0; li < s.layers.size(); li++) {
    const Layer& l = s.layers[li];
    float* kc = st.k.data() + static_cast<int64_t>(li) * st.capacity * kvd;
    float* vc = st.v.data() + static_cast<int64_t>(li) * st.capacity * kvd;
    rms_norm(h, l.norm1, M, C, s.eps, xn);
    lap(tp, st.t_norms);
    products({{&l.q, q}, {&l.k, kk}, {&l.v, vv}}, xn, M, s.isa);
    lap(tp, st.t_products);
    rope(q, M, H, D, pos0, st, s.interleaved);
    rope(kk, M, Hkv, D, pos0, st, s.interleaved);
    std::memcpy(kc + pos0 * kvd, kk, M * kvd * sizeof(float));
    std::memcpy(vc + pos0 * kvd, vv, M * kvd * sizeof(float));
    lap(tp, st.t_rope_kv);
    attention::AttnParams p{};
    p.q = q; p.k = kc; p.v = vc; p.o = att; p.lse = lse;
    p.B = 1; p.L = M; p.S = S; p.H = H; p.Hkv = Hkv; p.D = D;
    p.scale = scale;
    p.causal = true;
    attention::forward(p);
    lap(tp, st.t_attention);
    products({{&l.o, tmp}}, att, M, s.isa);
    lap(tp, st.t_products);
    add_into(h, tmp, M, C);
    rms_norm(h, l.norm2, M, C, s.eps, xn);
    lap(tp, st.t_norms);
    products({{&l.gate, g}, {&l.up, u}}, xn, M, s.isa);
    lap(tp, st.t_products);
    elementwise::silu(g, g, M * F);  // on the pool itself above its grain
    parallel_rows(M, F, [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0 * F; i < r1 * F; i++) g[i] = g[i] * u[i];
    });
    lap(tp, st.t_swiglu);
    products({{&l.down, tmp}}, g, M, s.isa);
    lap(tp, st.t_products);
    add_into(h, tmp, M, C);
    lap(tp, st.t_norms);
  }
  st.position = S;

  const float* hl = all ? h : h + (M - 1) * C;
  float* xl = all ? xn : xn + (M - 1) * C;
  rms_norm(hl, s.norm, rows_out, C, s.eps, xl);
  if (s.head == kHeadF16) fbi8::f16_product(xl, s.head16, rows_out, C, s.V, out, s.isa);
  else if (s.head == kHeadInt8) fbi8::i8_product(xl, s.head8, s.head_scale, s.head_rowsum, rows_out, C, s.head_kp, s.V, out, s.isa);
  else std::memcpy(out, xl, rows_out * C * sizeof(float));
  lap(tp, st.t_head);
  st.t_call += std::chrono::duration<double>(Clock::now() - start).count();
  return Napi::Number::New(env, static_cast<double>(S));
}

// fbiDecodePosition(state[, position]): the state's position; with a second argument, rewinds it to
// that position (keeping the cached rows before it).
Napi::Value Position(const Napi::CallbackInfo& info) {
  State& st = *state_of(info[0]);
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    const int64_t p = num(info, 1);
    if (p < 0 || p > st.position) fail(info.Env(), "a state can only be rewound to a position in [0, " + std::to_string(st.position) + "]");
    st.position = p;
  }
  return Napi::Number::New(info.Env(), static_cast<double>(st.position));
}

// fbiDecodeTimes(state): milliseconds spent per phase over the state's steps so far.
Napi::Value Times(const Napi::CallbackInfo& info) {
  const State& st = *state_of(info[0]);
  Napi::Object o = Napi::Object::New(info.Env());
  const std::pair<const char*, double> items[] = {
      {"norms_residuals_ms", st.t_norms}, {"products_ms", st.t_products}, {"rope_kv_append_ms", st.t_rope_kv},
      {"attention_ms", st.t_attention}, {"silu_mul_ms", st.t_swiglu}, {"head_ms", st.t_head}, {"native_call_ms", st.t_call}};
  for (const auto& [k, v] : items) o.Set(k, 1000.0 * v);
  return o;
}

}  // namespace
}  // namespace fbi_decode
}  // namespace frugal

FRUGAL_EXPORT("fbiDecodeCreate", frugal::fbi_decode::Create)
FRUGAL_EXPORT("fbiDecodeState", frugal::fbi_decode::NewState)
FRUGAL_EXPORT("fbiDecodeForward", frugal::fbi_decode::Forward)
FRUGAL_EXPORT("fbiDecodePosition", frugal::fbi_decode::Position)
FRUGAL_EXPORT("fbiDecodeTimes", frugal::fbi_decode::Times)
