// TTT scan backward for one (batch, head), float64 throughout, written once and included by
// ttt_bwd.cc inside three `#pragma GCC target` regions (AVX-512, AVX2+FMA, baseline), one namespace
// each, so the contiguous inner loops (dot / axpy) are vectorized for each instruction set. No includes here.
// Needs `BwdParams`, `BwdPartial` and `kLnEps` from ttt_bwd.cc; included through isa_variants.h.
//
// A line-by-line port of `tttBackwardReference` (src/backend/cpu/ttt.ts), which documents the math:
// each segment is recomputed from the weights saved at its start, then the output LayerNorm, the dual
// form, the commit W' = W - te_last keys^T (lr G), the closed-form inner LN gradient (with its
// second-order terms) and the projections are differentiated in reverse. The reference accumulates
// in float64; so does this, so the two agree to rounding (dot products sum in a different order).

#include "small_gemm.h"

namespace {
constexpr double kGeluC = 0.7978845608028654;  // sqrt(2 / pi)
// ttt.py's gelu_bwd uses these rounded constants for the inner model's gradient.
constexpr double kGbC = 0.79788456;
constexpr double kGbC3 = 0.1070322243;

inline double gelu(double x) { return 0.5 * x * (1 + std::tanh(kGeluC * (x + 0.044715 * x * x * x))); }
inline double gelu_grad(double x) {
  const double th = std::tanh(kGeluC * (x + 0.044715 * x * x * x));
  return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * kGeluC * (1 + 3 * 0.044715 * x * x);
}
inline double inner_gelu_grad(double x) {
  const double th = std::tanh(kGbC * x * (1 + 0.044715 * x * x));
  return 0.5 * x * ((1 - th * th) * (kGbC + kGbC3 * x * x)) + 0.5 * (1 + th);
}
// d/dx of inner_gelu_grad: the outer loss differentiates through the inner gradient.
inline double inner_gelu_grad2(double x) {
  const double th = std::tanh(kGbC * x * (1 + 0.044715 * x * x));
  const double up = kGbC + kGbC3 * x * x;
  return (1 - th * th) * (up - x * th * up * up + kGbC3 * x * x);
}

// Dot product with 8-lane partial sums: GCC does not vectorize a plain reduction without
// reassociation, and these dots are most of the backward's work.
typedef double v8d __attribute__((vector_size(64)));
typedef double v8du __attribute__((vector_size(64), aligned(8)));
inline double dot(const double* x, const double* y, int64_t n) {
  v8d acc0{}, acc1{};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    acc0 += *reinterpret_cast<const v8du*>(x + j) * *reinterpret_cast<const v8du*>(y + j);
    acc1 += *reinterpret_cast<const v8du*>(x + j + 8) * *reinterpret_cast<const v8du*>(y + j + 8);
  }
  if (j + 8 <= n) {
    acc0 += *reinterpret_cast<const v8du*>(x + j) * *reinterpret_cast<const v8du*>(y + j);
    j += 8;
  }
  acc0 += acc1;
  double r = 0;
  for (int k = 0; k < 8; k++) r += acc0[k];
  for (; j < n; j++) r += x[j] * y[j];
  return r;
}
// y += c x.
inline void axpy(double c, const double* __restrict x, double* __restrict y, int64_t n) {
  for (int64_t j = 0; j < n; j++) y[j] += c * x[j];
}

inline void row_stats(const double* z, int64_t D, double* mu_out, double* std_out) {
  double mu = 0;
  for (int64_t j = 0; j < D; j++) mu += z[j];
  mu /= static_cast<double>(D);
  double v = 0;
  for (int64_t j = 0; j < D; j++) v += (z[j] - mu) * (z[j] - mu);
  *mu_out = mu;
  *std_out = std::sqrt(v / static_cast<double>(D) + kLnEps);
}

// Gradient of 1/2 ||LN(z) - tgt||^2 w.r.t. z for one row (ttt.py ln_fused_l2_bwd).
void ln_l2_grad(const double* z, const double* tgt, const float* gam, const float* bet, int64_t D, double* g) {
  double mu, sd;
  row_stats(z, D, &mu, &sd);
  double s1 = 0, s2 = 0;
  for (int64_t j = 0; j < D; j++) {
    const double xh = (z[j] - mu) / sd;
    const double gx = (gam[j] * xh + bet[j] - tgt[j]) * gam[j];
    g[j] = gx;
    s1 += gx;
    s2 += gx * xh;
  }
  for (int64_t j = 0; j < D; j++) {
    const double xh = (z[j] - mu) / sd;
    g[j] = (g[j] - s1 / D - (xh * s2) / D) / sd;
  }
}

