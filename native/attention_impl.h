// Fused attention tiles, written once with GCC vector types and included by attention.cc inside
// three `#pragma GCC target` regions (AVX-512, AVX2+FMA, baseline), one namespace each: the same
// source becomes zmm, ymm or xmm code. No includes here: attention.cc includes what this needs
// before opening the namespaces. Needs `AttnParams` and `kBQ`, `kBK` from attention.cc.
//
// Scores are kept in base 2: Q is pre-multiplied by scale * log2(e) so p = exp2(s - m) and
// lse2 = lse * log2(e); lse itself is stored in natural-log units of scale * q.k.

#include "vec16.h"
#include "small_gemm.h"

// C[m, n] (+)= A(m x kk) B[kk, n] (small_gemm.h); two rows at a time keep 2 * NV independent FMA chains.
static inline void mm(int64_t m, int64_t n, int64_t kk, const float* A, int64_t sam, int64_t sak, const float* B,
                      int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  small_gemm<float, 2>(m, n, kk, A, sam, sak, B, ldb, C, ldc, accumulate);
}

// Copies `rows` rows of D floats (stride `ld`) into a [rows, Dp] tile scaled by `mul`, zero padded
// to `prows` rows; transposed = true writes the [D, prows] transpose instead.
static inline void load_tile(const float* src, int64_t ld, int64_t rows, int64_t prows, int64_t D, int64_t Dp,
                             float mul, float* dst, bool transposed) {
  if (transposed) {
    for (int64_t d = 0; d < D; d++)
      for (int64_t r = 0; r < prows; r++) dst[d * prows + r] = r < rows ? mul * src[r * ld + d] : 0.0f;
    return;
  }
  for (int64_t r = 0; r < prows; r++) {
    float* o = dst + r * Dp;
    if (r < rows) {
      for (int64_t d = 0; d < D; d++) o[d] = mul * src[r * ld + d];
      for (int64_t d = D; d < Dp; d++) o[d] = 0.0f;
    } else {
      for (int64_t d = 0; d < Dp; d++) o[d] = 0.0f;
    }
  }
}

// Number of keys of block [j0, j0 + nk) that query row i may see.
static inline int64_t visible(const AttnParams& p, int64_t i, int64_t j0, int64_t nk) {
  if (!p.causal) return nk;
  return std::max<int64_t>(0, std::min<int64_t>(nk, i + (p.S - p.L) + 1 - j0));
}

// Scratch sized for one task; thread_local so persistent pool threads reuse it.
struct Tiles {
  std::vector<float> q, kt, vt, k, v, s, dp, acc, dk, dv, dqb, rowm, rowl;
  void fit(int64_t Dp) {
    q.resize(kBQ * Dp); acc.resize(kBQ * Dp); dqb.resize(kBQ * Dp);
    kt.resize(Dp * kBK); vt.resize(Dp * kBK); k.resize(kBK * Dp); v.resize(kBK * Dp);
    dk.resize(kBK * Dp); dv.resize(kBK * Dp); s.resize(kBQ * kBK); dp.resize(kBQ * kBK);
    rowm.resize(kBQ); rowl.resize(kBQ);
  }
};

