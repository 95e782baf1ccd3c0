// Packed 1-bit FBI-Linear with int8 activations: the fast serving path.
//
// Activations are quantized once per token: u = alpha (.) x (column scales) or u = x, then
// q = round(u / d) in [-127, 127] with d = max|u| / 127. With sign bits b_ij in {0, 1},
//   sum_j (2 b_ij - 1) q_tj = 2 P_ti - Q_t,   P_ti = sum of q_tj over the set bits, Q_t = sum_j q_tj,
// all in int32, and y_ti = d_t (2 P_ti - Q_t) scaled and shifted as in fbi.cc.
//
// Weight layout ("interleaved", built from the row-major bits at load): rows in blocks of 16, inputs
// in groups of 4; one 64-bit word per (block, group) holding the signs of rows 16 b + r at inputs
// 4 g + k. Call n = 4 r + k the sign's natural index; the word stores it at bit 8 (n % 8) + n / 8
// (the 8 x 8 bit transpose of the natural order). Blocks go in tiles of 4 (the last tile
// zero-padded), and within a tile the words are ordered by group, then block: word (b, g) is at
// (b / 4) * 4 G + 4 g + b % 4. A decode pass over a tile is then one sequential stream of 32 bytes
// per group, prefetched in software 2 KB ahead (kPrefetchWords); four separate 4 KB streams per
// tile (an earlier order, group-major per block) streamed about 1.5x slower on an AMD EPYC's cores.
// Expanding a word to 64 bytes, byte n = sign n, gives lane by lane exactly the u8 operand of a 4-way
// int8 dot product (VNNI vpdpbusd) against the 4 activation bytes of the group broadcast to every
// lane: 64 weights per instruction, 16 rows per vector, no horizontal sums. The transposed bit order
// is what makes the expansion one instruction where GFNI exists: gf2p8affine of the word broadcast
// to every quadword, with quadword l's matrix picking bit l of each byte, puts bit 8 j + l (sign
// 8 l + j) in byte 8 l + j. Without GFNI the AVX-512 and AVX2 paths spread byte n % 8 of the word
// to byte n with a byte shuffle and keep bit n / 8; the portable path transposes the word back and
// looks each row's 4-bit nibble up in a per-token table of the 16 subset sums of the group.
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "fbi_int8.h"
#include "isa.h"
#include "packed_matmul_args.h"
#include "registry.h"
#include "threadpool.h"

namespace frugal {
namespace fbi8 {
namespace {

bool has_vnni() {
#if defined(__x86_64__)
  static bool v = has_avx512() && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw");
  return v;
#else
  return false;
#endif
}
bool has_avx512bw() {
#if defined(__x86_64__)
  static bool v = has_avx512() && __builtin_cpu_supports("avx512bw");
  return v;
#else
  return false;
#endif
}
// GFNI's one-instruction sign expansion (FRUGAL_NO_GFNI turns it off, so the tests run the shuffle
// expansion on a machine that has GFNI).
bool has_gfni() {
#if defined(__x86_64__)
  static bool v = has_avx512bw() && __builtin_cpu_supports("gfni") && !std::getenv("FRUGAL_NO_GFNI");
  return v;
#else
  return false;
#endif
}
bool has_f16c() {
#if defined(__x86_64__)
  static bool v = __builtin_cpu_supports("f16c");
  return v;
#else
  return false;
#endif
}
bool isa_available(int isa) {
  if (isa == kAvx512) return has_avx512bw() && has_f16c();
  if (isa == kAvx2) return has_avx2() && has_f16c();
  return isa == kScalar;
}
int resolve(int isa) { return resolve_isa(isa, isa_available); }

// ---- quantization: one token row of u to int8 -------------------------------------------------
struct QuantRow {
  float d;     // scale: u ~= d * q
  int32_t qs;  // sum of q
};

QuantRow quantize_row(const float* u, int64_t K, int8_t* q, int64_t kpad) {
  float m[16] = {0};
  const int64_t K16 = K / 16 * 16;
  for (int64_t j = 0; j < K16; j += 16)
    for (int l = 0; l < 16; l++) {
      const float a = std::fabs(u[j + l]);
      m[l] = a > m[l] ? a : m[l];
    }
  float amax = 0.0f;
  for (int64_t j = K16; j < K; j++) amax = std::max(amax, std::fabs(u[j]));
  for (int l = 0; l < 16; l++) amax = std::max(amax, m[l]);
  QuantRow r{amax / 127.0f, 0};
  const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
  int32_t qs = 0;
  for (int64_t j = 0; j < K; j++) {
    const float v = std::min(127.0f, std::max(-127.0f, std::nearbyint(u[j] * inv)));
    const int iv = static_cast<int>(v);
    q[j] = static_cast<int8_t>(iv);
    qs += iv;
  }
  r.qs = qs;
  for (int64_t j = K; j < kpad; j++) q[j] = 0;
  return r;
}

#if defined(__x86_64__)
// The same numbers as scale_inputs + quantize_row, 16 inputs per step: the products alpha x in
// float, the bias term in the same 8 double partial sums in the same order (lane l of `acc` is
// partial sum l; each float product is exact in double, so an FMA there changes nothing), the same
// maximum, and rounding to nearest even as nearbyint.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))) float prep_token_avx512(
    const PackedMatmulArgs& a, int64_t t, float* u, int8_t* q, int64_t kpad, QuantRow& qr) {
  const int64_t K = a.K, K16 = K / 16 * 16, K8 = K / 8 * 8;
  const float* xt = a.x + t * K;
  const bool column = a.pattern == 0;
  __m512d acc = _mm512_setzero_pd();
  __m512 mx = _mm512_setzero_ps();
  for (int64_t j = 0; j < K16; j += 16) {
    const __m512 xv = _mm512_loadu_ps(xt + j);
    const __m512 uv = column ? _mm512_mul_ps(_mm512_loadu_ps(a.alpha + j), xv) : xv;
    _mm512_storeu_ps(u + j, uv);
    mx = _mm512_max_ps(mx, _mm512_abs_ps(uv));
    const __m512d x0 = _mm512_cvtps_pd(_mm512_castps512_ps256(xv));
    const __m512d x1 = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(xv), 1)));
    if (column) {
      const __m512 bv = _mm512_loadu_ps(a.beta + j);
      const __m512d b0 = _mm512_cvtps_pd(_mm512_castps512_ps256(bv));
      const __m512d b1 = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(bv), 1)));
      acc = _mm512_add_pd(acc, _mm512_mul_pd(b0, x0));
      acc = _mm512_add_pd(acc, _mm512_mul_pd(b1, x1));
    } else {
      acc = _mm512_add_pd(acc, x0);
      acc = _mm512_add_pd(acc, x1);
    }
  }
  double sb[8];
  _mm512_storeu_pd(sb, acc);
  float m[16];
  _mm512_storeu_ps(m, mx);
  float amax = 0.0f;
  double rest = 0;
  for (int64_t j = K16; j < K; j++) {  // an 8-input block into the partial sums, then the rest
    u[j] = column ? a.alpha[j] * xt[j] : xt[j];
    const double v = column ? static_cast<double>(a.beta[j]) * xt[j] : static_cast<double>(xt[j]);
    if (j < K8) sb[j - K16] += v;
    else rest += v;
    amax = std::max(amax, std::fabs(u[j]));
  }
  for (int l = 0; l < 16; l++) amax = std::max(amax, m[l]);
  const float bias = static_cast<float>((((sb[0] + sb[1]) + (sb[2] + sb[3])) + ((sb[4] + sb[5]) + (sb[6] + sb[7]))) + rest);
  qr.d = amax / 127.0f;
  const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
  const __m512 iv = _mm512_set1_ps(inv), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
  __m512i qs = _mm512_setzero_si512();
  for (int64_t j = 0; j < K16; j += 16) {
    const __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_loadu_ps(u + j), iv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512i qi = _mm512_cvtps_epi32(_mm512_min_ps(hi, _mm512_max_ps(lo, r)));
    qs = _mm512_add_epi32(qs, qi);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + j), _mm512_cvtepi32_epi8(qi));
  }
  int32_t qsum = _mm512_reduce_add_epi32(qs);
  for (int64_t j = K16; j < K; j++) {
    const int v = static_cast<int>(std::min(127.0f, std::max(-127.0f, std::nearbyint(u[j] * inv))));
    q[j] = static_cast<int8_t>(v);
    qsum += v;
  }
  for (int64_t j = K; j < kpad; j++) q[j] = 0;
  qr.qs = qsum;
  return bias;
}
#endif

