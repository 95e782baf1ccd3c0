// How many threads the native CPU kernels split their work over (default: all cores).
import { nativeAddon } from './native.ts';

export function cpuThreads(): number {
  return nativeAddon().getNumThreads();
}

export function setCpuThreads(n: number): number {
  if (!(Number.isInteger(n) && n >= 1)) throw new Error(`thread count must be an integer >= 1, got ${n}`);
  return nativeAddon().setNumThreads(n);
}
