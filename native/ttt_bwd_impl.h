// TTT scan backward for one (batch, head), float64 throughout, written once and included by
// ttt_bwd.cc inside three `#pragma GCC target` regions (AVX-512, AVX2+FMA, baseline), one namespace
// each, so the contiguous inner loops are vectorized for each instruction set. No includes here.
// Needs `BwdParams`, `BwdPartial` and `kLnEps` from ttt_bwd.cc.
//
// A line-by-line port of `tttBackwardReference` (src/backend/cpu/ttt.ts), which documents the math:
// each segment is recomputed from the weights saved at its start, then the output LayerNorm, the dual
// form, the commit W' = W - te_last keys^T (lr G), the closed-form inner LN gradient (with its
// second-order terms) and the projections are differentiated in reverse. The reference accumulates
// in float64; so does this, so the two agree to rounding.

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

// One inner layer (a inputs, d outputs) with its per-segment arrays and their gradients.
struct BLayer {
  int64_t a = 0, d = 0;
  std::vector<double> W, b, keys, P, G, Z, Zb, dW, db, dWc, dbc, dKeys, dP, dG, dZb, A, u;
  void fit(int64_t a_, int64_t d_, int64_t K) {
    a = a_; d = d_;
    for (auto* v : {&W, &dW, &dWc}) v->assign(a * d, 0.0);
    for (auto* v : {&b, &db, &dbc, &u}) v->assign(d, 0.0);
    for (auto* v : {&keys, &P, &dKeys, &dP}) v->assign(K * a, 0.0);
    for (auto* v : {&G, &Z, &Zb, &dG, &dZb}) v->assign(K * d, 0.0);
    A.assign(K * K, 0.0);
  }

  // Z = keys W + b.
  void project(int64_t n) {
    for (int64_t s = 0; s < n; s++) {
      double* z = &Z[s * d];
      for (int64_t j = 0; j < d; j++) z[j] = b[j];
      for (int64_t i = 0; i < a; i++) {
        const double x = keys[s * a + i];
        const double* w = &W[i * d];
        for (int64_t j = 0; j < d; j++) z[j] += x * w[j];
      }
    }
  }

  // A[t, s] = P_t . keys_s + 1 for s <= t.
  void gram(int64_t n, int64_t K) {
    for (int64_t t = 0; t < n; t++)
      for (int64_t s = 0; s <= t; s++) {
        double dot = 1;
        for (int64_t i = 0; i < a; i++) dot += P[t * a + i] * keys[s * a + i];
        A[t * K + s] = dot;
      }
  }

  // Dual form without carried sums: Zb_t = P_t W + b - sum_{s<=t} te_t lr_s A[t, s] G_s.
  void dual(int64_t n, int64_t K, const double* te, const double* lr) {
    gram(n, K);
    for (int64_t t = 0; t < n; t++) {
      double* zb = &Zb[t * d];
      for (int64_t j = 0; j < d; j++) zb[j] = b[j];
      for (int64_t i = 0; i < a; i++) {
        const double x = P[t * a + i];
        const double* w = &W[i * d];
        for (int64_t j = 0; j < d; j++) zb[j] += x * w[j];
      }
      for (int64_t s = 0; s <= t; s++) {
        const double c = te[t] * lr[s] * A[t * K + s];
        const double* g = &G[s * d];
        for (int64_t j = 0; j < d; j++) zb[j] -= c * g[j];
      }
    }
  }

  // Backward of dual(): accumulates into dP, dKeys, dG, dW, db, dte, dlr. Uses A from dual().
  void dual_backward(int64_t n, int64_t K, const double* te, const double* lr, double* dte, double* dlr) {
    for (int64_t t = 0; t < n; t++) {
      const double* dz = &dZb[t * d];
      const double* p = &P[t * a];
      for (int64_t j = 0; j < d; j++) db[j] += dz[j];
      for (int64_t i = 0; i < a; i++) {
        const double* w = &W[i * d];
        double* dw = &dW[i * d];
        const double x = p[i];
        double acc = 0;
        for (int64_t j = 0; j < d; j++) {
          acc += dz[j] * w[j];
          dw[j] += x * dz[j];
        }
        dP[t * a + i] += acc;
      }
      for (int64_t s = 0; s <= t; s++) {
        const double* g = &G[s * d];
        const double* k = &keys[s * a];
        double m = 0;
        for (int64_t j = 0; j < d; j++) m += dz[j] * g[j];
        const double dot = A[t * K + s];
        dte[t] -= m * lr[s] * dot;
        dlr[s] -= m * te[t] * dot;
        const double dA = -m * te[t] * lr[s];
        double* dp = &dP[t * a];
        double* dk = &dKeys[s * a];
        for (int64_t i = 0; i < a; i++) {
          dp[i] += dA * k[i];
          dk[i] += dA * p[i];
        }
        const double c = te[t] * lr[s] * dot;
        double* dg = &dG[s * d];
        for (int64_t j = 0; j < d; j++) dg[j] -= c * dz[j];
      }
    }
  }

