// The CPU backend: buffers are plain typed arrays (garbage-collected, zero-copy into the addon).
import type { Backend, Buf, DType, TypedArray } from '../types.ts';
import { cpuKernels } from './kernels.ts';

function asArray(b: Buf): TypedArray {
  return b as unknown as TypedArray;
}

export const cpuExtra: Record<string, (...args: any[]) => any> = {};

export const cpuBackend: Backend = {
  name: 'cpu',
  alloc(length: number, dtype: DType): Buf {
    return dtype === 'f32' ? new Float32Array(length) : new Int32Array(length);
  },
  upload(data: TypedArray): Buf {
    return data;
  },
  readSync: asArray,
  async read(b: Buf) { return asArray(b); },
  free() { /* the garbage collector owns CPU memory */ },
  kernels: cpuKernels,
  extra: cpuExtra,
};