// Token t of a product: u = scaled inputs, q = their int8 values (zero to kpad), qr = scale and sum;
// returns the bias term. The AVX-512 path computes the same numbers (the packed-int8 tests compare
// every code path bit for bit), so the kernels' isa picks it.
float prep_token(const PackedMatmulArgs& a, int64_t t, float* u, int8_t* q, int64_t kpad, QuantRow& qr) {
#if defined(__x86_64__)
  if (a.isa == kAvx512) return prep_token_avx512(a, t, u, q, kpad, qr);
#endif
  const float bias = a.scale_inputs(t, u);
  qr = quantize_row(u, a.K, q, kpad);
  return bias;
}

// Below this many weights a product runs on the calling thread: waking the pool costs more than the
// second core gains (measured at the fbi-130m shapes: 768 x 768 took 8 us on one thread, 24 us on two).
constexpr int64_t kParallelMinWeights = int64_t{1} << 21;
void blocks_for(int64_t n, int64_t weights, const std::function<void(int64_t, int64_t)>& fn) {
  if (weights < kParallelMinWeights) fn(0, n);
  else parallel_for(n, fn);
}

// ---- the masked int8 sums P over the interleaved layout -----------------------------------------
struct Problem {
  const int8_t* q;        // [M, 4 G] quantized activations, zero past K
  const uint64_t* w;      // interleaved sign words, [ceil(NB / 4), G, 4]
  int64_t M, NB, G;
  int32_t* p;             // [M, 16 NB]
};

// Block b's word at group g is block_words(pr, b)[kTile * g].
constexpr int64_t kTile = 4;

// The 8 x 8 bit transpose (bit 8 i + j <-> bit 8 j + i): natural sign order <-> stored order.
inline uint64_t transpose8(uint64_t x) {
  uint64_t t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AAULL;
  x ^= t ^ (t << 7);
  t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCCULL;
  x ^= t ^ (t << 14);
  t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0ULL;
  return x ^ t ^ (t << 28);
}
inline const uint64_t* block_words(const Problem& pr, int64_t b) { return pr.w + (b / kTile) * pr.G * kTile + b % kTile; }

// Software prefetch of the sign stream, kPrefetchWords (2 KB) ahead of the word being expanded, one
// cache line per two groups. A kernel streams 32 bytes per group with a dozen vector instructions in
// between, so the out-of-order window covers only a few cache-line misses; on cores whose hardware
// prefetcher does not run that far ahead of one slow stream the kernel then waits on memory (on a
// 2-core Xeon with AVX-512 VNNI/GFNI, the decode kernel read 12.6 GB/s of bits without this and
// 26-28 GB/s with it, where plain loads read 28 GB/s). Reads past the end are harmless: a prefetch
// never faults.
constexpr int64_t kPrefetchWords = 256;
inline void prefetch_words(const uint64_t* p) {
  __builtin_prefetch(reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(p) + kPrefetchWords * 8), 0, 3);
}

void block_scalar(const Problem& pr, int64_t b, const int16_t* tables) {
  for (int64_t t = 0; t < pr.M; t++) {
    int32_t acc[16] = {0};
    const int16_t* tab = tables + t * pr.G * 16;
    const uint64_t* wb = block_words(pr, b);
    for (int64_t g = 0; g < pr.G; g++) {
      if ((g & 1) == 0) prefetch_words(wb + kTile * g);
      const uint64_t word = transpose8(wb[kTile * g]);
      const int16_t* tg = tab + g * 16;
      for (int r = 0; r < 16; r++) acc[r] += tg[(word >> (4 * r)) & 15];
    }
    std::memcpy(pr.p + t * pr.NB * 16 + b * 16, acc, sizeof acc);
  }
}

// tables[t][g][s] = sum of q[t][4 g + k] over the set bits k of s.
void subset_tables(const Problem& pr, std::vector<int16_t>& tables) {
  tables.resize(static_cast<size_t>(pr.M * pr.G * 16));
  for (int64_t t = 0; t < pr.M; t++)
    for (int64_t g = 0; g < pr.G; g++) {
      const int8_t* qg = pr.q + t * pr.G * 4 + g * 4;
      int16_t* tg = tables.data() + (t * pr.G + g) * 16;
      tg[0] = 0;
      for (int s = 1; s < 16; s++) tg[s] = static_cast<int16_t>(tg[s & (s - 1)] + qg[__builtin_ctz(s)]);
    }
}

