// Compiles FRUGAL_ISA_IMPL (a kernel family's *_impl.h, written once with GCC vector types) three
// times: into namespaces avx512 and avx2 under the matching `#pragma GCC target`, and into namespace
// portable for the baseline target (the only one outside x86-64). FRUGAL_ISA_PICK (isa.h) then names
// the build that runs. Inside each copy FRUGAL_ISA_ROWS is the row count of a register block (4 with
// AVX-512's 32 vector registers, 2 with 16) and FRUGAL_ISA_X86 is defined in the two x86 builds.
//
// Use: `#define FRUGAL_ISA_IMPL "attention_impl.h"` then `#include "isa_variants.h"`, inside the
// family's namespace, after the includes and declarations the impl header needs. No include guard:
// each inclusion compiles the header it is given.
#ifndef FRUGAL_ISA_IMPL
#error "define FRUGAL_ISA_IMPL before including isa_variants.h"
#endif

// The impl headers pass GCC vector types between inlined helpers only, so the ABI note does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"
#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,fma")
namespace avx512 {
#define FRUGAL_ISA_ROWS 4
#define FRUGAL_ISA_X86 1
#include FRUGAL_ISA_IMPL
#undef FRUGAL_ISA_X86
#undef FRUGAL_ISA_ROWS
}  // namespace avx512
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#define FRUGAL_ISA_ROWS 2
#define FRUGAL_ISA_X86 1
#include FRUGAL_ISA_IMPL
#undef FRUGAL_ISA_X86
#undef FRUGAL_ISA_ROWS
}  // namespace avx2
#pragma GCC pop_options
#endif
namespace portable {
#define FRUGAL_ISA_ROWS 2
#include FRUGAL_ISA_IMPL
#undef FRUGAL_ISA_ROWS
}  // namespace portable
#undef FRUGAL_ISA_IMPL
