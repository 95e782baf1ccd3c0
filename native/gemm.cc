// Blocked, packed SGEMM (row-major): C = alpha * op(A) @ op(B) + beta * C, single and batched.
//
// Loop structure (BLIS-style): jc over N in NC-column blocks -> pc over K in KC slices: pack op(B)
// [KC x NC] into NR-wide panels (shared by all threads) -> each thread takes a range of rows (and,
// when M is short, a range of the NR panels), packs op(A) [MC x KC] into MR-row panels of its own,
// then jr over NR panels -> ir over MR panels -> microkernel (gemm_kernels.h). The KC x NR panel of B
// stays in L1 during the ir loop and the MC x KC block of A in L2.
// Batched calls with many items run one item per thread (no pool round trip per item); few big
// items run one after another, each over all threads.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "gemm_kernels.h"
#include "isa.h"
#include "registry.h"
#include "threadpool.h"

namespace frugal {
namespace gemm {
namespace {

struct Problem {
  bool ta, tb;
  int64_t M, N, K;
  float alpha;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float beta;
  float* C;
  int64_t ldc;
};

struct Blocking {
  int64_t MC, KC, NC;
};

// Per-thread growable 64-byte aligned scratch; pool workers are persistent so these live across calls.
class Scratch {
 public:
  ~Scratch() { std::free(p_); }
  float* get(size_t n) {
    if (n > n_) {
      std::free(p_);
      size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
      p_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!p_) throw std::bad_alloc();
      n_ = n;
    }
    return p_;
  }

 private:
  float* p_ = nullptr;
  size_t n_ = 0;
};
thread_local Scratch tl_a, tl_b;

// op(A)[i0:i0+mc, p0:p0+kc] -> MR-row panels, k-major, rows past mc zero.
template <int MR>
void pack_a(const Problem& p, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* dst) {
  for (int64_t ip = 0; ip < mc; ip += MR) {
    int64_t rows = std::min<int64_t>(MR, mc - ip);
    float* d = dst + ip * kc;
    if (p.ta) {  // stored [K, M]: each k gives MR contiguous values
      for (int64_t k = 0; k < kc; k++) {
        const float* s = p.A + (p0 + k) * p.lda + i0 + ip;
        float* dk = d + k * MR;
        for (int64_t r = 0; r < rows; r++) dk[r] = s[r];
        for (int64_t r = rows; r < MR; r++) dk[r] = 0.0f;
      }
    } else {  // stored [M, K]: walk each row contiguously, scatter with stride MR
      for (int64_t r = 0; r < rows; r++) {
        const float* s = p.A + (i0 + ip + r) * p.lda + p0;
        for (int64_t k = 0; k < kc; k++) d[k * MR + r] = s[k];
      }
      for (int64_t r = rows; r < MR; r++)
        for (int64_t k = 0; k < kc; k++) d[k * MR + r] = 0.0f;
    }
  }
}

// op(B)[p0:p0+kc, j0 + jp*NR ...] for panels [jp0, jp1) -> NR-column panels, k-major, cols past nc zero.
template <int NR>
void pack_b(const Problem& p, int64_t p0, int64_t kc, int64_t j0, int64_t nc, int64_t jp0, int64_t jp1,
            float* dst) {
  for (int64_t jp = jp0; jp < jp1; jp++) {
    int64_t jj = jp * NR, cols = std::min<int64_t>(NR, nc - jj);
    float* d = dst + jj * kc;
    if (!p.tb) {  // stored [K, N]: each k gives NR contiguous values
      for (int64_t k = 0; k < kc; k++) {
        const float* s = p.B + (p0 + k) * p.ldb + j0 + jj;
        float* dk = d + k * NR;
        if (cols == NR) {
          std::memcpy(dk, s, NR * sizeof(float));
        } else {
          for (int64_t c = 0; c < cols; c++) dk[c] = s[c];
          for (int64_t c = cols; c < NR; c++) dk[c] = 0.0f;
        }
      }
    } else {  // stored [N, K]
      for (int64_t c = 0; c < cols; c++) {
        const float* s = p.B + (j0 + jj + c) * p.ldb + p0;
        for (int64_t k = 0; k < kc; k++) d[k * NR + c] = s[k];
      }
      for (int64_t c = cols; c < NR; c++)
        for (int64_t k = 0; k < kc; k++) d[k * NR + c] = 0.0f;
    }
  }
}

// C := beta * C (K == 0 or alpha == 0); beta == 0 writes zeros without reading C.
void scale_c(const Problem& p) {
  for (int64_t i = 0; i < p.M; i++) {
    float* c = p.C + i * p.ldc;
    if (p.beta == 0.0f)
      std::fill(c, c + p.N, 0.0f);
    else if (p.beta != 1.0f)
      for (int64_t j = 0; j < p.N; j++) c[j] *= p.beta;
  }
}

template <int MR, int NR, KernelFn Kern>
struct Driver {
  // Rows [m0, m1) x panels [jp0, jp1) of the packed B block at (jc, pc).
  static void compute(const Problem& p, const Blocking& bl, int64_t m0, int64_t m1, int64_t jc, int64_t nc,
                      int64_t jp0, int64_t jp1, int64_t pc, int64_t kc, const float* Bp, float beta) {
    float* Ap = tl_a.get(static_cast<size_t>(bl.MC) * kc);
    for (int64_t ic = m0; ic < m1; ic += bl.MC) {
      int64_t mc = std::min(bl.MC, m1 - ic);
      pack_a<MR>(p, ic, mc, pc, kc, Ap);
      for (int64_t jp = jp0; jp < jp1; jp++) {
        int64_t jj = jp * NR;
        int nr = static_cast<int>(std::min<int64_t>(NR, nc - jj));
        const float* b = Bp + jj * kc;
        for (int64_t ir = 0; ir < mc; ir += MR) {
          int mr = static_cast<int>(std::min<int64_t>(MR, mc - ir));
          Kern(kc, Ap + ir * kc, b, p.C + (ic + ir) * p.ldc + jc + jj, p.ldc, p.alpha, beta, mr, nr);
        }
      }
    }
  }