void sums_scalar(const Problem& pr) {
  std::vector<int16_t> tables;
  subset_tables(pr, tables);
  blocks_for(pr.NB, pr.NB * pr.G * 64, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b++) block_scalar(pr, b, tables.data());
  });
}

#if defined(__x86_64__)
#define FRUGAL_TGT512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,gfni")))
// Quadword l of the GFNI matrix picks bit l of each byte into bit 0 (gf2p8affine's output bit i is
// the parity of matrix byte 7 - i AND the input byte).
FRUGAL_TGT512 inline __m512i gfni_picker() {
  return _mm512_set_epi64(1LL << 63, 1LL << 62, 1LL << 61, 1LL << 60, 1LL << 59, 1LL << 58, 1LL << 57, 1LL << 56);
}
// Byte n of the shuffle expansion reads byte n % 8 of the word and keeps bit n / 8.
FRUGAL_TGT512 inline __m512i shuffle_index() {
  alignas(64) int8_t idx[64];
  for (int n = 0; n < 64; n++) idx[n] = static_cast<int8_t>(n % 8);
  return _mm512_load_si512(idx);
}
FRUGAL_TGT512 inline __m512i shuffle_bits() {
  alignas(64) uint8_t bit[64];
  for (int n = 0; n < 64; n++) bit[n] = static_cast<uint8_t>(1u << (n / 8));
  return _mm512_load_si512(bit);
}

// A stored word as 64 bytes of 0 / 1, byte n = sign n.
template <bool kGfni>
FRUGAL_TGT512 inline __m512i expand512(uint64_t word, __m512i c0, __m512i c1, __m512i ones8) {
  const __m512i v = _mm512_set1_epi64(static_cast<long long>(word));
  if (kGfni) return _mm512_gf2p8affine_epi64_epi8(v, c0, 0);
  return _mm512_min_epu8(_mm512_and_si512(_mm512_shuffle_epi8(v, c0), c1), ones8);
}

template <int T, int R, bool kVnni, bool kGfni>
FRUGAL_TGT512 inline void tile512(const Problem& pr, int64_t t0, int64_t b0) {
  const __m512i ones8 = _mm512_set1_epi8(1);
  const __m512i ones16 = _mm512_set1_epi16(1);
  const __m512i c0 = kGfni ? gfni_picker() : shuffle_index(), c1 = kGfni ? ones8 : shuffle_bits();
  __m512i acc[T][R];
  for (int t = 0; t < T; t++)
    for (int r = 0; r < R; r++) acc[t][r] = _mm512_setzero_si512();
  const uint64_t* wb[R];
  for (int r = 0; r < R; r++) wb[r] = block_words(pr, b0 + r);
  const int32_t* q32[T];
  for (int t = 0; t < T; t++) q32[t] = reinterpret_cast<const int32_t*>(pr.q + (t0 + t) * pr.G * 4);
  for (int64_t g = 0; g < pr.G; g++) {
    if ((g & 1) == 0) prefetch_words(wb[0] + kTile * g);
    __m512i wv[R];
    for (int r = 0; r < R; r++) wv[r] = expand512<kGfni>(wb[r][kTile * g], c0, c1, ones8);
    for (int t = 0; t < T; t++) {
      const __m512i a = _mm512_set1_epi32(q32[t][g]);
      for (int r = 0; r < R; r++) {
        if (kVnni) acc[t][r] = _mm512_dpbusd_epi32(acc[t][r], wv[r], a);
        else acc[t][r] = _mm512_add_epi32(acc[t][r], _mm512_madd_epi16(_mm512_maddubs_epi16(wv[r], a), ones16));
      }
    }
  }
  for (int t = 0; t < T; t++)
    for (int r = 0; r < R; r++) _mm512_storeu_si512(pr.p + (t0 + t) * pr.NB * 16 + (b0 + r) * 16, acc[t][r]);
}

// Half h of a stored word (signs 32 h .. 32 h + 31: 8 rows x 4 inputs) as 0/1 bytes in maddubs order.
template <int h>
__attribute__((target("avx2"))) inline __m256i expand256(uint64_t word) {
  const __m256i shuf = _mm256_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7,
                                        0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i bit = _mm256_setr_epi8(1 << (4 * h), 1 << (4 * h), 1 << (4 * h), 1 << (4 * h), 1 << (4 * h), 1 << (4 * h), 1 << (4 * h), 1 << (4 * h),
                                       2 << (4 * h), 2 << (4 * h), 2 << (4 * h), 2 << (4 * h), 2 << (4 * h), 2 << (4 * h), 2 << (4 * h), 2 << (4 * h),
                                       4 << (4 * h), 4 << (4 * h), 4 << (4 * h), 4 << (4 * h), 4 << (4 * h), 4 << (4 * h), 4 << (4 * h), 4 << (4 * h),
                                       static_cast<char>(8 << (4 * h)), static_cast<char>(8 << (4 * h)), static_cast<char>(8 << (4 * h)), static_cast<char>(8 << (4 * h)),
                                       static_cast<char>(8 << (4 * h)), static_cast<char>(8 << (4 * h)), static_cast<char>(8 << (4 * h)), static_cast<char>(8 << (4 * h)));
  const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi64x(static_cast<long long>(word)), shuf);
  return _mm256_min_epu8(_mm256_and_si256(v, bit), _mm256_set1_epi8(1));
}

template <int T>
__attribute__((target("avx2"))) inline void tile256(const Problem& pr, int64_t t0, int64_t b) {
  const __m256i ones16 = _mm256_set1_epi16(1);
  __m256i acc[T][2];
  for (int t = 0; t < T; t++) acc[t][0] = acc[t][1] = _mm256_setzero_si256();
  const uint64_t* wb = block_words(pr, b);
  const int32_t* q32[T];
  for (int t = 0; t < T; t++) q32[t] = reinterpret_cast<const int32_t*>(pr.q + (t0 + t) * pr.G * 4);
  for (int64_t g = 0; g < pr.G; g++) {
    if ((g & 1) == 0) prefetch_words(wb + kTile * g);
    const uint64_t word = wb[kTile * g];
    const __m256i lo = expand256<0>(word), hi = expand256<1>(word);
    for (int t = 0; t < T; t++) {
      const __m256i a = _mm256_set1_epi32(q32[t][g]);
      acc[t][0] = _mm256_add_epi32(acc[t][0], _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a), ones16));
      acc[t][1] = _mm256_add_epi32(acc[t][1], _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a), ones16));
    }
  }
  for (int t = 0; t < T; t++) {
    int32_t* out = pr.p + (t0 + t) * pr.NB * 16 + b * 16;
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), acc[t][0]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8), acc[t][1]);
  }
}

