// Block-quantized (GGUF Q8_0 / Q4_0 / Q1_0) matrix products with int8 activations. Included once per
// instruction set by quant.cc inside a namespace compiled with that target, so the plain loops below
// are vectorized for each ISA. Layouts (see src/io/gguf.ts):
//   Q8_0  32 weights: f16 d, int8 q[32]                       w = d * q
//   Q4_0  32 weights: f16 d, uint8 qs[16] (i low, i+16 high)  w = d * (nibble - 8)
//   Q1_0 128 weights: f16 d, uint8 bits[16] (LSB first)       w = bit ? d : -d

// One weight row (K values) into int8 values and one f32 scale per 32 (the activation block size).
static void unpack_row(int type, const uint8_t* row, int64_t K, int8_t* q, float* s) {
  if (type == kQ8_0) {
    for (int64_t b = 0; b < K / 32; b++) {
      const uint8_t* blk = row + b * 34;
      s[b] = half_to_float(blk[0] | (blk[1] << 8));
      for (int i = 0; i < 32; i++) q[b * 32 + i] = static_cast<int8_t>(blk[2 + i]);
    }
  } else if (type == kQ4_0) {
    for (int64_t b = 0; b < K / 32; b++) {
      const uint8_t* blk = row + b * 18;
      s[b] = half_to_float(blk[0] | (blk[1] << 8));
      for (int i = 0; i < 16; i++) {
        q[b * 32 + i] = static_cast<int8_t>((blk[2 + i] & 15) - 8);
        q[b * 32 + 16 + i] = static_cast<int8_t>((blk[2 + i] >> 4) - 8);
      }
    }
  } else {
    // Each bit byte expands to eight +-1 bytes through a 256-entry table.
    const uint64_t* lut = sign_table();
    for (int64_t b = 0; b < K / 128; b++) {
      const uint8_t* blk = row + b * 18;
      const float d = half_to_float(blk[0] | (blk[1] << 8));
      for (int j = 0; j < 4; j++) s[b * 4 + j] = d;
      for (int i = 0; i < 16; i++) std::memcpy(q + b * 128 + i * 8, &lut[blk[2 + i]], 8);
    }
  }
}

static inline int32_t dot32(const int8_t* a, const int8_t* b) {
  int32_t s = 0;
  for (int i = 0; i < 32; i++) s += static_cast<int32_t>(a[i]) * static_cast<int32_t>(b[i]);
  return s;
}

