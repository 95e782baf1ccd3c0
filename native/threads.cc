// Thread pool control from JS: how many threads the CPU kernels split work over (frugal --threads N).
#include "registry.h"
#include "threadpool.h"

namespace frugal::threads {
static Napi::Value Get(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), num_threads()); }
static Napi::Value Set(const Napi::CallbackInfo& info) {
  int64_t n = num(info, 0);
  if (n < 1) throw Napi::RangeError::New(info.Env(), "thread count must be >= 1");
  set_num_threads(static_cast<int>(n));
  return Napi::Number::New(info.Env(), num_threads());
}
}  // namespace frugal::threads

FRUGAL_EXPORT("getNumThreads", frugal::threads::Get)
FRUGAL_EXPORT("setNumThreads", frugal::threads::Set)