template <bool kVnni, bool kGfni>
void sums512(const Problem& pr) {
  if (pr.M == 1) {
    // Decode: 4 row blocks (64 rows) per pass share each activation broadcast.
    const int64_t tiles = (pr.NB + 3) / 4;
    blocks_for(tiles, pr.NB * pr.G * 64, [&](int64_t a, int64_t e) {
      for (int64_t i = a; i < e; i++) {
        const int64_t b = 4 * i;
        if (b + 4 <= pr.NB) tile512<1, 4, kVnni, kGfni>(pr, 0, b);
        else
          for (int64_t c = b; c < pr.NB; c++) tile512<1, 1, kVnni, kGfni>(pr, 0, c);
      }
    });
    return;
  }
  // Prefill: 2 row blocks x 8 tokens per tile; a block pair's words stay in L1 over all tokens.
  const int64_t pairs = (pr.NB + 1) / 2;
  blocks_for(pairs, pr.M * pr.NB * pr.G * 64, [&](int64_t a, int64_t e) {
    for (int64_t i = a; i < e; i++) {
      const int64_t b = 2 * i;
      const bool two = b + 2 <= pr.NB;
      int64_t t = 0;
      for (; t + 8 <= pr.M; t += 8) two ? tile512<8, 2, kVnni, kGfni>(pr, t, b) : tile512<8, 1, kVnni, kGfni>(pr, t, b);
      for (; t < pr.M; t++) two ? tile512<1, 2, kVnni, kGfni>(pr, t, b) : tile512<1, 1, kVnni, kGfni>(pr, t, b);
    }
  });
}

void sums256(const Problem& pr) {
  blocks_for(pr.NB, pr.M * pr.NB * pr.G * 64, [&](int64_t a, int64_t e) {
    for (int64_t b = a; b < e; b++) {
      int64_t t = 0;
      for (; t + 4 <= pr.M; t += 4) tile256<4>(pr, t, b);
      for (; t < pr.M; t++) tile256<1>(pr, t, b);
    }
  });
}
#endif

void masked_sums(const Problem& pr, int isa) {
#if defined(__x86_64__)
  if (isa == kAvx512) {
    if (has_vnni()) return has_gfni() ? sums512<true, true>(pr) : sums512<true, false>(pr);
    return has_gfni() ? sums512<false, true>(pr) : sums512<false, false>(pr);
  }
  if (isa == kAvx2) return sums256(pr);
#endif
  sums_scalar(pr);
}

// ---- several decode products (one token each) in one parallel region ----------------------------
// Work units: AVX-512 tiles of 4 row blocks, else single row blocks; the same kernels per block as
// masked_sums at M = 1, so the sums are the same integers.
int64_t decode_units(const Problem& pr, int isa) { return isa == kAvx512 ? (pr.NB + 3) / 4 : pr.NB; }

#if defined(__x86_64__)
template <bool kVnni, bool kGfni>
void decode_tile512(const Problem& pr, int64_t b) {
  if (b + 4 <= pr.NB) tile512<1, 4, kVnni, kGfni>(pr, 0, b);
  else for (int64_t c = b; c < pr.NB; c++) tile512<1, 1, kVnni, kGfni>(pr, 0, c);
}
#endif

void decode_unit(const Problem& pr, int isa, int64_t u, const int16_t* tables) {
#if defined(__x86_64__)
  if (isa == kAvx512) {
    const int64_t b = 4 * u;
    if (has_vnni()) return has_gfni() ? decode_tile512<true, true>(pr, b) : decode_tile512<true, false>(pr, b);
    return has_gfni() ? decode_tile512<false, true>(pr, b) : decode_tile512<false, false>(pr, b);
  }
  if (isa == kAvx2) return tile256<1>(pr, 0, u);
#endif
  block_scalar(pr, u, tables);
}

struct DecodeProduct {
  std::vector<int8_t> q;
  std::vector<float> u;
  std::vector<int32_t> p;
  std::vector<int16_t> tables;
  QuantRow qr{};
  float bias = 0;
  Problem pr{};
  int64_t first = 0, units = 0;  // this product's range of the region's units
};

void decode_products_impl(const PackedMatmulArgs* args, int n) {
  static thread_local std::vector<DecodeProduct> tls;
  std::vector<DecodeProduct>& prods = tls;  // the calling thread's, also inside the pool lambdas
  if (static_cast<int>(prods.size()) < n) prods.resize(n);
  int64_t units = 0, weights = 0;
  for (int i = 0; i < n; i++) {
    const PackedMatmulArgs& a = args[i];
    DecodeProduct& d = prods[i];
    const int64_t G = (a.K + 3) / 4, NB = (a.N + 15) / 16;
    d.q.resize(static_cast<size_t>(G * 4));
    d.u.resize(static_cast<size_t>(a.K));
    d.p.resize(static_cast<size_t>(NB * 16));
    d.bias = prep_token(a, 0, d.u.data(), d.q.data(), G * 4, d.qr);
    d.pr = Problem{d.q.data(), reinterpret_cast<const uint64_t*>(a.w), 1, NB, G, d.p.data()};
    if (a.isa != kAvx512 && a.isa != kAvx2) subset_tables(d.pr, d.tables);
    d.first = units;
    d.units = decode_units(d.pr, a.isa);
    units += d.units;
    weights += a.N * a.K;
  }
  auto run = [&](int64_t u0, int64_t u1) {
    int i = 0;
    for (int64_t u = u0; u < u1; u++) {
      while (u >= prods[i].first + prods[i].units) i++;
      decode_unit(prods[i].pr, args[i].isa, u - prods[i].first, prods[i].tables.data());
    }
  };
  blocks_for(units, weights, run);
  for (int i = 0; i < n; i++) {
    const PackedMatmulArgs& a = args[i];
    const DecodeProduct& d = prods[i];
    a.outputs(d.p.data(), d.qr.d, d.qr.qs, d.bias, a.y);
  }
}