  static void run_single(const Problem& p, const Blocking& bl) {
    for (int64_t jc = 0; jc < p.N; jc += bl.NC) {
      int64_t nc = std::min(bl.NC, p.N - jc), np = (nc + NR - 1) / NR;
      for (int64_t pc = 0; pc < p.K; pc += bl.KC) {
        int64_t kc = std::min(bl.KC, p.K - pc);
        float* Bp = tl_b.get(static_cast<size_t>(np * NR) * kc);
        pack_b<NR>(p, pc, kc, jc, nc, 0, np, Bp);
        compute(p, bl, 0, p.M, jc, nc, 0, np, pc, kc, Bp, pc == 0 ? p.beta : 1.0f);
      }
    }
  }

  static void run_threaded(const Problem& p, const Blocking& bl, int nthreads) {
    for (int64_t jc = 0; jc < p.N; jc += bl.NC) {
      int64_t nc = std::min(bl.NC, p.N - jc), np = (nc + NR - 1) / NR;
      int64_t mp = (p.M + MR - 1) / MR;
      // Thread grid tm x tn over (MR row panels, NR col panels): pick the split with the least work
      // on the busiest thread; ties go to splitting rows, which shares the packed B instead of
      // packing A twice.
      int tm = 1, tn = nthreads;
      int64_t best = INT64_MAX;
      for (int cand = nthreads; cand >= 1; cand--) {
        if (nthreads % cand) continue;
        int64_t w = ((mp + cand - 1) / cand) * ((np + nthreads / cand - 1) / (nthreads / cand));
        if (w < best) best = w, tm = cand, tn = nthreads / cand;
      }
      for (int64_t pc = 0; pc < p.K; pc += bl.KC) {
        int64_t kc = std::min(bl.KC, p.K - pc);
        float* Bp = tl_b.get(static_cast<size_t>(np * NR) * kc);
        parallel_for(np, [&](int64_t b, int64_t e) { pack_b<NR>(p, pc, kc, jc, nc, b, e, Bp); });
        float beta = pc == 0 ? p.beta : 1.0f;
        parallel_tasks(nthreads, [&](int64_t t) {
          int64_t mi = t / tn, ni = t % tn;
          int64_t mpc = (mp + tm - 1) / tm, npc = (np + tn - 1) / tn;
          int64_t m0 = std::min(p.M, mi * mpc * MR), m1 = std::min(p.M, (mi + 1) * mpc * MR);
          int64_t jp0 = std::min(np, ni * npc), jp1 = std::min(np, (ni + 1) * npc);
          if (m0 < m1 && jp0 < jp1) compute(p, bl, m0, m1, jc, nc, jp0, jp1, pc, kc, Bp, beta);
        });
      }
    }
  }
};

// KC keeps a KC x NR panel of B within L1 (32 KiB at 256 x 32 floats); MC x KC of A fits L2.
void run(const Problem& p, bool threaded) {
  if (p.M == 0 || p.N == 0) return;
  if (p.K == 0 || p.alpha == 0.0f) return scale_c(p);
  // Below ~2 MFLOP waking the pool costs more than it saves.
  int nthreads = num_threads();
  bool mt = threaded && nthreads > 1 && 2.0 * p.M * p.N * p.K >= 2e6;
  switch (cpu_isa()) {
#if defined(__x86_64__)
    case kAvx512: {
      using D = Driver<kAvx512MR, kAvx512NR, kernel_avx512>;
      Blocking bl{kAvx512MR * 12, 256, kAvx512NR * 64};
      return mt ? D::run_threaded(p, bl, nthreads) : D::run_single(p, bl);
    }
    case kAvx2: {
      using D = Driver<kAvx2MR, kAvx2NR, kernel_avx2>;
      Blocking bl{kAvx2MR * 24, 256, kAvx2NR * 128};
      return mt ? D::run_threaded(p, bl, nthreads) : D::run_single(p, bl);
    }
#endif
    default: {
      using D = Driver<kScalarMR, kScalarNR, kernel_scalar>;
      Blocking bl{kScalarMR * 32, 256, kScalarNR * 64};
      return mt ? D::run_threaded(p, bl, nthreads) : D::run_single(p, bl);
    }
  }
}

}  // namespace

void sgemm_batched(int64_t batch, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, int64_t sA, const float* B, int64_t ldb, int64_t sB, float beta, float* C,
                   int64_t ldc, int64_t sC) {
  auto item = [&](int64_t i) {
    return Problem{ta, tb, M, N, K, alpha, A + i * sA, lda, B + i * sB, ldb, beta, C + i * sC, ldc};
  };
  int nthreads = num_threads();
  double flops = 2.0 * M * N * K;
  // One item per thread when there are enough items to balance, or when items are too small to be
  // worth splitting; otherwise each item uses every thread in turn.
  bool over_batch = batch > 1 && nthreads > 1 && batch >= nthreads &&
                    (batch % nthreads == 0 || batch >= 4 * nthreads || flops < 3e7);
  if (over_batch) {
    parallel_tasks(batch, [&](int64_t i) { run(item(i), false); });
  } else {
    for (int64_t i = 0; i < batch; i++) run(item(i), true);
  }
}

const char* sgemm_isa() { return isa_name(cpu_isa()); }

namespace {
// Rejects any call that would touch memory outside the typed arrays (the TS wrapper gives the
// friendly message; this guard keeps a bad direct call from corrupting memory).
void check_extent(const Napi::Env& env, const char* name, size_t len, int64_t off, int64_t batch, int64_t stride,
                  int64_t rows, int64_t cols, int64_t ld) {
  if (rows == 0 || cols == 0) return;
  if (off < 0 || ld < cols || stride < 0)
    throw Napi::RangeError::New(env, std::string("sgemm: bad offset/leading dimension/stride for ") + name);
  int64_t last = off + (batch - 1) * stride + (rows - 1) * ld + cols - 1;
  if (last >= static_cast<int64_t>(len))
    throw Napi::RangeError::New(env, std::string("sgemm: ") + name + " is too short for the given shape");
}

Napi::Value js_sgemm_batched(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t batch = num(info, 0);
  bool ta = info[1].ToBoolean(), tb = info[2].ToBoolean();
  int64_t M = num(info, 3), N = num(info, 4), K = num(info, 5);
  float alpha = static_cast<float>(dnum(info, 6));
  size_t la, lb, lc;
  const float* A = f32(info, 7, &la);
  int64_t aOff = num(info, 8), lda = num(info, 9), sA = num(info, 10);
  const float* B = f32(info, 11, &lb);
  int64_t bOff = num(info, 12), ldb = num(info, 13), sB = num(info, 14);
  float beta = static_cast<float>(dnum(info, 15));
  float* C = f32(info, 16, &lc);
  int64_t cOff = num(info, 17), ldc = num(info, 18), sC = num(info, 19);
  if (batch < 0 || M < 0 || N < 0 || K < 0) throw Napi::RangeError::New(env, "sgemm: negative size");
  if (batch == 0 || M == 0 || N == 0) return env.Undefined();
  if (K > 0 && alpha != 0.0f) {
    check_extent(env, "A", la, aOff, batch, sA, ta ? K : M, ta ? M : K, lda);
    check_extent(env, "B", lb, bOff, batch, sB, tb ? N : K, tb ? K : N, ldb);
  }
  check_extent(env, "C", lc, cOff, batch, sC, M, N, ldc);
  if (batch > 1 && sC == 0) throw Napi::RangeError::New(env, "sgemm: strideC must be non-zero when batch > 1");
  sgemm_batched(batch, ta, tb, M, N, K, alpha, A + aOff, lda, sA, B + bOff, ldb, sB, beta, C + cOff, ldc, sC);
  return env.Undefined();
}

Napi::Value js_sgemm_isa(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), sgemm_isa()); }
}  // namespace

FRUGAL_EXPORT("sgemmBatched", js_sgemm_batched)
FRUGAL_EXPORT("sgemmIsa", js_sgemm_isa)
}  // namespace gemm
}  // namespace frugal
