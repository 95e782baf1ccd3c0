// Module entry: exports every function registered with FRUGAL_EXPORT in the kernel files.
#include <utility>
#include <vector>

#include "registry.h"

namespace frugal {
static std::vector<std::pair<const char*, ExportFn>>& registry() {
  static std::vector<std::pair<const char*, ExportFn>> r;
  return r;
}
Registrar::Registrar(const char* name, ExportFn fn) { registry().emplace_back(name, fn); }
}  // namespace frugal

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  for (auto& [name, fn] : frugal::registry()) exports.Set(name, Napi::Function::New(env, fn, name));
  return exports;
}
NODE_API_MODULE(frugal, Init)