// fbiRepack(bits u32 [N, ceil(K/32)], K, N, out u32 [interleaved_words(K, N)]): interleaved layout.
Napi::Value Repack(const Napi::CallbackInfo& info) {
  size_t bn, on;
  const uint32_t* bits = u32(info, 0, &bn);
  const int64_t K = num(info, 1), N = num(info, 2);
  uint32_t* out32 = u32(info, 3, &on);
  const int64_t wpr = (K + 31) / 32, G = (K + 3) / 4, NB = (N + 15) / 16;
  if (K <= 0 || N <= 0 || static_cast<int64_t>(bn) < N * wpr || static_cast<int64_t>(on) < interleaved_words(K, N))
    throw Napi::RangeError::New(info.Env(), "fbiRepack: bad sizes");
  uint64_t* out = reinterpret_cast<uint64_t*>(out32);
  if (reinterpret_cast<uintptr_t>(out) % 8) throw Napi::RangeError::New(info.Env(), "fbiRepack: output must be 8-byte aligned");
  std::memset(out, 0, static_cast<size_t>(interleaved_words(K, N)) * 4);  // the last tile's padding blocks
  parallel_for(NB, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b++)
      for (int64_t g = 0; g < G; g++) {
        uint64_t word = 0;
        for (int r = 0; r < 16; r++) {
          const int64_t i = 16 * b + r;
          if (i >= N) break;
          const uint32_t* row = bits + i * wpr;
          for (int k = 0; k < 4; k++) {
            const int64_t j = 4 * g + k;
            const int n = 4 * r + k;  // natural index, stored at bit 8 (n % 8) + n / 8
            if (j < K && ((row[j >> 5] >> (j & 31)) & 1u)) word |= uint64_t{1} << (8 * (n % 8) + n / 8);
          }
        }
        out[(b / kTile) * G * kTile + kTile * g + b % kTile] = word;
      }
  });
  return info.Env().Undefined();
}


// The packed product with int8 activations from checked arguments (weights in the interleaved
// layout); scratch is per thread and kept between calls.
void int8_product_impl(const PackedMatmulArgs& a) {
  const int64_t M = a.M, K = a.K, N = a.N;
  if (M == 0) return;
  static thread_local std::vector<int8_t> q_tls;
  std::vector<int8_t>& q = q_tls;  // the calling thread's, also inside the pool lambdas
  static thread_local std::vector<float> bias_tls;
  std::vector<float>& bias = bias_tls;  // the calling thread's, also inside the pool lambdas
  static thread_local std::vector<QuantRow> qr_tls;
  std::vector<QuantRow>& qr = qr_tls;  // the calling thread's, also inside the pool lambdas
  static thread_local std::vector<int32_t> p_tls;
  std::vector<int32_t>& p = p_tls;  // the calling thread's, also inside the pool lambdas
  const int64_t G = (K + 3) / 4, NB = (N + 15) / 16;
  q.resize(static_cast<size_t>(M * G * 4));
  bias.resize(M);
  qr.resize(M);
  p.resize(static_cast<size_t>(M * NB * 16));
  parallel_rows(M, K, [&](int64_t t0, int64_t t1) {
    static thread_local std::vector<float> u;  // each thread's own scratch
    u.resize(static_cast<size_t>(K));
    for (int64_t t = t0; t < t1; t++) bias[t] = prep_token(a, t, u.data(), q.data() + t * G * 4, G * 4, qr[t]);
  });
  Problem pr{q.data(), reinterpret_cast<const uint64_t*>(a.w), M, NB, G, p.data()};
  masked_sums(pr, a.isa);
  parallel_rows(M, N, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) a.outputs(p.data() + t * NB * 16, qr[t].d, qr[t].qs, bias[t], a.y + t * N);
  });
}

// fbiInt8Matmul(x f32 [M,K], wi u32 (interleaved), alpha, beta, pattern, M, K, N, y f32 [M,N], isa):
// the arguments as in packed_matmul_args.h, the weights in the interleaved layout (fbiRepack).
Napi::Value Int8Matmul(const Napi::CallbackInfo& info) {
  const PackedMatmulArgs a(info, "fbiInt8Matmul", interleaved_words, isa_available);
  auto env = info.Env();
  if (reinterpret_cast<uintptr_t>(a.w) % 8) throw Napi::RangeError::New(env, "fbiInt8Matmul: weights must be 8-byte aligned");
  int8_product_impl(a);
  return env.Undefined();
}

// ---- the LM head: f16 weights, or int8 weights with a scale per row -----------------------------
float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0x1f) bits = sign | 0x7f800000u | (man << 13);
  else if (exp != 0) bits = sign | ((exp + 112) << 23) | (man << 13);
  else if (man == 0) bits = sign;
  else {  // subnormal: normalize
    int e = -1;
    do { man <<= 1; e++; } while (!(man & 0x400));
    bits = sign | ((112 - e) << 23) | ((man & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

void f16_rows_scalar(const float* x, const uint16_t* w, int64_t M, int64_t K, int64_t N, float* y, int64_t n0, int64_t n1) {
  std::vector<float> row(K);
  for (int64_t n = n0; n < n1; n++) {
    for (int64_t k = 0; k < K; k++) row[k] = half_to_float(w[n * K + k]);
    for (int64_t t = 0; t < M; t++) {
      float s = 0;
      for (int64_t k = 0; k < K; k++) s += x[t * K + k] * row[k];
      y[t * N + n] = s;
    }
  }
}

#if defined(__x86_64__)
// Prefetch distance of the batch-1 head rows, in f16 values (1 KB; the int8 head uses the same
// bytes, 2 x this in values). Past a row's end it reaches into the next row, which the next tile reads.
constexpr int64_t kHeadPrefetch = 512;
template <int T, int R>
__attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma"))) inline void f16_tile512(const float* x, const uint16_t* w, int64_t K, int64_t N, float* y, int64_t t0, int64_t n0) {
  __m512 acc[T][R];
  for (int t = 0; t < T; t++)
    for (int r = 0; r < R; r++) acc[t][r] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    if (T == 1 && (k & 31) == 0)  // decode: R row streams, each prefetched kHeadPrefetch halves ahead
      for (int r = 0; r < R; r++) __builtin_prefetch(w + (n0 + r) * K + k + kHeadPrefetch, 0, 3);
    __m512 wv[R];
    for (int r = 0; r < R; r++) wv[r] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + (n0 + r) * K + k)));
    for (int t = 0; t < T; t++) {
      const __m512 xv = _mm512_loadu_ps(x + (t0 + t) * K + k);
      for (int r = 0; r < R; r++) acc[t][r] = _mm512_fmadd_ps(xv, wv[r], acc[t][r]);
    }
  }
  if (k < K) {
    const __mmask16 m = static_cast<__mmask16>((1u << (K - k)) - 1);
    __m512 wv[R];
    for (int r = 0; r < R; r++) wv[r] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w + (n0 + r) * K + k));
    for (int t = 0; t < T; t++) {
      const __m512 xv = _mm512_maskz_loadu_ps(m, x + (t0 + t) * K + k);
      for (int r = 0; r < R; r++) acc[t][r] = _mm512_fmadd_ps(xv, wv[r], acc[t][r]);
    }
  }
  for (int t = 0; t < T; t++)
    for (int r = 0; r < R; r++) y[(t0 + t) * N + n0 + r] = _mm512_reduce_add_ps(acc[t][r]);
}

