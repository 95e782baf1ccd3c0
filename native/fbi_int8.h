// The int8-activation products of fbi_int8.cc for other native files (the fused decode path): the
// same arithmetic as the JS-visible fbiInt8Matmul / f16Matmul / i8Matmul, on arguments already checked.
#pragma once
#include <cstdint>

#include "packed_matmul_args.h"

namespace frugal {
namespace fbi8 {
// uint32 words of the interleaved layout of a K-input, N-output linear (tiles of 4 16-row blocks).
int64_t interleaved_words(int64_t K, int64_t N);
// kAuto -> the best path this CPU runs for these kernels (AVX-512 needs BW, both SIMD paths F16C).
int resolve_int8_isa(int isa);
bool int8_isa_available(int isa);
// y = the packed 1-bit product of a.x, weights in the interleaved layout (8-byte aligned), a.isa resolved.
void int8_product(const PackedMatmulArgs& a);
// Several products of one token each (args[i].M == 1), e.g. q, k and v, as one parallel region
// (one pool wake instead of one per product, when they are large enough to wake it); same outputs
// as int8_product of each.
void int8_decode_products(const PackedMatmulArgs* args, int n);
// y [M,N] = x [M,K] w^T with w [N,K] as f16 bits.
void f16_product(const float* x, const uint16_t* w, int64_t M, int64_t K, int64_t N, float* y, int isa);
// y [M,N] = x @ (scale * w)^T, w int8 rows of kp bytes (zero padded), rowsum the sums of each row.
void i8_product(const float* x, const int8_t* w, const float* scale, const int32_t* rowsum, int64_t M, int64_t K, int64_t kp,
                int64_t N, float* y, int isa);
}  // namespace fbi8
}  // namespace frugal
