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
    for (int64_t b = 0; b < K / 128; b++) {
      const uint8_t* blk = row + b * 18;
      const float d = half_to_float(blk[0] | (blk[1] << 8));
      for (int j = 0; j < 4; j++) s[b * 4 + j] = d;
      for (int i = 0; i < 128; i++) q[b * 128 + i] = static_cast<int8_t>((((blk[2 + (i >> 3)] >> (i & 7)) & 1) << 1) - 1);
    }
  }
}

static inline int32_t dot32(const int8_t* a, const int8_t* b) {
  int32_t s = 0;
  for (int i = 0; i < 32; i++) s += static_cast<int32_t>(a[i]) * static_cast<int32_t>(b[i]);
  return s;
}

// y[m, n] for rows n in [n0, n1): the weight rows of the tile are unpacked once and reused by every
// activation row, so a prefill of M tokens reads each weight block once per tile, not once per token.
static void tile(int type, const uint8_t* w, int64_t rowBytes, int64_t K, int64_t n0, int64_t n1, int64_t M,
                 const int8_t* qx, const float* sx, int64_t N, float* y, int8_t* wq, float* ws) {
  const int64_t nb = K / 32;
  for (int64_t n = n0; n < n1; n++) unpack_row(type, w + n * rowBytes, K, wq + (n - n0) * K, ws + (n - n0) * nb);
  for (int64_t m = 0; m < M; m++) {
    const int8_t* a = qx + m * K;
    const float* sa = sx + m * nb;
    for (int64_t n = n0; n < n1; n++) {
      const int8_t* b = wq + (n - n0) * K;
      const float* sb = ws + (n - n0) * nb;
      float acc = 0;
      for (int64_t j = 0; j < nb; j++) acc += sa[j] * sb[j] * static_cast<float>(dot32(a + j * 32, b + j * 32));
      y[m * N + n] = acc;
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