// Vector-Jacobian product of ln_l2_grad given dG: dz (written), dtgt, dgam, dbet (accumulated).
// s: scratch of 4 D doubles.
void ln_l2_grad_backward(const double* z, const double* tgt, const float* gam, const float* bet, int64_t D,
                         const double* dG, double* dz, double* dtgt, double* dgam, double* dbet, double* s) {
  double mu, sd;
  row_stats(z, D, &mu, &sd);
  double* xh = s;
  double* go = s + D;
  double* gx = s + 2 * D;
  double* dxh = s + 3 * D;
  double s1 = 0, s2 = 0, su = 0, sux = 0, dstd = 0;
  for (int64_t j = 0; j < D; j++) {
    xh[j] = (z[j] - mu) / sd;
    go[j] = gam[j] * xh[j] + bet[j] - tgt[j];
    gx[j] = go[j] * gam[j];
    s1 += gx[j];
    s2 += gx[j] * xh[j];
  }
  for (int64_t j = 0; j < D; j++) {
    const double u = dG[j] / sd;
    su += u;
    sux += u * xh[j];
    const double g_out = (gx[j] - s1 / D - (xh[j] * s2) / D) / sd;
    dstd -= dG[j] * g_out / sd;
  }
  double mdx = 0, mdxx = 0;
  for (int64_t j = 0; j < D; j++) {
    const double u = dG[j] / sd;
    const double dgx = u - su / D - (xh[j] * sux) / D;
    const double dgo = dgx * gam[j];
    dgam[j] += dgx * go[j] + dgo * xh[j];
    dbet[j] += dgo;
    dtgt[j] -= dgo;
    dxh[j] = -(s2 / D) * u - (sux / D) * gx[j] + dgo * gam[j];
    mdx += dxh[j];
    mdxx += dxh[j] * xh[j];
  }
  mdx /= D;
  mdxx /= D;
  for (int64_t j = 0; j < D; j++) dz[j] = (dxh[j] - mdx - xh[j] * mdxx) / sd + (dstd * xh[j]) / D;
}

// C[m, n] += A(m x kk) B[kk, n] in double (small_gemm.h).
inline void mmd(int64_t m, int64_t n, int64_t kk, const double* A, int64_t sam, int64_t sak, const double* B, int64_t ldb,
                double* C, int64_t ldc) {
  small_gemm<double, FRUGAL_ISA_ROWS>(m, n, kk, A, sam, sak, B, ldb, C, ldc);
}

// dst[c, r] = src[r, c] for a rows x c columns source.
inline void transpose(const double* src, int64_t rows, int64_t cols, double* dst) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) dst[c * rows + r] = src[r * cols + c];
}

// One inner layer (a inputs, d outputs) with its per-segment arrays and their gradients.
// Wt = W^T (set by load()); A[t, s] = P_t . keys_s + 1 and M[t, s] = -te_t lr_s A[t, s] for s <= t,
// zero above the diagonal (set by dual()).
struct BLayer {
  int64_t a = 0, d = 0, K = 0;
  std::vector<double> W, Wt, b, keys, P, G, Z, Zb, dW, db, dWc, dbc, dKeys, dP, dG, dZb, A, M, D, U, Q, dWct;
  void fit(int64_t a_, int64_t d_, int64_t K_) {
    a = a_; d = d_; K = K_;
    for (auto* v : {&W, &Wt, &dW, &dWc, &dWct}) v->assign(a * d, 0.0);
    for (auto* v : {&b, &db, &dbc}) v->assign(d, 0.0);
    for (auto* v : {&keys, &P, &dKeys, &dP, &Q}) v->assign(K * a, 0.0);
    for (auto* v : {&G, &Z, &Zb, &dG, &dZb, &U}) v->assign(K * d, 0.0);
    A.assign(K * K, 0.0);
    M.assign(K * K, 0.0);
    D.assign(K * K, 0.0);
  }

  void load(const float* w, const float* bias) {
    for (int64_t i = 0; i < a * d; i++) W[i] = w[i];
    for (int64_t j = 0; j < d; j++) b[j] = bias[j];
    transpose(W.data(), a, d, Wt.data());
  }

  // Z = keys W + b.
  void project(int64_t n) {
    for (int64_t s = 0; s < n; s++) std::copy(b.begin(), b.end(), Z.begin() + s * d);
    mmd(n, d, a, keys.data(), a, 1, W.data(), d, Z.data(), d);
  }