// sum over 32-blocks j of sa[j] * sb[j] * (a . b)_j
#if defined(FRUGAL_ISA_X86)
// int8 products through maddubs (|a| unsigned times b with a's sign); activations are in [-127, 127],
// so the pair sums cannot saturate. A weight of exactly -128 (not produced by the Q8_0 quantizer, whose
// values lie in [-127, 127]) would have its sign lost where the activation is negative.
static inline float dot_blocks(const int8_t* a, const float* sa, const int8_t* b, const float* sb, int64_t nb) {
  __m256 acc = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t j = 0; j < nb; j++) {
    const __m256i va = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + j * 32));
    const __m256i vb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + j * 32));
    const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(va, va), _mm256_sign_epi8(vb, va)), ones);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(sa[j] * sb[j]), _mm256_cvtepi32_ps(p), acc);
  }
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Decode shapes (few activation rows): the dot product straight from the stored blocks, no unpacking.
static float dot_row_direct(int type, const uint8_t* row, const int8_t* a, const float* sa, int64_t K) {
  __m256 acc = _mm256_setzero_ps();
  const __m256i ones16 = _mm256_set1_epi16(1), ones8 = _mm256_set1_epi8(1);
  auto add = [&](__m256i w, __m256i x, float scale) {
    const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(w, x)), ones16);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(p), acc);
  };
  if (type == kQ8_0) {
    for (int64_t j = 0; j < K / 32; j++) {
      const uint8_t* blk = row + j * 34;
      add(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2)), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + j * 32)),
          sa[j] * half_to_float(blk[0] | (blk[1] << 8)));
    }
  } else if (type == kQ4_0) {
    const __m128i low = _mm_set1_epi8(0x0f);
    const __m256i eight = _mm256_set1_epi8(8);
    for (int64_t j = 0; j < K / 32; j++) {
      const uint8_t* blk = row + j * 18;
      const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
      const __m256i w = _mm256_sub_epi8(_mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), low), _mm_and_si128(raw, low)), eight);
      add(w, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + j * 32)), sa[j] * half_to_float(blk[0] | (blk[1] << 8)));
    }
  } else {
    // 32 sign bits -> 32 bytes: byte i takes bit i % 8 of bit byte i / 8; set -> +a, clear -> -a.
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
    for (int64_t b = 0; b < K / 128; b++) {
      const uint8_t* blk = row + b * 18;
      const float d = half_to_float(blk[0] | (blk[1] << 8));
      for (int j = 0; j < 4; j++) {
        uint32_t bits;
        std::memcpy(&bits, blk + 2 + j * 4, 4);
        const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), spread), bit), bit);
        const __m256i neg = _mm256_or_si256(set, ones8);  // set: -1, clear: +1
        const __m256i w = _mm256_sub_epi8(_mm256_setzero_si256(), neg);  // set: +1, clear: -1
        const int64_t k = b * 4 + j;
        add(w, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + k * 32)), sa[k] * d);
      }
    }
  }
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#else
static inline float dot_blocks(const int8_t* a, const float* sa, const int8_t* b, const float* sb, int64_t nb) {
  float acc = 0;
  for (int64_t j = 0; j < nb; j++) acc += sa[j] * sb[j] * static_cast<float>(dot32(a + j * 32, b + j * 32));
  return acc;
}
#endif

// y[m, n] for rows n in [n0, n1): the weight rows of the tile are unpacked once and reused by every
// activation row, so a prefill of M tokens reads each weight block once per tile, not once per token.
static void tile(int type, const uint8_t* w, int64_t rowBytes, int64_t K, int64_t n0, int64_t n1, int64_t M,
                 const int8_t* qx, const float* sx, int64_t N, float* y, int8_t* wq, float* ws) {
  const int64_t nb = K / 32;
#if defined(FRUGAL_ISA_X86)
  if (M <= 2) {
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = n0; n < n1; n++) y[m * N + n] = dot_row_direct(type, w + n * rowBytes, qx + m * K, sx + m * nb, K);
    return;
  }
#endif
  for (int64_t n = n0; n < n1; n++) unpack_row(type, w + n * rowBytes, K, wq + (n - n0) * K, ws + (n - n0) * nb);
  for (int64_t m = 0; m < M; m++) {
    const int8_t* a = qx + m * K;
    const float* sa = sx + m * nb;
    for (int64_t n = n0; n < n1; n++) {
      const int8_t* b = wq + (n - n0) * K;
      const float* sb = ws + (n - n0) * nb;
      y[m * N + n] = dot_blocks(a, sa, b, sb, nb);
    }
  }
}

// Activations to int8 with one scale per 32 values (amax / 127, round to nearest).
static void quantize_rows(const float* x, int64_t M, int64_t K, int8_t* q, float* s) {
  for (int64_t m = 0; m < M; m++) {
    for (int64_t b = 0; b < K / 32; b++) {
      const float* v = x + m * K + b * 32;
      float amax = 0;
      for (int i = 0; i < 32; i++) amax = std::max(amax, std::fabs(v[i]));
      const float d = amax / 127.f, id = d > 0 ? 1.f / d : 0.f;
      s[m * (K / 32) + b] = d;
      for (int i = 0; i < 32; i++) q[m * K + b * 32 + i] = static_cast<int8_t>(std::nearbyint(v[i] * id));
    }
  }
}