// One (b, h, query block) of the forward pass with an online softmax over key blocks.
static void forward_task(const AttnParams& p, int64_t b, int64_t h, int64_t i0) {
  static thread_local Tiles t;
  const int64_t D = p.D, Dp = (D + 15) / 16 * 16, kvh = h / (p.H / p.Hkv);
  t.fit(Dp);
  const int64_t nq = std::min<int64_t>(kBQ, p.L - i0);
  const int64_t qld = p.H * D, kld = p.Hkv * D;
  const float c = p.scale * 1.4426950408889634f;
  load_tile(p.q + (b * p.L + i0) * qld + h * D, qld, nq, kBQ, D, Dp, c, t.q.data(), false);
  std::fill(t.acc.begin(), t.acc.end(), 0.0f);
  std::fill(t.rowm.begin(), t.rowm.end(), -INFINITY);
  std::fill(t.rowl.begin(), t.rowl.end(), 0.0f);
  const int64_t kend = p.causal ? std::min<int64_t>(p.S, i0 + nq + (p.S - p.L)) : p.S;
  const float* kbase = p.k + b * p.S * kld + kvh * D;
  const float* vbase = p.v + b * p.S * kld + kvh * D;
  for (int64_t j0 = 0; j0 < kend; j0 += kBK) {
    const int64_t nk = std::min<int64_t>(kBK, kend - j0);
    load_tile(kbase + j0 * kld, kld, nk, kBK, D, Dp, 1.0f, t.kt.data(), true);
    load_tile(vbase + j0 * kld, kld, nk, kBK, D, Dp, 1.0f, t.v.data(), false);
    mm(nq, kBK, D, t.q.data(), Dp, 1, t.kt.data(), kBK, t.s.data(), kBK, false);
    for (int64_t i = 0; i < nq; i++) {
      float* s = t.s.data() + i * kBK;
      const int64_t vis = visible(p, i0 + i, j0, nk);
      float mx = -INFINITY;
      for (int64_t j = 0; j < vis; j++) mx = std::max(mx, s[j]);
      const float mnew = std::max(t.rowm[i], mx);
      if (mnew == -INFINITY) {  // nothing visible yet: the row contributes nothing
        std::fill(s, s + kBK, 0.0f);
        continue;
      }
      const float corr = std::exp2(t.rowm[i] - mnew);
      v16 sum{};
      for (int64_t j = 0; j < kBK; j += 16) {
        v16 e = exp2v(ld(s + j) - mnew);
        st(s + j, e);
      }
      for (int64_t j = vis; j < kBK; j++) s[j] = 0.0f;
      for (int64_t j = 0; j < kBK; j += 16) sum += ld(s + j);
      float l = 0.0f;
      for (int z = 0; z < 16; z++) l += sum[z];
      t.rowl[i] = t.rowl[i] * corr + l;
      t.rowm[i] = mnew;
      float* a = t.acc.data() + i * Dp;
      for (int64_t d = 0; d < Dp; d += 16) st(a + d, ld(a + d) * corr);
    }
    mm(nq, Dp, nk, t.s.data(), kBK, 1, t.v.data(), Dp, t.acc.data(), Dp, true);
  }
  for (int64_t i = 0; i < nq; i++) {
    float* o = p.o + (b * p.L + i0 + i) * qld + h * D;
    const float inv = 1.0f / t.rowl[i];
    for (int64_t d = 0; d < D; d++) o[d] = t.acc[i * Dp + d] * inv;
    p.lse[(b * p.H + h) * p.L + i0 + i] = (t.rowm[i] + std::log2(t.rowl[i])) * 0.6931471805599453f;
  }
}

