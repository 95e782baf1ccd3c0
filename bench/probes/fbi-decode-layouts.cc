// Batch-1 packed 1-bit product (int8 activations, AVX-512 VNNI): weight layouts / kernels on the
// same random bits, streamed from memory (one 2048 x 5632 matrix replicated to ~144 MB, larger than
// the caches), with 1 or 2 threads:
//   block-major  an earlier interleaved order: each 16-row block's words contiguous, a pass over 4
//                blocks reads 4 separate streams (masked byte move + vpdpbusd per 64 weights)
//   tile-major   words of 4 blocks interleaved per input group, a pass reads one sequential stream
//                (same instructions)
//   tile-gfni    tile-major with each word's bits 8 x 8-transposed, so one gf2p8affine of the
//                broadcast word expands it to bytes (no mask register moves)
//   *-pf         the same kernel with a software prefetch 2 KB ahead, one per cache line
//                (native/fbi_int8.cc now runs tile-gfni-pf)
//   *-in-L2      the same kernels over one 128 KB slice again and again: the instruction-bound rate
//   read-only    plain 64-byte loads over the same bytes: the memory ceiling
//   lut-vpermb   lookup tables over bit groups: per 16 inputs, the 16 subset sums of each 4-input
//                group as int16 split in low/high byte tables (2 x 64 bytes), indexed with vpermb by
//                (group << 4 | nibble) and summed over groups with vpdpbusd (exact)
// Prints GB/s of weight bits read per layout and checks every result against a scalar reference.
//   g++ -O3 -march=native -std=c++17 -pthread bench/probes/fbi-decode-layouts.cc -o /tmp/fbi-layouts
//   /tmp/fbi-layouts 1 && /tmp/fbi-layouts 2
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,gfni")))