  // Backward of the commit W' = W - te_last sum_s lr_s keys_s^T G_s (b' likewise), given dWc/dbc;
  // returns dL/d te_last.
  double update_backward(int64_t n, const double* lr, double te_last, double* dlr) {
    double dte_last = 0;
    for (int64_t s = 0; s < n; s++) {
      const double* g = &G[s * d];
      const double* k = &keys[s * a];
      std::fill(u.begin(), u.end(), 0.0);
      for (int64_t i = 0; i < a; i++) {
        const double x = k[i];
        const double* dwc = &dWc[i * d];
        double acc = 0;
        for (int64_t j = 0; j < d; j++) {
          u[j] += x * dwc[j];
          acc += dwc[j] * g[j];
        }
        dKeys[s * a + i] -= te_last * lr[s] * acc;
      }
      double dcl = 0;
      double* dg = &dG[s * d];
      for (int64_t j = 0; j < d; j++) {
        dcl -= (u[j] + dbc[j]) * g[j];
        dg[j] -= te_last * lr[s] * (u[j] + dbc[j]);
      }
      dte_last += dcl * lr[s];
      dlr[s] += dcl * te_last;
    }
    return dte_last;
  }

  // Backward of project(): dKeys += dZ W^T, dW += keys^T dZ, db += sum dZ.
  void project_backward(int64_t n, const double* dZ) {
    for (int64_t s = 0; s < n; s++) {
      const double* dz = &dZ[s * d];
      for (int64_t j = 0; j < d; j++) db[j] += dz[j];
      for (int64_t i = 0; i < a; i++) {
        const double* w = &W[i * d];
        double* dw = &dW[i * d];
        const double x = keys[s * a + i];
        double acc = 0;
        for (int64_t j = 0; j < d; j++) {
          acc += dz[j] * w[j];
          dw[j] += x * dz[j];
        }
        dKeys[s * a + i] += acc;
      }
    }
  }
};

struct BHeadWork {
  BLayer l[2];
  std::vector<double> q, tgt, lr, te, dte, dlr, dq, dtgt, dZ2, dZ1, H, scratch;
  void fit(const BwdParams& p) {
    const int64_t K = p.K, f = p.f, h = p.h;
    l[0].fit(f, h, K);
    if (p.mlp) l[1].fit(h, f, K);
    for (auto* v : {&q, &tgt, &dq, &dtgt, &dZ2}) v->assign(K * f, 0.0);
    for (auto* v : {&lr, &te, &dte, &dlr}) v->assign(K, 0.0);
    dZ1.assign(K * h, 0.0);
    H.assign(K * h, 0.0);
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
      const float* sw = p.sv[2 * li] + seg * ws;
      const float* sb = p.sv[2 * li + 1] + seg * bs;
      for (int64_t i = 0; i < ws; i++) Ly.W[i] = sw[i];
      for (int64_t i = 0; i < bs; i++) Ly.b[i] = sb[i];
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
      for (int64_t s = 0; s < n; s++)
        for (int64_t i = 0; i < h; i++) {
          double acc = 0;
          const double* g = &l2.G[s * f];
          const double* wr = &l2.W[i * f];
          for (int64_t j = 0; j < f; j++) acc += g[j] * wr[j];
          w.H[s * h + i] = acc;
          l1.G[s * h + i] = acc * inner_gelu_grad(l1.Z[s * h + i]);
        }
    }
    l1.dual(n, K, w.te.data(), w.lr.data());
    if (p.mlp) {
      for (int64_t i = 0; i < n * h; i++) l2.P[i] = gelu(l1.Zb[i]);
      l2.dual(n, K, w.te.data(), w.lr.data());
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
      l2.dual_backward(n, K, w.te.data(), w.lr.data(), w.dte.data(), w.dlr.data());
      for (int64_t i = 0; i < n * h; i++) l1.dZb[i] = l2.dP[i] * gelu_grad(l1.Zb[i]);
    }
    l1.dual_backward(n, K, w.te.data(), w.lr.data(), w.dte.data(), w.dlr.data());
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
      for (int64_t s = 0; s < n; s++)
        for (int64_t i = 0; i < h; i++) {
          const double z = l1.Z[s * h + i];
          const double dg1 = l1.dG[s * h + i];
          const double dH = dg1 * inner_gelu_grad(z);
          w.dZ1[s * h + i] = dg1 * w.H[s * h + i] * inner_gelu_grad2(z);
          double* dg2 = &l2.dG[s * f];
          double* dw2 = &l2.dW[i * f];
          const double* w2 = &l2.W[i * f];
          const double* g2 = &l2.G[s * f];
          for (int64_t j = 0; j < f; j++) {
            dg2[j] += dH * w2[j];
            dw2[j] += dH * g2[j];
          }
        }
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