__attribute__((target("avx2,fma,f16c"))) inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <int T, int R>
__attribute__((target("avx2,fma,f16c"))) inline void f16_tile256(const float* x, const uint16_t* w, int64_t K, int64_t N, float* y, int64_t t0, int64_t n0) {
  __m256 acc[T][R];
  for (int t = 0; t < T; t++)
    for (int r = 0; r < R; r++) acc[t][r] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    if (T == 1 && (k & 31) == 0)
      for (int r = 0; r < R; r++) __builtin_prefetch(w + (n0 + r) * K + k + kHeadPrefetch, 0, 3);
    __m256 wv[R];
    for (int r = 0; r < R; r++) wv[r] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + (n0 + r) * K + k)));
    for (int t = 0; t < T; t++) {
      const __m256 xv = _mm256_loadu_ps(x + (t0 + t) * K + k);
      for (int r = 0; r < R; r++) acc[t][r] = _mm256_fmadd_ps(xv, wv[r], acc[t][r]);
    }
  }
  for (int t = 0; t < T; t++)
    for (int r = 0; r < R; r++) {
      float s = hsum256(acc[t][r]);
      for (int64_t j = k; j < K; j++) s += x[(t0 + t) * K + j] * half_to_float(w[(n0 + r) * K + j]);
      y[(t0 + t) * N + n0 + r] = s;
    }
}

template <void (*Tile)(const float*, const uint16_t*, int64_t, int64_t, float*, int64_t, int64_t),
          void (*Tile1)(const float*, const uint16_t*, int64_t, int64_t, float*, int64_t, int64_t),
          void (*TileD)(const float*, const uint16_t*, int64_t, int64_t, float*, int64_t, int64_t), int T, int R, int RD>
void f16_simd(const float* x, const uint16_t* w, int64_t M, int64_t K, int64_t N, float* y) {
  const int64_t r = M == 1 ? RD : R;
  const int64_t blocks = (N + r - 1) / r;
  parallel_for(blocks, [&](int64_t a, int64_t e) {
    for (int64_t b = a; b < e; b++) {
      const int64_t n0 = b * r;
      if (n0 + r > N) {
        for (int64_t n = n0; n < N; n++)
          for (int64_t t = 0; t < M; t++) Tile1(x, w, K, N, y, t, n);
        continue;
      }
      if (M == 1) { TileD(x, w, K, N, y, 0, n0); continue; }
      int64_t t = 0;
      for (; t + T <= M; t += T) Tile(x, w, K, N, y, t, n0);
      for (; t < M; t++)
        for (int64_t n = n0; n < n0 + r; n++) Tile1(x, w, K, N, y, t, n);
    }
  });
}
#endif

void f16_product_impl(const float* x, const uint16_t* w, int64_t M, int64_t K, int64_t N, float* y, int isa) {
#if defined(__x86_64__)
  if (isa == kAvx512) return f16_simd<f16_tile512<4, 4>, f16_tile512<1, 1>, f16_tile512<1, 8>, 4, 4, 8>(x, w, M, K, N, y);
  if (isa == kAvx2) return f16_simd<f16_tile256<3, 4>, f16_tile256<1, 1>, f16_tile256<1, 4>, 3, 4, 4>(x, w, M, K, N, y);
#endif
  parallel_for(N, [&](int64_t a, int64_t e) { f16_rows_scalar(x, w, M, K, N, y, a, e); });
}

// f16Matmul(x f32 [M,K], w u16 [N,K] (f16 bits), M, K, N, y f32 [M,N], isa): y = x w^T.
Napi::Value F16Matmul(const Napi::CallbackInfo& info) {
  size_t xn, wn, yn;
  const float* x = f32(info, 0, &xn);
  const uint16_t* w = typed_ptr<uint16_t, napi_uint16_array>(info[1], &wn, "uint16 argument");
  const int64_t M = num(info, 2), K = num(info, 3), N = num(info, 4);
  float* y = f32(info, 5, &yn);
  const int isa = resolve(static_cast<int>(num(info, 6)));
  auto env = info.Env();
  if (M < 0 || K <= 0 || N <= 0 || static_cast<int64_t>(xn) < M * K || static_cast<int64_t>(wn) < N * K ||
      static_cast<int64_t>(yn) < M * N)
    throw Napi::RangeError::New(env, "f16Matmul: bad sizes");
  require_isa(env, "f16Matmul", isa, isa_available);
  f16_product_impl(x, w, M, K, N, y, isa);
  return env.Undefined();
}

// int8 head: w s8 [N, kp] (rows zero-padded to kp, a multiple of 64), scale f32 [N], rowsum i32 [N]
// (sum of each row, for the unsigned-offset trick of vpdpbusd). y_tn = d_t s_n sum_k q_tk w_nk.
#if defined(__x86_64__)
template <int T, int R>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) inline void i8_tile512(const uint8_t* xu, const int8_t* w, int64_t kp, int32_t* dot, int64_t N, int64_t t0, int64_t n0) {
  __m512i acc[T][R];
  for (int t = 0; t < T; t++)
    for (int r = 0; r < R; r++) acc[t][r] = _mm512_setzero_si512();
  for (int64_t k = 0; k < kp; k += 64) {
    if (T == 1)
      for (int r = 0; r < R; r++) __builtin_prefetch(w + (n0 + r) * kp + k + 2 * kHeadPrefetch, 0, 3);
    __m512i wv[R];
    for (int r = 0; r < R; r++) wv[r] = _mm512_loadu_si512(w + (n0 + r) * kp + k);
    for (int t = 0; t < T; t++) {
      const __m512i a = _mm512_loadu_si512(xu + (t0 + t) * kp + k);
      for (int r = 0; r < R; r++) acc[t][r] = _mm512_dpbusd_epi32(acc[t][r], a, wv[r]);
    }
  }
  for (int t = 0; t < T; t++)
    for (int r = 0; r < R; r++) dot[(t0 + t) * N + n0 + r] = _mm512_reduce_add_epi32(acc[t][r]);
}