// One (b, kv head, key block) of the backward pass: dk and dv of these keys are complete when it
// ends (it visits every query head of the group and every query row that sees the keys); dq
// contributions go to `dq`, the calling thread's private accumulator.
static void backward_task(const AttnParams& p, const float* dsum, float* dq, int64_t b, int64_t kvh, int64_t j0) {
  static thread_local Tiles t;
  const int64_t D = p.D, Dp = (D + 15) / 16 * 16, G = p.H / p.Hkv;
  t.fit(Dp);
  const int64_t nk = std::min<int64_t>(kBK, p.S - j0);
  const int64_t qld = p.H * D, kld = p.Hkv * D;
  const float c = p.scale * 1.4426950408889634f;
  const float* kb = p.k + (b * p.S + j0) * kld + kvh * D;
  const float* vb = p.v + (b * p.S + j0) * kld + kvh * D;
  load_tile(kb, kld, nk, kBK, D, Dp, 1.0f, t.k.data(), false);
  load_tile(kb, kld, nk, kBK, D, Dp, 1.0f, t.kt.data(), true);
  load_tile(vb, kld, nk, kBK, D, Dp, 1.0f, t.vt.data(), true);
  std::fill(t.dk.begin(), t.dk.end(), 0.0f);
  std::fill(t.dv.begin(), t.dv.end(), 0.0f);
  const int64_t ifirst = p.causal ? std::max<int64_t>(0, j0 - (p.S - p.L)) : 0;
  for (int64_t h = kvh * G; h < (kvh + 1) * G; h++) {
    for (int64_t i0 = ifirst; i0 < p.L; i0 += kBQ) {
      const int64_t nq = std::min<int64_t>(kBQ, p.L - i0);
      const float* qrow = p.q + (b * p.L + i0) * qld + h * D;
      const float* dorow = p.dout + (b * p.L + i0) * qld + h * D;
      const float* lse = p.lse + (b * p.H + h) * p.L + i0;
      const float* di = dsum + (b * p.H + h) * p.L + i0;
      load_tile(qrow, qld, nq, kBQ, D, Dp, c, t.q.data(), false);
      load_tile(dorow, qld, nq, kBQ, D, Dp, 1.0f, t.acc.data(), false);  // acc holds dO here
      mm(nq, kBK, D, t.q.data(), Dp, 1, t.kt.data(), kBK, t.s.data(), kBK, false);      // S (base 2)
      mm(nq, kBK, D, t.acc.data(), Dp, 1, t.vt.data(), kBK, t.dp.data(), kBK, false);   // dP = dO V^T
      for (int64_t i = 0; i < nq; i++) {
        float* s = t.s.data() + i * kBK;
        float* dp = t.dp.data() + i * kBK;
        const float l2 = lse[i] * 1.4426950408889634f, dii = di[i];
        for (int64_t j = 0; j < kBK; j += 16) {
          v16 pr = exp2v(ld(s + j) - l2);
          st(s + j, pr);
          st(dp + j, pr * (ld(dp + j) - dii));  // dS = P * (dP - D_i)
        }
        for (int64_t j = visible(p, i0 + i, j0, nk); j < kBK; j++) s[j] = dp[j] = 0.0f;
      }
      mm(nk, Dp, nq, t.s.data(), 1, kBK, t.acc.data(), Dp, t.dv.data(), Dp, true);   // dV += P^T dO
      mm(nk, Dp, nq, t.dp.data(), 1, kBK, t.q.data(), Dp, t.dk.data(), Dp, true);    // dK += dS^T Qc
      mm(nq, Dp, nk, t.dp.data(), kBK, 1, t.k.data(), Dp, t.dqb.data(), Dp, false);  // dQ = dS K
      for (int64_t i = 0; i < nq; i++) {
        float* out = dq + (b * p.L + i0 + i) * qld + h * D;
        const float* src = t.dqb.data() + i * Dp;
        for (int64_t d = 0; d < D; d++) out[d] += p.scale * src[d];
      }
    }
  }
  // Q was scaled by scale * log2(e); dK wants scale alone.
  for (int64_t j = 0; j < nk; j++) {
    float* dk = p.dk + (b * p.S + j0 + j) * kld + kvh * D;
    float* dv = p.dv + (b * p.S + j0 + j) * kld + kvh * D;
    for (int64_t d = 0; d < D; d++) {
      dk[d] = t.dk[j * Dp + d] * 0.6931471805599453f;
      dv[d] = t.dv[j * Dp + d];
    }
  }
}

