// Each kernel file registers its JS-visible functions with FRUGAL_EXPORT; addon.cc exports them all.
// This keeps kernel families in separate files without a central list to edit.
#pragma once
#include <napi.h>
#include <cstdint>
#include <string>

namespace frugal {
using ExportFn = Napi::Value (*)(const Napi::CallbackInfo&);
struct Registrar {
  Registrar(const char* name, ExportFn fn);
};

// Typed-array views: the JS side passes Float32Array / Int32Array / Uint8Array / Uint32Array.
template <typename T, napi_typedarray_type K>
inline T* typed_ptr(const Napi::Value& v, size_t* len, const char* what) {
  if (!v.IsTypedArray()) throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected a typed array");
  auto ta = v.As<Napi::TypedArray>();
  if (ta.TypedArrayType() != K) throw Napi::TypeError::New(v.Env(), std::string(what) + ": wrong typed array kind");
  if (len) *len = ta.ElementLength();
  auto ab = ta.ArrayBuffer();
  return reinterpret_cast<T*>(static_cast<uint8_t*>(ab.Data()) + ta.ByteOffset());
}
inline float* f32(const Napi::CallbackInfo& info, int i, size_t* len = nullptr) {
  return typed_ptr<float, napi_float32_array>(info[i], len, "float32 argument");
}
inline int32_t* i32(const Napi::CallbackInfo& info, int i, size_t* len = nullptr) {
  return typed_ptr<int32_t, napi_int32_array>(info[i], len, "int32 argument");
}
inline uint32_t* u32(const Napi::CallbackInfo& info, int i, size_t* len = nullptr) {
  return typed_ptr<uint32_t, napi_uint32_array>(info[i], len, "uint32 argument");
}
inline uint8_t* u8(const Napi::CallbackInfo& info, int i, size_t* len = nullptr) {
  return typed_ptr<uint8_t, napi_uint8_array>(info[i], len, "uint8 argument");
}
// A Float32Array of exactly `want` elements; `what` names it in the error message.
inline float* f32_exact(const Napi::Value& v, int64_t want, const std::string& what) {
  size_t len;
  float* p = typed_ptr<float, napi_float32_array>(v, &len, what.c_str());
  if (static_cast<int64_t>(len) != want) throw Napi::RangeError::New(v.Env(), what + " has the wrong length");
  return p;
}
inline int64_t num(const Napi::CallbackInfo& info, int i) { return info[i].As<Napi::Number>().Int64Value(); }
inline double dnum(const Napi::CallbackInfo& info, int i) { return info[i].As<Napi::Number>().DoubleValue(); }
}  // namespace frugal

#define FRUGAL_CAT2(a, b) a##b
#define FRUGAL_CAT(a, b) FRUGAL_CAT2(a, b)
#define FRUGAL_EXPORT(name, fn) static frugal::Registrar FRUGAL_CAT(frugal_registrar_, __LINE__)(name, fn);