template <int T, int R>
__attribute__((target("avx2"))) inline void i8_tile256(const int8_t* xq, const int8_t* w, int64_t kp, int32_t* dot, int64_t N, int64_t t0, int64_t n0) {
  const __m256i ones16 = _mm256_set1_epi16(1);
  __m256i acc[T][R];
  for (int t = 0; t < T; t++)
    for (int r = 0; r < R; r++) acc[t][r] = _mm256_setzero_si256();
  for (int64_t k = 0; k < kp; k += 32) {
    if (T == 1 && (k & 63) == 0)
      for (int r = 0; r < R; r++) __builtin_prefetch(w + (n0 + r) * kp + k + 2 * kHeadPrefetch, 0, 3);
    __m256i wv[R], wa[R];
    for (int r = 0; r < R; r++) {
      wv[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + (n0 + r) * kp + k));
      wa[r] = _mm256_sign_epi8(wv[r], wv[r]);  // |w| as u8
    }
    for (int t = 0; t < T; t++) {
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + (t0 + t) * kp + k));
      for (int r = 0; r < R; r++)
        acc[t][r] = _mm256_add_epi32(acc[t][r], _mm256_madd_epi16(_mm256_maddubs_epi16(wa[r], _mm256_sign_epi8(a, wv[r])), ones16));
    }
  }
  for (int t = 0; t < T; t++)
    for (int r = 0; r < R; r++) {
      __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc[t][r]), _mm256_extracti128_si256(acc[t][r], 1));
      s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
      s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
      dot[(t0 + t) * N + n0 + r] = _mm_cvtsi128_si32(s);
    }
}
#endif

void i8_product_impl(const float* x, const int8_t* w, const float* scale, const int32_t* rowsum, int64_t M, int64_t K,
                     int64_t kp, int64_t N, float* y, int isa) {
  if (M == 0) return;
  static thread_local std::vector<int8_t> q_tls;
  std::vector<int8_t>& q = q_tls;  // the calling thread's, also inside the pool lambdas
  q.resize(static_cast<size_t>(M * kp));
  static thread_local std::vector<QuantRow> qr_tls;
  std::vector<QuantRow>& qr = qr_tls;  // the calling thread's, also inside the pool lambdas
  qr.resize(M);
  parallel_rows(M, K, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) qr[t] = quantize_row(x + t * K, K, q.data() + t * kp, kp);
  });
  static thread_local std::vector<int32_t> dot_tls;
  std::vector<int32_t>& dot = dot_tls;  // the calling thread's, also inside the pool lambdas
  dot.resize(static_cast<size_t>(M * N));
  bool offset = false;
#if defined(__x86_64__)
  if (isa == kAvx512 && has_vnni()) {
    // vpdpbusd multiplies unsigned by signed bytes: feed q + 128 and subtract 128 * rowsum after.
    static thread_local std::vector<uint8_t> xu_tls;
    std::vector<uint8_t>& xu = xu_tls;  // the calling thread's, also inside the pool lambdas
    xu.resize(q.size());
    for (size_t i = 0; i < q.size(); i++) xu[i] = static_cast<uint8_t>(q[i] + 128);
    const int R = M == 1 ? 8 : 4;
    parallel_for((N + R - 1) / R, [&](int64_t a, int64_t e) {
      for (int64_t b = a; b < e; b++) {
        const int64_t n0 = b * R;
        if (n0 + R > N) {
          for (int64_t n = n0; n < N; n++)
            for (int64_t t = 0; t < M; t++) i8_tile512<1, 1>(xu.data(), w, kp, dot.data(), N, t, n);
          continue;
        }
        int64_t t = 0;
        if (M == 1) { i8_tile512<1, 8>(xu.data(), w, kp, dot.data(), N, 0, n0); continue; }
        for (; t + 4 <= M; t += 4) i8_tile512<4, 4>(xu.data(), w, kp, dot.data(), N, t, n0);
        for (; t < M; t++) i8_tile512<1, 4>(xu.data(), w, kp, dot.data(), N, t, n0);
      }
    });
    offset = true;
  } else if (isa == kAvx512 || isa == kAvx2) {
    parallel_for((N + 3) / 4, [&](int64_t a, int64_t e) {
      for (int64_t b = a; b < e; b++) {
        const int64_t n0 = b * 4;
        if (n0 + 4 > N) {
          for (int64_t n = n0; n < N; n++)
            for (int64_t t = 0; t < M; t++) i8_tile256<1, 1>(q.data(), w, kp, dot.data(), N, t, n);
          continue;
        }
        int64_t t = 0;
        for (; t + 3 <= M; t += 3) i8_tile256<3, 4>(q.data(), w, kp, dot.data(), N, t, n0);
        for (; t < M; t++) i8_tile256<1, 4>(q.data(), w, kp, dot.data(), N, t, n0);
      }
    });
  } else
#endif
  {
    parallel_for(N, [&](int64_t a, int64_t e) {
      for (int64_t n = a; n < e; n++)
        for (int64_t t = 0; t < M; t++) {
          int32_t s = 0;
          for (int64_t k = 0; k < kp; k++) s += static_cast<int32_t>(q[t * kp + k]) * w[n * kp + k];
          dot[t * N + n] = s;
        }
    });
  }
  for (int64_t t = 0; t < M; t++)
    for (int64_t n = 0; n < N; n++) {
      const int32_t d = dot[t * N + n] - (offset ? 128 * rowsum[n] : 0);
      y[t * N + n] = qr[t].d * scale[n] * static_cast<float>(d);
    }
}

