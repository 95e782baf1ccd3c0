// The CPU backend: buffers are plain typed arrays (garbage-collected, zero-copy into the addon). Its
// tables: the generic kernels (./kernels.ts) and one per layer family (src/backend/contracts.ts).
import type { Backend, Buf, DType, TypedArray } from '../types.ts';
import { cpuAttention } from './attention.ts';
import { cpuFbi } from './fbi.ts';
import { FusedStack } from './fbi-decode.ts';
import { cpuKernels } from './kernels.ts';
import { cpuOptim } from './optim.ts';
import { adviseHugePages, cpuPeer } from './peer.ts';
import { cpuTtt } from './ttt.ts';

function asArray(b: Buf): TypedArray {
  return b as unknown as TypedArray;
}

const newArray = (length: number, dtype: DType) => (dtype === 'f32' ? new Float32Array(length) : new Int32Array(length));

export const cpuBackend: Backend = {
  name: 'cpu',
  alloc: newArray,
  upload(data: TypedArray): Buf {
    return data;
  },
  create(length, dtype, fill, opts = {}) {
    const a = newArray(length, dtype);
    // Rows of a large table are touched at random: ask for huge pages before the first write.
    if (opts.hugePages && a instanceof Float32Array) adviseHugePages(a);
    fill(a);
    return a;
  },
  syncReadable: true,
  readSync: asArray,
  raiseIf(found, message) {
    const f = found as unknown as Int32Array;
    if (f[0] > 0) throw new Error(message(f[2]));
  },
  async read(b: Buf) { return asArray(b); },
  free() { /* the garbage collector owns CPU memory */ },
  kernels: cpuKernels,
  attention: cpuAttention,
  ttt: cpuTtt,
  peer: cpuPeer,
  fbi: { ...cpuFbi, decodeStack: (spec) => new FusedStack(spec) },
  optim: cpuOptim,
};