  // Dual form without carried sums: Zb = P W + b + M G.
  void dual(int64_t n, const double* te, const double* lr) {
    for (int64_t t = 0; t < n; t++) {
      for (int64_t s = 0; s < n; s++) {
        A[t * K + s] = s <= t ? 1 + dot(&P[t * a], &keys[s * a], a) : 0.0;
        M[t * K + s] = -te[t] * lr[s] * A[t * K + s];
      }
    }
    for (int64_t t = 0; t < n; t++) std::copy(b.begin(), b.end(), Zb.begin() + t * d);
    mmd(n, d, a, P.data(), a, 1, W.data(), d, Zb.data(), d);
    mmd(n, d, n, M.data(), K, 1, G.data(), d, Zb.data(), d);
  }

  // Backward of dual(): accumulates into dP, dKeys, dG, dW, db, dte, dlr.
  void dual_backward(int64_t n, const double* te, const double* lr, double* dte, double* dlr) {
    for (int64_t t = 0; t < n; t++) axpy(1.0, &dZb[t * d], db.data(), d);
    mmd(n, a, d, dZb.data(), d, 1, Wt.data(), a, dP.data(), a);  // dP += dZb W^T
    mmd(a, d, n, P.data(), 1, a, dZb.data(), d, dW.data(), d);   // dW += P^T dZb
    // D[t, s] = dL/d(P_t . keys_s) = -(dz_t . G_s) te_t lr_s; M = -te lr A gives the te / lr terms.
    for (int64_t t = 0; t < n; t++)
      for (int64_t s = 0; s < n; s++) {
        if (s > t) { D[t * K + s] = 0.0; continue; }
        const double m = dot(&dZb[t * d], &G[s * d], d);
        const double at = A[t * K + s];
        dte[t] -= m * lr[s] * at;
        dlr[s] -= m * te[t] * at;
        D[t * K + s] = -m * te[t] * lr[s];
      }
    mmd(n, a, n, D.data(), K, 1, keys.data(), a, dP.data(), a);  // dP_t += sum_s D[t, s] keys_s
    mmd(n, a, n, D.data(), 1, K, P.data(), a, dKeys.data(), a);  // dKeys_s += sum_t D[t, s] P_t
    mmd(n, d, n, M.data(), 1, K, dZb.data(), d, dG.data(), d);   // dG_s += sum_t M[t, s] dz_t
  }

  // Backward of the commit W' = W - te_last sum_s lr_s keys_s^T G_s (b' likewise), given dWc/dbc;
  // returns dL/d te_last.
  double update_backward(int64_t n, const double* lr, double te_last, double* dlr) {
    // U_s = keys_s dWc + dbc, Q = G dWc^T.
    for (int64_t s = 0; s < n; s++) std::copy(dbc.begin(), dbc.end(), U.begin() + s * d);
    mmd(n, d, a, keys.data(), a, 1, dWc.data(), d, U.data(), d);
    transpose(dWc.data(), a, d, dWct.data());
    std::fill(Q.begin(), Q.begin() + n * a, 0.0);
    mmd(n, a, d, G.data(), d, 1, dWct.data(), a, Q.data(), a);
    double dte_last = 0;
    for (int64_t s = 0; s < n; s++) {
      axpy(-te_last * lr[s], &Q[s * a], &dKeys[s * a], a);
      const double dcl = -dot(&U[s * d], &G[s * d], d);
      axpy(-te_last * lr[s], &U[s * d], &dG[s * d], d);
      dte_last += dcl * lr[s];
      dlr[s] += dcl * te_last;
    }
    return dte_last;
  }

  // Backward of project(): dKeys += dZ W^T, dW += keys^T dZ, db += sum dZ.
  void project_backward(int64_t n, const double* dZ) {
    for (int64_t s = 0; s < n; s++) axpy(1.0, &dZ[s * d], db.data(), d);
    mmd(n, a, d, dZ, d, 1, Wt.data(), a, dKeys.data(), a);
    mmd(a, d, n, keys.data(), 1, a, dZ, d, dW.data(), d);
  }
};

struct BHeadWork {
  BLayer l[2];
  std::vector<double> q, tgt, lr, te, dte, dlr, dq, dtgt, dZ2, dZ1, H, dH, scratch;
  void fit(const BwdParams& p) {
    const int64_t K = p.K, f = p.f, h = p.h;
    l[0].fit(f, h, K);
    if (p.mlp) l[1].fit(h, f, K);
    for (auto* v : {&q, &tgt, &dq, &dtgt, &dZ2}) v->assign(K * f, 0.0);
    for (auto* v : {&lr, &te, &dte, &dlr}) v->assign(K, 0.0);
    dZ1.assign(K * h, 0.0);
    H.assign(K * h, 0.0);
    dH.assign(K * h, 0.0);
    scratch.assign(4 * std::max(f, h), 0.0);
  }
};
}  // namespace