// Sums of the lanes of a, b, c, d: lanes 0, 4, 8, 12 of the result (shuffle-and-add folds).
static inline v16 hsum4(v16 a, v16 b, v16 c, v16 d) {
  const v16 ab = __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
                 __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  const v16 cd = __builtin_shufflevector(c, d, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
                 __builtin_shufflevector(c, d, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  // [a 8 | b 8], [c 8 | d 8] -> [a 4 | b 4 | c 4 | d 4]
  const v16 x = __builtin_shufflevector(ab, cd, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
                __builtin_shufflevector(ab, cd, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
  const v16 y = x + __builtin_shufflevector(x, x, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
  return y + __builtin_shufflevector(y, y, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
}

// Scores s[j] = c * q.k_j of keys [0, n) (rows of stride kld), 4 keys per pass; D a multiple of 16.
template <int ND>
static inline void decode_scores(const float* q, const float* kb, int64_t kld, int64_t n, float c, float* s) {
  v16 qv[ND];
  for (int d = 0; d < ND; d++) qv[d] = ld(q + 16 * d);
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    v16 a[4];
    for (int r = 0; r < 4; r++) {
      const float* kr = kb + (j + r) * kld;
      v16 acc = qv[0] * ld(kr);
      for (int d = 1; d < ND; d++) acc += qv[d] * ld(kr + 16 * d);
      a[r] = acc;
    }
    const v16 t = hsum4(a[0], a[1], a[2], a[3]);
    s[j] = c * t[0]; s[j + 1] = c * t[4]; s[j + 2] = c * t[8]; s[j + 3] = c * t[12];
  }
  for (; j < n; j++) {
    const float* kr = kb + j * kld;
    v16 acc = qv[0] * ld(kr);
    for (int d = 1; d < ND; d++) acc += qv[d] * ld(kr + 16 * d);
    const v16 z{};
    s[j] = c * hsum4(acc, z, z, z)[0];
  }
}

// o = sum_j w[j] v_j over rows of stride kld, accumulated in registers; D a multiple of 16.
template <int ND>
static inline void decode_values(const float* w, const float* vb, int64_t kld, int64_t n, float inv, float* o) {
  v16 acc[ND] = {};
  for (int64_t j = 0; j < n; j++) {
    const float* vr = vb + j * kld;
    for (int d = 0; d < ND; d++) acc[d] += w[j] * ld(vr + 16 * d);
  }
  for (int d = 0; d < ND; d++) st(o + 16 * d, acc[d] * inv);
}

// One query row i of head h (decode: few rows against a long cache): the scores of every visible
// key in one pass over K (rows read in place), an exact softmax, then one pass over V. Scores are in
// base 2 as in forward_task; lse in natural-log units of scale * q.k.
static void decode_row(const AttnParams& p, int64_t b, int64_t h, int64_t i) {
  static thread_local std::vector<float> sbuf, accbuf;
  const int64_t D = p.D, D16 = D / 16 * 16, kvh = h / (p.H / p.Hkv);
  const int64_t qld = p.H * D, kld = p.Hkv * D;
  const int64_t n = p.causal ? std::min<int64_t>(p.S, i + (p.S - p.L) + 1) : p.S;
  const float c = p.scale * 1.4426950408889634f;
  const int64_t n16 = (n + 15) / 16 * 16;
  if (static_cast<int64_t>(sbuf.size()) < n16) sbuf.resize(n16);
  if (static_cast<int64_t>(accbuf.size()) < D) accbuf.resize(D);
  float* s = sbuf.data();
  const float* q = p.q + (b * p.L + i) * qld + h * D;
  const float* kb = p.k + b * p.S * kld + kvh * D;
  const float* vb = p.v + b * p.S * kld + kvh * D;
  const bool fast = D == D16 && (D == 32 || D == 64 || D == 128);
  if (fast) {
    if (D == 32) decode_scores<2>(q, kb, kld, n, c, s);
    else if (D == 64) decode_scores<4>(q, kb, kld, n, c, s);
    else decode_scores<8>(q, kb, kld, n, c, s);
  } else {
    for (int64_t j = 0; j < n; j++) {
      const float* kr = kb + j * kld;
      v16 acc{};
      for (int64_t d = 0; d < D16; d += 16) acc += ld(q + d) * ld(kr + d);
      float dot = 0.0f;
      for (int z = 0; z < 16; z++) dot += acc[z];
      for (int64_t d = D16; d < D; d++) dot += q[d] * kr[d];
      s[j] = c * dot;
    }
  }
  float mx = -INFINITY;
  for (int64_t j = 0; j < n; j++) mx = std::max(mx, s[j]);
  for (int64_t j = n; j < n16; j++) s[j] = -INFINITY;
  v16 lsum{};
  for (int64_t j = 0; j < n16; j += 16) {
    v16 e = exp2v(ld(s + j) - mx);
    for (int z = 0; z < 16; z++)
      if (j + z >= n) e[z] = 0.0f;
    st(s + j, e);
    lsum += e;
  }
  float l = 0.0f;
  for (int z = 0; z < 16; z++) l += lsum[z];
  float* o = p.o + (b * p.L + i) * qld + h * D;
  const float inv = 1.0f / l;
  if (fast) {
    if (D == 32) decode_values<2>(s, vb, kld, n, inv, o);
    else if (D == 64) decode_values<4>(s, vb, kld, n, inv, o);
    else decode_values<8>(s, vb, kld, n, inv, o);
  } else {
    float* acc = accbuf.data();
    std::fill(acc, acc + D, 0.0f);
    for (int64_t j = 0; j < n; j++) {
      const float* vr = vb + j * kld;
      const float w = s[j];
      for (int64_t d = 0; d < D16; d += 16) st(acc + d, ld(acc + d) + w * ld(vr + d));
      for (int64_t d = D16; d < D; d++) acc[d] += w * vr[d];
    }
    for (int64_t d = 0; d < D; d++) o[d] = acc[d] * inv;
  }
  p.lse[(b * p.H + h) * p.L + i] = (mx + std::log2(l)) * 0.6931471805599453f;
}
