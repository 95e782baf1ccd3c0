// TTT scan for one (batch, head): the mini-batch dual form, written once with GCC vector types and
// included by ttt.cc inside three `#pragma GCC target` regions (AVX-512, AVX2+FMA, baseline), one
// namespace each. No includes here: ttt.cc includes what this needs before opening the namespaces.
// Needs `TttParams` and `kLnEps` from ttt.cc; included through isa_variants.h.
//
// The math follows the TypeScript reference (src/backend/cpu/ttt.ts) step by step; that file
// documents the formulas. Here every product of the mini-batch is one small GEMM (K = 16 rows by
// the head dim) done by `mm`, which keeps a FRUGAL_ISA_ROWS x (16 * NV) block of C in registers.

#include "small_gemm.h"

// C[m, n] += A(m x kk) B[kk, n] (small_gemm.h).
static inline void mm(int64_t m, int64_t n, int64_t kk, const float* A, int64_t sam, int64_t sak, const float* B,
                      int64_t ldb, float* C, int64_t ldc) {
  small_gemm<float, FRUGAL_ISA_ROWS>(m, n, kk, A, sam, sak, B, ldb, C, ldc);
}

static inline float gelu(float x) {
  return 0.5f * x * (1.0f + std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}
// ttt.py's gelu_bwd (rounded constants), the derivative used inside the inner gradient.
static inline float inner_gelu_grad(float x) {
  const float th = std::tanh(0.79788456f * x * (1.0f + 0.044715f * x * x));
  return 0.5f * x * ((1.0f - th * th) * (0.79788456f + 0.1070322243f * x * x)) + 0.5f * (1.0f + th);
}

// Row statistics in double: the TypeScript reference accumulates in float64 and the tests compare
// to it at 1e-5.
static inline void row_stats(const float* z, int64_t D, float* mu_out, float* inv_out) {
  double mu = 0;
  for (int64_t j = 0; j < D; j++) mu += z[j];
  mu /= static_cast<double>(D);
  double v = 0;
  for (int64_t j = 0; j < D; j++) v += (z[j] - mu) * (z[j] - mu);
  *mu_out = static_cast<float>(mu);
  *inv_out = static_cast<float>(1.0 / std::sqrt(v / static_cast<double>(D) + kLnEps));
}

// Gradient of 1/2 ||LN(z) - tgt||^2 w.r.t. z for one row (ttt.py ln_fused_l2_bwd).
static inline void ln_l2_grad(const float* z, const float* tgt, const float* gam, const float* bet, int64_t D, float* g) {
  float mu, inv;
  row_stats(z, D, &mu, &inv);
  double s1 = 0, s2 = 0;
  for (int64_t j = 0; j < D; j++) {
    const float xh = (z[j] - mu) * inv;
    const float gx = (gam[j] * xh + bet[j] - tgt[j]) * gam[j];
    g[j] = gx;
    s1 += gx;
    s2 += static_cast<double>(gx) * xh;
  }
  const float m1 = static_cast<float>(s1 / D), m2 = static_cast<float>(s2 / D);
  for (int64_t j = 0; j < D; j++) {
    const float xh = (z[j] - mu) * inv;
    g[j] = (g[j] - m1 - xh * m2) * inv;
  }
}

// One inner layer (a inputs, d outputs) with its per-segment arrays.
struct Layer {
  int64_t a = 0, d = 0;
  std::vector<float> W, b, gW, gB, keys, P, G, Z, Zb, sk, T;
  void fit(int64_t a_, int64_t d_, int64_t K) {
    a = a_; d = d_;
    W.resize(a * d); gW.resize(a * d); b.resize(d); gB.resize(d);
    keys.resize(K * a); P.resize(K * a); sk.resize(K * a);
    G.resize(K * d); Z.resize(K * d); Zb.resize(K * d); T.resize(K * d);
  }

  // Z = keys W + b.
  void project(int64_t n) {
    for (int64_t s = 0; s < n; s++) std::memcpy(&Z[s * d], b.data(), d * sizeof(float));
    mm(n, d, a, keys.data(), a, 1, W.data(), d, Z.data(), d);
  }

  // Zb_t = P_t W + b - te_t (P_t gW + gB) - sum_{s<=t} te_t lr_s (P_t . keys_s + 1) G_s.
  // kt: scratch of a * K floats, M: scratch of K * K floats.
  void dual(int64_t n, int64_t K, const float* te, const float* lr, bool has_prev, float* kt, float* M) {
    for (int64_t s = 0; s < n; s++) std::memcpy(&Zb[s * d], b.data(), d * sizeof(float));
    mm(n, d, a, P.data(), a, 1, W.data(), d, Zb.data(), d);
    if (has_prev) {
      for (int64_t s = 0; s < n; s++) std::memcpy(&T[s * d], gB.data(), d * sizeof(float));
      mm(n, d, a, P.data(), a, 1, gW.data(), d, T.data(), d);
      for (int64_t t = 0; t < n; t++)
        for (int64_t j = 0; j < d; j++) Zb[t * d + j] -= te[t] * T[t * d + j];
    }
    // M = -tril(te_t lr_s (P keys^T + 1)), through keys^T laid out [a, K].
    for (int64_t s = 0; s < n; s++)
      for (int64_t i = 0; i < a; i++) kt[i * K + s] = keys[s * a + i];
    std::fill(M, M + n * K, 0.0f);
    mm(n, n, a, P.data(), a, 1, kt, K, M, K);
    for (int64_t t = 0; t < n; t++)
      for (int64_t s = 0; s < n; s++) M[t * K + s] = s <= t ? -te[t] * lr[s] * (M[t * K + s] + 1.0f) : 0.0f;
    mm(n, d, n, M, K, 1, G.data(), d, Zb.data(), d);
  }

  // gW += sum_s lr_s keys_s^T G_s (gB likewise); a completed mini-batch commits W -= te_last gW.
  // Without carried sums a committing segment adds straight into W.
  void update(int64_t n, const float* lr, float te_last, bool commit, bool has_prev) {
    const bool direct = commit && !has_prev;
    const float c = direct ? -te_last : 1.0f;
    for (int64_t s = 0; s < n; s++)
      for (int64_t i = 0; i < a; i++) sk[s * a + i] = c * lr[s] * keys[s * a + i];
    float* dstW = direct ? W.data() : gW.data();
    float* dstB = direct ? b.data() : gB.data();
    mm(a, d, n, sk.data(), 1, a, G.data(), d, dstW, d);
    for (int64_t s = 0; s < n; s++)
      for (int64_t j = 0; j < d; j++) dstB[j] += c * lr[s] * G[s * d + j];
    if (direct || !commit) return;
    for (int64_t i = 0; i < a * d; i++) { W[i] -= te_last * gW[i]; gW[i] = 0.0f; }
    for (int64_t j = 0; j < d; j++) { b[j] -= te_last * gB[j]; gB[j] = 0.0f; }
  }
};

struct HeadWork {
  Layer l[2];
  std::vector<float> q, tgt, lr, te, kt, M, H, w2t;
  void fit(const TttParams& p) {
    const int64_t K = p.K, f = p.f, h = p.h;
    l[0].fit(f, h, K);
    if (p.mlp) l[1].fit(h, f, K);
    q.resize(K * f); tgt.resize(K * f); lr.resize(K); te.resize(K);
    kt.resize(std::max(f, h) * K); M.resize(K * K);
    if (p.mlp) { H.resize(K * h); w2t.resize(f * h); }
  }
};

// The weights of layer li as laid out in the state / parameter / saved arrays.
static inline void load_weights(Layer& L, const float* w, const float* b) {
  std::memcpy(L.W.data(), w, L.W.size() * sizeof(float));
  std::memcpy(L.b.data(), b, L.b.size() * sizeof(float));
}

// The whole scan of head (bi, hh): segments of at most K tokens that stay inside one mini-batch.
static void head_task(const TttParams& p, int64_t bh) {
  static thread_local HeadWork w;
  w.fit(p);
  const int64_t f = p.f, h = p.h, K = p.K, L = p.L, nh = p.nh, bi = bh / nh, hh = bh % nh;
  const int nl = p.mlp ? 2 : 1;
  Layer& l1 = w.l[0];
  Layer& l2 = w.l[1];
  const bool resume = p.st[0] != nullptr && p.start > 0;
  for (int li = 0; li < nl; li++) {
    Layer& Ly = w.l[li];
    const int64_t ws = Ly.a * Ly.d, bs = Ly.d;
    if (resume) {
      load_weights(Ly, p.st[2 * li] + bh * ws, p.st[2 * li + 1] + bh * bs);
      std::memcpy(Ly.gW.data(), p.st[4 + 2 * li] + bh * ws, ws * sizeof(float));
      std::memcpy(Ly.gB.data(), p.st[5 + 2 * li] + bh * bs, bs * sizeof(float));
    } else {
      load_weights(Ly, p.w[2 * li] + hh * ws, p.w[2 * li + 1] + hh * bs);
      std::fill(Ly.gW.begin(), Ly.gW.end(), 0.0f);
      std::fill(Ly.gB.begin(), Ly.gB.end(), 0.0f);
    }
  }
  const float* gam = p.lnW + hh * f;
  const float* bet = p.lnB + hh * f;
  const float te_last = p.te[K - 1];
  bool has_prev = resume && p.start % K != 0;
  int64_t si = 0;
  for (int64_t t0 = 0; t0 < L; si++) {
    const int64_t o = (p.start + t0) % K, n = std::min(K - o, L - t0);
    if (p.sv[0]) {
      for (int li = 0; li < nl; li++) {
        const Layer& Ly = w.l[li];
        const int64_t seg = bh * p.nseg + si;
        std::memcpy(p.sv[2 * li] + seg * Ly.W.size(), Ly.W.data(), Ly.W.size() * sizeof(float));
        std::memcpy(p.sv[2 * li + 1] + seg * Ly.b.size(), Ly.b.data(), Ly.b.size() * sizeof(float));
      }
    }
    // Inputs of this segment: queries, keys, the reconstruction target XV - XK, lr, token eta.
    for (int64_t s = 0; s < n; s++) {
      const int64_t src = (bh * L + t0 + s) * f;
      std::memcpy(&w.q[s * f], p.xq + src, f * sizeof(float));
      std::memcpy(&l1.P[s * f], p.xq + src, f * sizeof(float));
      std::memcpy(&l1.keys[s * f], p.xk + src, f * sizeof(float));
      for (int64_t j = 0; j < f; j++) w.tgt[s * f + j] = p.xv[src + j] - p.xk[src + j];
      w.lr[s] = p.lr[bh * L + t0 + s];
      w.te[s] = p.te[o + s];
    }
    // Inner gradients at the segment's starting weights.
    l1.project(n);
    if (!p.mlp) {
      for (int64_t s = 0; s < n; s++) ln_l2_grad(&l1.Z[s * f], &w.tgt[s * f], gam, bet, f, &l1.G[s * f]);
    } else {
      for (int64_t i = 0; i < n * h; i++) l2.keys[i] = gelu(l1.Z[i]);
      l2.project(n);
      for (int64_t s = 0; s < n; s++) ln_l2_grad(&l2.Z[s * f], &w.tgt[s * f], gam, bet, f, &l2.G[s * f]);
      // G1 = (G2 W2^T) * gelu'(Z1): W2 transposed once per segment so the product is one GEMM.
      for (int64_t i = 0; i < h; i++)
        for (int64_t j = 0; j < f; j++) w.w2t[j * h + i] = l2.W[i * f + j];
      std::fill(w.H.begin(), w.H.begin() + n * h, 0.0f);
      mm(n, h, f, l2.G.data(), f, 1, w.w2t.data(), h, w.H.data(), h);
      for (int64_t i = 0; i < n * h; i++) l1.G[i] = w.H[i] * inner_gelu_grad(l1.Z[i]);
    }
    l1.dual(n, K, w.te.data(), w.lr.data(), has_prev, w.kt.data(), w.M.data());
    Layer& last = p.mlp ? l2 : l1;
    if (p.mlp) {
      for (int64_t i = 0; i < n * h; i++) l2.P[i] = gelu(l1.Zb[i]);
      l2.dual(n, K, w.te.data(), w.lr.data(), has_prev, w.kt.data(), w.M.data());
    }
    // Output rows q + LN(Zb), written to [B, L, nh, f].
    for (int64_t s = 0; s < n; s++) {
      const float* zb = &last.Zb[s * f];
      float mu, inv;
      row_stats(zb, f, &mu, &inv);
      float* dst = p.out + ((bi * L + t0 + s) * nh + hh) * f;
      for (int64_t j = 0; j < f; j++) dst[j] = w.q[s * f + j] + gam[j] * ((zb[j] - mu) * inv) + bet[j];
    }
    const bool commit = o + n == K;
    for (int li = 0; li < nl; li++) w.l[li].update(n, w.lr.data(), te_last, commit, has_prev);
    has_prev = !commit;
    t0 += n;
  }
  if (p.st[0]) {
    for (int li = 0; li < nl; li++) {
      const Layer& Ly = w.l[li];
      const int64_t ws = Ly.a * Ly.d, bs = Ly.d;
      std::memcpy(p.st[2 * li] + bh * ws, Ly.W.data(), ws * sizeof(float));
      std::memcpy(p.st[2 * li + 1] + bh * bs, Ly.b.data(), bs * sizeof(float));
      std::memcpy(p.st[4 + 2 * li] + bh * ws, Ly.gW.data(), ws * sizeof(float));
      std::memcpy(p.st[5 + 2 * li] + bh * bs, Ly.gB.data(), bs * sizeof(float));
    }
  }
}