// Backward of the whole scan of head (bi, hh), segments in reverse. Per-head gradients go to
// `part` (this task's own slot); per-token gradients straight to the outputs.
static void bwd_head_task(const BwdParams& p, int64_t bh, const BwdPartial& part) {
  static thread_local BHeadWork w;
  w.fit(p);
  const int64_t f = p.f, h = p.h, K = p.K, L = p.L, nh = p.nh, bi = bh / nh, hh = bh % nh;
  const int nl = p.mlp ? 2 : 1;
  BLayer& l1 = w.l[0];
  BLayer& l2 = w.l[1];
  BLayer& last = p.mlp ? l2 : l1;
  const float* gam = p.lnW + hh * f;
  const float* bet = p.lnB + hh * f;
  const double te_last = p.te[K - 1];
  for (int li = 0; li < nl; li++) {
    std::fill(w.l[li].dWc.begin(), w.l[li].dWc.end(), 0.0);
    std::fill(w.l[li].dbc.begin(), w.l[li].dbc.end(), 0.0);
  }
  for (int64_t si = p.nseg - 1; si >= 0; si--) {
    // A backward follows a stateless forward from position 0: segment si covers [si K, si K + n).
    const int64_t t0 = si * K, n = std::min(K, L - t0);
    const bool commit = n == K;
    for (int li = 0; li < nl; li++) {
      BLayer& Ly = w.l[li];
      const int64_t ws = Ly.a * Ly.d, bs = Ly.d, seg = bh * p.nseg + si;
      Ly.load(p.sv[2 * li] + seg * ws, p.sv[2 * li + 1] + seg * bs);
    }
    for (int64_t s = 0; s < n; s++) {
      const int64_t src = (bh * L + t0 + s) * f;
      for (int64_t j = 0; j < f; j++) {
        const double q = p.xq[src + j], k = p.xk[src + j], v = p.xv[src + j];
        w.q[s * f + j] = q;
        l1.P[s * f + j] = q;
        l1.keys[s * f + j] = k;
        w.tgt[s * f + j] = v - k;
      }
      w.lr[s] = p.lr[bh * L + t0 + s];
      w.te[s] = p.te[s];
    }
    // Recompute the segment's forward: inner gradients, then the dual form.
    l1.project(n);
    if (!p.mlp) {
      for (int64_t s = 0; s < n; s++) ln_l2_grad(&l1.Z[s * f], &w.tgt[s * f], gam, bet, f, &l1.G[s * f]);
    } else {
      for (int64_t i = 0; i < n * h; i++) l2.keys[i] = gelu(l1.Z[i]);
      l2.project(n);
      for (int64_t s = 0; s < n; s++) ln_l2_grad(&l2.Z[s * f], &w.tgt[s * f], gam, bet, f, &l2.G[s * f]);
      // G1 = H * gelu'(Z1), H = G2 W2^T kept for the backward.
      std::fill(w.H.begin(), w.H.begin() + n * h, 0.0);
      mmd(n, h, f, l2.G.data(), f, 1, l2.Wt.data(), h, w.H.data(), h);
      for (int64_t i = 0; i < n * h; i++) l1.G[i] = w.H[i] * inner_gelu_grad(l1.Z[i]);
    }
    l1.dual(n, w.te.data(), w.lr.data());
    if (p.mlp) {
      for (int64_t i = 0; i < n * h; i++) l2.P[i] = gelu(l1.Zb[i]);
      l2.dual(n, w.te.data(), w.lr.data());
    }

    // W' = W - ..., so dL/dW starts from dL/dW'.
    for (int li = 0; li < nl; li++) {
      BLayer& Ly = w.l[li];
      Ly.dW = Ly.dWc;
      Ly.db = Ly.dbc;
      std::fill(Ly.dKeys.begin(), Ly.dKeys.begin() + n * Ly.a, 0.0);
      std::fill(Ly.dP.begin(), Ly.dP.begin() + n * Ly.a, 0.0);
      std::fill(Ly.dG.begin(), Ly.dG.begin() + n * Ly.d, 0.0);
    }
    for (auto* v : {&w.dte, &w.dlr, &w.dq, &w.dtgt}) std::fill(v->begin(), v->end(), 0.0);

    // out = q + LN(Zb): LayerNorm backward into last.dZb.
    for (int64_t t = 0; t < n; t++) {
      const float* dy = p.dOut + ((bi * L + t0 + t) * nh + hh) * f;
      const double* zb = &last.Zb[t * f];
      double mu, sd;
      row_stats(zb, f, &mu, &sd);
      double m1 = 0, m2 = 0;
      double* dxh = w.scratch.data();
      for (int64_t j = 0; j < f; j++) {
        const double xh = (zb[j] - mu) / sd;
        w.dq[t * f + j] += dy[j];
        part.dlnW[j] += dy[j] * xh;
        part.dlnB[j] += dy[j];
        dxh[j] = dy[j] * static_cast<double>(gam[j]);
        m1 += dxh[j];
        m2 += dxh[j] * xh;
      }
      m1 /= f;
      m2 /= f;
      for (int64_t j = 0; j < f; j++) {
        const double xh = (zb[j] - mu) / sd;
        last.dZb[t * f + j] = (dxh[j] - m1 - xh * m2) / sd;
      }
    }
    if (p.mlp) {
      l2.dual_backward(n, w.te.data(), w.lr.data(), w.dte.data(), w.dlr.data());
      for (int64_t i = 0; i < n * h; i++) l1.dZb[i] = l2.dP[i] * gelu_grad(l1.Zb[i]);
    }
    l1.dual_backward(n, w.te.data(), w.lr.data(), w.dte.data(), w.dlr.data());
    if (commit) {
      double dte_l = 0;
      for (int li = 0; li < nl; li++) dte_l += w.l[li].update_backward(n, w.lr.data(), te_last, w.dlr.data());
      w.dte[K - 1] += dte_l;
    }
    // Inner gradients backward.
    if (!p.mlp) {
      for (int64_t s = 0; s < n; s++)
        ln_l2_grad_backward(&l1.Z[s * f], &w.tgt[s * f], gam, bet, f, &l1.dG[s * f], &w.dZ2[s * f], &w.dtgt[s * f],
                            part.dlnW, part.dlnB, w.scratch.data());
      l1.project_backward(n, w.dZ2.data());
    } else {
      for (int64_t i = 0; i < n * h; i++) {
        const double z = l1.Z[i], dg1 = l1.dG[i];
        w.dH[i] = dg1 * inner_gelu_grad(z);
        w.dZ1[i] = dg1 * w.H[i] * inner_gelu_grad2(z);
      }
      mmd(n, f, h, w.dH.data(), h, 1, l2.W.data(), f, l2.dG.data(), f);  // dG2 += dH W2
      mmd(h, f, n, w.dH.data(), 1, h, l2.G.data(), f, l2.dW.data(), f);  // dW2 += dH^T G2
      for (int64_t s = 0; s < n; s++)
        ln_l2_grad_backward(&l2.Z[s * f], &w.tgt[s * f], gam, bet, f, &l2.dG[s * f], &w.dZ2[s * f], &w.dtgt[s * f],
                            part.dlnW, part.dlnB, w.scratch.data());
      l2.project_backward(n, w.dZ2.data());  // dKeys of layer 2 = dX2
      for (int64_t i = 0; i < n * h; i++) w.dZ1[i] += l2.dKeys[i] * gelu_grad(l1.Z[i]);
      l1.project_backward(n, w.dZ1.data());
    }

    for (int64_t t = 0; t < n; t++) part.dte[t] += w.dte[t];
    for (int64_t t = 0; t < n; t++) {
      const int64_t dst = (bh * L + t0 + t) * f;
      for (int64_t j = 0; j < f; j++) {
        p.dxq[dst + j] = static_cast<float>(w.dq[t * f + j] + l1.dP[t * f + j]);
        p.dxk[dst + j] = static_cast<float>(l1.dKeys[t * f + j] - w.dtgt[t * f + j]);
        p.dxv[dst + j] = static_cast<float>(w.dtgt[t * f + j]);
      }
      p.dlr[bh * L + t0 + t] = static_cast<float>(w.dlr[t]);
    }
    for (int li = 0; li < nl; li++) {
      w.l[li].dWc = w.l[li].dW;
      w.l[li].dbc = w.l[li].db;
    }
  }
  for (int li = 0; li < nl; li++) {
    std::copy(w.l[li].dWc.begin(), w.l[li].dWc.end(), part.dw[2 * li]);
    std::copy(w.l[li].dbc.begin(), w.l[li].dbc.end(), part.dw[2 * li + 1]);
  }
}