// i8Matmul(x f32 [M,K], w i8 (as u8) [N,kp], scale f32 [N], rowsum i32 [N], M, K, kp, N, y f32 [M,N], isa)
Napi::Value I8Matmul(const Napi::CallbackInfo& info) {
  size_t xn, wn, sn, rn, yn;
  const float* x = f32(info, 0, &xn);
  const int8_t* w = reinterpret_cast<const int8_t*>(u8(info, 1, &wn));
  const float* scale = f32(info, 2, &sn);
  const int32_t* rowsum = i32(info, 3, &rn);
  const int64_t M = num(info, 4), K = num(info, 5), kp = num(info, 6), N = num(info, 7);
  float* y = f32(info, 8, &yn);
  const int isa = resolve(static_cast<int>(num(info, 9)));
  auto env = info.Env();
  if (M < 0 || K <= 0 || N <= 0 || kp < K || kp % 64 || static_cast<int64_t>(xn) < M * K || static_cast<int64_t>(wn) < N * kp ||
      static_cast<int64_t>(sn) < N || static_cast<int64_t>(rn) < N || static_cast<int64_t>(yn) < M * N)
    throw Napi::RangeError::New(env, "i8Matmul: bad sizes");
  require_isa(env, "i8Matmul", isa, isa_available);
  i8_product_impl(x, w, scale, rowsum, M, K, kp, N, y, isa);
  return env.Undefined();
}

// copyBandwidth(megabytes, reps): best-of-reps bytes/s of a parallel memcpy over all threads
// (read + write counted once each), the machine's streaming reference for the weight reads.
Napi::Value CopyBandwidth(const Napi::CallbackInfo& info) {
  const int64_t bytes = num(info, 0) << 20;
  const int reps = static_cast<int>(num(info, 1));
  if (bytes <= 0 || reps <= 0) throw Napi::RangeError::New(info.Env(), "copyBandwidth: bad sizes");
  std::vector<char> a(bytes, 1), b(bytes, 0);
  const int64_t chunks = 64;
  double best = 1e30;
  for (int r = 0; r <= reps; r++) {
    const auto t0 = std::chrono::steady_clock::now();
    parallel_tasks(chunks, [&](int64_t c) {
      const int64_t s = bytes / chunks * c, e = c + 1 == chunks ? bytes : bytes / chunks * (c + 1);
      std::memcpy(b.data() + s, a.data() + s, e - s);
    });
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r > 0) best = std::min(best, dt);  // the first pass faults the pages in
  }
  return Napi::Number::New(info.Env(), 2.0 * static_cast<double>(bytes) / best);
}

// readBandwidth(megabytes, reps): best-of-reps bytes/s of reading a buffer over all threads (each
// thread folds its contiguous share into 8 xor lanes): the ceiling for kernels that stream weights.
Napi::Value ReadBandwidth(const Napi::CallbackInfo& info) {
  const int64_t bytes = num(info, 0) << 20;
  const int reps = static_cast<int>(num(info, 1));
  if (bytes <= 0 || reps <= 0) throw Napi::RangeError::New(info.Env(), "readBandwidth: bad sizes");
  const int64_t words = bytes / 8;
  std::vector<uint64_t> a(static_cast<size_t>(words));
  for (int64_t i = 0; i < words; i++) a[i] = static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ULL;
  const int64_t chunks = 64;
  std::vector<uint64_t> fold(chunks, 0);
  double best = 1e30;
  for (int r = 0; r <= reps; r++) {
    const auto t0 = std::chrono::steady_clock::now();
    parallel_tasks(chunks, [&](int64_t c) {
      const int64_t s = words / chunks * c, e = c + 1 == chunks ? words : words / chunks * (c + 1);
      uint64_t l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t i = s;
      for (; i + 8 <= e; i += 8)
        for (int k = 0; k < 8; k++) l[k] ^= a[i + k];
      for (; i < e; i++) l[0] ^= a[i];
      fold[c] = l[0] ^ l[1] ^ l[2] ^ l[3] ^ l[4] ^ l[5] ^ l[6] ^ l[7];
    });
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r > 0) best = std::min(best, dt);
  }
  static volatile uint64_t sink;
  uint64_t all = 0;
  for (uint64_t f : fold) all ^= f;
  sink = all;  // keeps the reads observable
  return Napi::Number::New(info.Env(), static_cast<double>(words * 8) / best);
}

Napi::Value Int8IsaAvailable(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), isa_available(static_cast<int>(num(info, 0))));
}
Napi::Value Int8IsaName(const Napi::CallbackInfo& info) {
  const int isa = resolve(kAuto);
  if (isa != kAvx512) return Napi::String::New(info.Env(), isa == kAvx2 ? "avx2" : "scalar");
  return Napi::String::New(info.Env(), std::string(has_vnni() ? "avx512-vnni" : "avx512bw") + (has_gfni() ? "-gfni" : ""));
}

}  // namespace

int64_t interleaved_words(int64_t K, int64_t N) { return 2 * kTile * ((N + 16 * kTile - 1) / (16 * kTile)) * ((K + 3) / 4); }
int resolve_int8_isa(int isa) { return resolve(isa); }
bool int8_isa_available(int isa) { return isa_available(isa); }
void int8_product(const PackedMatmulArgs& a) { int8_product_impl(a); }
void int8_decode_products(const PackedMatmulArgs* args, int n) { decode_products_impl(args, n); }
void f16_product(const float* x, const uint16_t* w, int64_t M, int64_t K, int64_t N, float* y, int isa) {
  f16_product_impl(x, w, M, K, N, y, isa);
}
void i8_product(const float* x, const int8_t* w, const float* scale, const int32_t* rowsum, int64_t M, int64_t K, int64_t kp,
                int64_t N, float* y, int isa) {
  i8_product_impl(x, w, scale, rowsum, M, K, kp, N, y, isa);
}
}  // namespace fbi8
}  // namespace frugal

FRUGAL_EXPORT("fbiRepack", frugal::fbi8::Repack)
FRUGAL_EXPORT("fbiInt8Matmul", frugal::fbi8::Int8Matmul)
FRUGAL_EXPORT("f16Matmul", frugal::fbi8::F16Matmul)
FRUGAL_EXPORT("i8Matmul", frugal::fbi8::I8Matmul)
FRUGAL_EXPORT("copyBandwidth", frugal::fbi8::CopyBandwidth)
FRUGAL_EXPORT("readBandwidth", frugal::fbi8::ReadBandwidth)
FRUGAL_EXPORT("fbiInt8IsaAvailable", frugal::fbi8::Int8IsaAvailable)
FRUGAL_EXPORT("fbiInt8Isa", frugal::fbi8::Int8IsaName)
