// Which instruction-set build of a CPU kernel runs, decided in one place.
//
// Kernel families are built up to three times: AVX-512, AVX2+FMA and portable (the only build on
// other targets). The ones written once with GCC vector types include their *_impl.h through
// isa_variants.h and take a function with FRUGAL_ISA_PICK; the ones with hand-written intrinsics
// (fbi.cc, fbi_int8.cc, quant.cc) take an `isa` argument from JS, where 0 asks for the best the CPU
// has and 1..3 force one path so the tests can compare them. FRUGAL_NO_AVX512 / FRUGAL_NO_AVX2 in
// the environment lower what counts as available, so every path runs on one machine.
#pragma once
#include <napi.h>

#include <cstdlib>
#include <string>

namespace frugal {
// Numbered as the JS wrappers pass them (src/backend/cpu/fbi.ts, quant.ts).
enum Isa : int { kAuto = 0, kScalar = 1, kAvx2 = 2, kAvx512 = 3 };

inline bool has_avx512() {
#if defined(__x86_64__)
  static const bool v = __builtin_cpu_supports("avx512f") && !std::getenv("FRUGAL_NO_AVX512");
  return v;
#else
  return false;
#endif
}
inline bool has_avx2() {
#if defined(__x86_64__)
  static const bool v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && !std::getenv("FRUGAL_NO_AVX2");
  return v;
#else
  return false;
#endif
}

// The best build this CPU runs.
inline Isa cpu_isa() { return has_avx512() ? kAvx512 : has_avx2() ? kAvx2 : kScalar; }

// Whether the CPU has what the plain AVX-512 / AVX2 builds need (kScalar always; kAuto never).
inline bool cpu_has(int isa) { return isa == kAvx512 ? has_avx512() : isa == kAvx2 ? has_avx2() : isa == kScalar; }

inline const char* isa_name(int isa) { return isa == kAvx512 ? "avx512" : isa == kAvx2 ? "avx2" : "scalar"; }

// A requested `isa` argument: kAuto becomes the best path that `available` allows.
inline int resolve_isa(int isa, bool (*available)(int) = cpu_has) {
  if (isa != kAuto) return isa;
  return available(kAvx512) ? kAvx512 : available(kAvx2) ? kAvx2 : kScalar;
}

// Refuses a forced path the CPU cannot run; `what` names the JS function in the message.
inline void require_isa(const Napi::Env& env, const char* what, int isa, bool (*available)(int) = cpu_has) {
  if (!available(isa))
    throw Napi::Error::New(env, std::string(what) + ": the requested instruction set is not available on this CPU");
}
}  // namespace frugal

// `fn` from the build cpu_isa() names, in a file that included its *_impl.h through isa_variants.h.
#if defined(__x86_64__)
#define FRUGAL_ISA_PICK(fn)                                                                \
  (::frugal::cpu_isa() == ::frugal::kAvx512 ? avx512::fn                                   \
   : ::frugal::cpu_isa() == ::frugal::kAvx2 ? avx2::fn                                     \
                                            : portable::fn)
#else
#define FRUGAL_ISA_PICK(fn) (portable::fn)
#endif
