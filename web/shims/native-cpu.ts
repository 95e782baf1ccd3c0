// Browser stand-in for src/backend/cpu/native.ts: the CPU kernels live in a Node addon, which a
// browser cannot load. Anything that reaches for it gets one clear error instead of a missing-module crash.
export function nativeAddon(): Record<string, any> {
  throw new Error('the native CPU backend is not available in browsers; use WebGPU (device "webgpu")');
}
