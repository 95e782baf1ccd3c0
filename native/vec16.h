// 16-float vector helpers shared by the kernel families. No include guard on purpose: every
// *_impl.h includes it inside its own target namespace (AVX-512, AVX2+FMA, portable), so each copy
// compiles for that instruction set. Needs <cstdint>.
typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));
typedef int32_t i16v __attribute__((vector_size(64)));

static inline v16 ld(const float* p) { return *reinterpret_cast<const v16u*>(p); }
static inline void st(float* p, v16 v) { *reinterpret_cast<v16u*>(p) = v; }

// 2^x for x <= 0 (scores minus their running max), relative error ~2e-7; below -126 it returns
// 2^-126 instead of a denormal/zero, which callers mask where exact zeros matter.
static inline v16 exp2v(v16 x) {
  const v16 lo = v16{} - 126.0f;
  x = x < lo ? lo : x;
  const v16 magic = v16{} + 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  v16 t = x + magic;
  i16v n = (i16v)t - (i16v)magic;  // vector casts reinterpret the bits
  v16 f = x - (t - magic);  // in [-0.5, 0.5]
  v16 p = 1.5403530e-4f + f * 0.0f;
  p = p * f + 1.3333558e-3f;
  p = p * f + 9.6181291e-3f;
  p = p * f + 5.5504109e-2f;
  p = p * f + 2.4022651e-1f;
  p = p * f + 6.9314718e-1f;
  p = p * f + 1.0f;
  return (v16)((i16v)p + (n << 23));
}
