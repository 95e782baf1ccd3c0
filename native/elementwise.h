// Elementwise kernels of elementwise.cc for other native files (the fused decode path).
#pragma once
#include <cstdint>

namespace frugal {
namespace elementwise {
// y = x * sigmoid(x), the same arithmetic as the JS-visible silu (vectorized, threaded when long).
void silu(const float* x, float* y, int64_t n);
}  // namespace elementwise
}  // namespace frugal