namespace {
constexpr int64_t K = 2048, N = 5632, G = K / 4, NB = N / 16, C = K / 16, NPAIR = NB / 2;
constexpr int64_t kWords = NB * G;  // 64-bit words per matrix
constexpr int kCopies = 100;

// Block-major: word (b, g) at b * G + g. Tile-major: word (b, g) at (b / 4) * 4 G + 4 g + b % 4.
// kGfni: tile-major words with bit 8 j + l holding sign 8 l + j, expanded by gf2p8affine (quadword l of
// the matrix picks bit l of each byte: the output bit i is the parity of matrix byte 7 - i AND the
// input byte); otherwise a mask-register move and a masked byte move.
template <bool kTileMajor, bool kGfni = false, bool kPrefetch = false>
TGT void dot_kernel(const uint64_t* w, const int8_t* q, int32_t* p, int64_t b0, int64_t b1) {
  const __m512i ones = _mm512_set1_epi8(1);
  const __m512i pick = _mm512_set_epi64(1LL << 63, 1LL << 62, 1LL << 61, 1LL << 60, 1LL << 59, 1LL << 58, 1LL << 57, 1LL << 56);
  const int32_t* q32 = reinterpret_cast<const int32_t*>(q);
  for (int64_t b = b0; b < b1; b += 4) {
    __m512i acc[4];
    for (auto& a : acc) a = _mm512_setzero_si512();
    for (int64_t g = 0; g < G; g++) {
      const __m512i x = _mm512_set1_epi32(q32[g]);
      if (kPrefetch && (g & 1) == 0) __builtin_prefetch(w + b * G + 4 * g + 256, 0, 3);
      for (int r = 0; r < 4; r++) {
        const uint64_t word = kTileMajor ? w[b * G + 4 * g + r] : w[(b + r) * G + g];
        const __m512i v = kGfni ? _mm512_gf2p8affine_epi64_epi8(_mm512_set1_epi64(static_cast<long long>(word)), pick, 0)
                                : _mm512_maskz_mov_epi8(_cvtu64_mask64(word), ones);
        acc[r] = _mm512_dpbusd_epi32(acc[r], v, x);
      }
    }
    for (int r = 0; r < 4; r++) _mm512_storeu_si512(p + (b + r) * 16, acc[r]);
  }
}

TGT int64_t read_only(const uint64_t* w, int64_t b0, int64_t b1) {
  __m512i acc[4];
  for (auto& a : acc) a = _mm512_setzero_si512();
  const __m512i* v = reinterpret_cast<const __m512i*>(w + b0 * G);
  const int64_t n = (b1 - b0) * G / 8;
  for (int64_t i = 0; i + 4 <= n; i += 4)
    for (int r = 0; r < 4; r++) acc[r] = _mm512_xor_si512(acc[r], _mm512_loadu_si512(v + i + r));
  return _mm512_reduce_add_epi64(_mm512_xor_si512(_mm512_xor_si512(acc[0], acc[1]), _mm512_xor_si512(acc[2], acc[3])));
}

uint64_t transpose8(uint64_t w) {
  uint64_t t = 0;
  for (int l = 0; l < 8; l++)
    for (int j = 0; j < 8; j++)
      if ((w >> (8 * l + j)) & 1) t |= uint64_t{1} << (8 * j + l);
  return t;
}

// LUT: 64-byte chunks, chunk (pair, c) at (pair / 2) * 2 C + 2 c + pair % 2; byte 4 r + s holds the
// sign nibble of row r of the pair's first block at inputs 16 c + 4 s.. (low nibble) and of its
// second block (high nibble). tables: [C][lo 64 | hi 64], entry 16 s + e = subset sum e of group s.
TGT void lut_vpermb(const uint8_t* w, const uint8_t* tab, int32_t* p, int64_t q0, int64_t q1) {
  const __m512i ones = _mm512_set1_epi8(1), m0f = _mm512_set1_epi8(0x0f), slot = _mm512_set1_epi32(0x30201000);
  for (int64_t pp = q0; pp < q1; pp += 2) {
    __m512i lo_a[2], hi_a[2], lo_b[2], hi_b[2];
    for (int i = 0; i < 2; i++) lo_a[i] = hi_a[i] = lo_b[i] = hi_b[i] = _mm512_setzero_si512();
    const uint8_t* wt = w + pp * C * 64;
    for (int64_t c = 0; c < C; c++) {
      const __m512i tl = _mm512_loadu_si512(tab + c * 128), th = _mm512_loadu_si512(tab + c * 128 + 64);
      for (int i = 0; i < 2; i++) {
        const __m512i v = _mm512_loadu_si512(wt + (c * 2 + i) * 64);
        const __m512i ia = _mm512_ternarylogic_epi32(v, m0f, slot, 0xEA);  // (v & 0x0f) | slot
        const __m512i ib = _mm512_ternarylogic_epi32(_mm512_srli_epi16(v, 4), m0f, slot, 0xEA);
        lo_a[i] = _mm512_dpbusd_epi32(lo_a[i], _mm512_permutexvar_epi8(ia, tl), ones);
        hi_a[i] = _mm512_dpbusd_epi32(hi_a[i], ones, _mm512_permutexvar_epi8(ia, th));
        lo_b[i] = _mm512_dpbusd_epi32(lo_b[i], _mm512_permutexvar_epi8(ib, tl), ones);
        hi_b[i] = _mm512_dpbusd_epi32(hi_b[i], ones, _mm512_permutexvar_epi8(ib, th));
      }
    }
    for (int i = 0; i < 2; i++) {
      _mm512_storeu_si512(p + (pp + i) * 32, _mm512_add_epi32(lo_a[i], _mm512_slli_epi32(hi_a[i], 8)));
      _mm512_storeu_si512(p + (pp + i) * 32 + 16, _mm512_add_epi32(lo_b[i], _mm512_slli_epi32(hi_b[i], 8)));
    }
  }
}

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::max(1, std::atoi(argv[1])) : 1;
  std::mt19937_64 rng(1);
  std::vector<uint64_t> rows(static_cast<size_t>(N * K / 64));
  for (auto& x : rows) x = rng();
  auto bit = [&](int64_t r, int64_t j) { return static_cast<int>((rows[(r * K + j) / 64] >> ((r * K + j) % 64)) & 1); };
  std::vector<uint64_t> bm(kWords), tm(kWords);
  std::vector<uint8_t> lut(kWords * 8);
  for (int64_t b = 0; b < NB; b++)
    for (int64_t g = 0; g < G; g++) {
      uint64_t word = 0;
      for (int r = 0; r < 16; r++)
        for (int k = 0; k < 4; k++)
          if (bit(16 * b + r, 4 * g + k)) word |= uint64_t{1} << (4 * r + k);
      bm[b * G + g] = word;
      tm[(b / 4) * G * 4 + g * 4 + b % 4] = word;
    }
  for (int64_t pr = 0; pr < NPAIR; pr++)
    for (int64_t c = 0; c < C; c++)
      for (int r = 0; r < 16; r++)
        for (int s = 0; s < 4; s++) {
          int na = 0, nb = 0;
          for (int k = 0; k < 4; k++) {
            na |= bit(32 * pr + r, 16 * c + 4 * s + k) << k;
            nb |= bit(32 * pr + 16 + r, 16 * c + 4 * s + k) << k;
          }
          lut[((pr / 2) * C * 2 + c * 2 + pr % 2) * 64 + 4 * r + s] = static_cast<uint8_t>(na | (nb << 4));
        }
  std::vector<int8_t> q(K);
  for (auto& x : q) x = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
  std::vector<uint8_t> tab(C * 128);
  for (int64_t c = 0; c < C; c++)
    for (int s = 0; s < 4; s++)
      for (int e = 0; e < 16; e++) {
        int t = 0;
        for (int k = 0; k < 4; k++)
          if ((e >> k) & 1) t += q[16 * c + 4 * s + k];
        tab[c * 128 + 16 * s + e] = static_cast<uint8_t>(t & 0xff);
        tab[c * 128 + 64 + 16 * s + e] = static_cast<uint8_t>(static_cast<int8_t>(t >> 8));
      }
  std::vector<int32_t> ref(N);
  for (int64_t r = 0; r < N; r++) {
    int s = 0;
    for (int64_t j = 0; j < K; j++)
      if (bit(r, j)) s += q[j];
    ref[r] = s;
  }
  std::vector<uint64_t> BM(kWords * kCopies), TM(kWords * kCopies);
  std::vector<uint8_t> LUT(kWords * 8 * kCopies);
  std::vector<uint64_t> GT(kWords * kCopies);
  for (int64_t i = 0; i < kWords; i++) GT[i] = transpose8(tm[i]);
  for (int m = 1; m < kCopies; m++) std::memcpy(&GT[m * kWords], GT.data(), kWords * 8);
  for (int m = 0; m < kCopies; m++) {
    std::memcpy(&BM[m * kWords], bm.data(), kWords * 8);
    std::memcpy(&TM[m * kWords], tm.data(), kWords * 8);
    std::memcpy(&LUT[m * kWords * 8], lut.data(), kWords * 8);
  }
  const char* names[] = {"block-major", "tile-major", "tile-gfni", "lut-vpermb", "tile-in-L2", "gfni-in-L2", "read-only",
                         "tile-pf", "tile-gfni-pf"};
  constexpr int64_t kSlice = 32;  // blocks of the in-L2 runs: 32 x 512 words of 8 bytes per thread
  volatile int64_t sink = 0;
  for (int kind = 0; kind < 9; kind++) {
    std::vector<int32_t> p(N);
    const bool in_l2 = kind == 4 || kind == 5;
    auto body = [&](int t) {
      const int64_t tiles = NB / 4 / threads, b0 = t * tiles * 4, b1 = t == threads - 1 ? NB : (t + 1) * tiles * 4;
      const int64_t pairs = NPAIR / 2 / threads, p0 = t * pairs * 2, p1 = t == threads - 1 ? NPAIR : (t + 1) * pairs * 2;
      for (int m = 0; m < kCopies; m++) {
        if (kind == 0) dot_kernel<false>(&BM[m * kWords], q.data(), p.data(), b0, b1);
        if (kind == 1) dot_kernel<true>(&TM[m * kWords], q.data(), p.data(), b0, b1);
        if (kind == 2) dot_kernel<true, true>(&GT[m * kWords], q.data(), p.data(), b0, b1);
        if (kind == 3) lut_vpermb(&LUT[m * kWords * 8], tab.data(), p.data(), p0, p1);
        if (kind == 4) dot_kernel<true>(&TM[0], q.data(), p.data(), b0, b0 + kSlice);
        if (kind == 5) dot_kernel<true, true>(&GT[0], q.data(), p.data(), b0, b0 + kSlice);
        if (kind == 6) sink = sink + read_only(&TM[m * kWords], b0, b1);
        if (kind == 7) dot_kernel<true, false, true>(&TM[m * kWords], q.data(), p.data(), b0, b1);
        if (kind == 8) dot_kernel<true, true, true>(&GT[m * kWords], q.data(), p.data(), b0, b1);
      }
    };
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
      const double t0 = now();
      std::vector<std::thread> pool;
      for (int t = 1; t < threads; t++) pool.emplace_back(body, t);
      body(0);
      for (auto& th : pool) th.join();
      best = std::min(best, now() - t0);
    }
    const double bytes = in_l2 ? static_cast<double>(kSlice * G * 8) * threads * kCopies : static_cast<double>(kWords) * 8 * kCopies;
    const char* check = kind == 6 ? "-" : in_l2 ? "(partial)" : std::equal(p.begin(), p.end(), ref.begin()) ? "exact" : "WRONG";
    std::printf("%-12s %d thread(s): %6.2f ms, %5.1f GB/s of bits, %s\n", names[kind], threads, best * 1e3, bytes / best / 1e9, check);
  }
}
