// The WebGPU backend: `await initWebGPU()` acquires a device and registers the backend under
// 'webgpu'; when no adapter can be had, the backend is marked unavailable with the reason (tensors
// asking for it then fail with that reason) and the promise rejects with it.
import { getBackend, hasBackend, markUnavailable, registerBackend } from '../registry.ts';
import type { Backend, Buf, DType, Kernels, TypedArray } from '../types.ts';
import { type AcquireOpts, acquireDevice, withEnvBindingLimit } from './device.ts';
import { GpuBuf, type PoolStats } from './pool.ts';
import { Runtime } from './runtime.ts';
import { type CapturedStep, captureStep } from './replay.ts';
export { CapturedStep, type KernelProfile, type ReplayOverrides } from './replay.ts';
import * as ew from './kernels/elementwise.ts';
import * as rows from './kernels/rows.ts';
import { matmul } from './kernels/matmul.ts';
import { attentionBackward, attentionForward } from './kernels/attention.ts';
import { unsupported } from '../contracts.ts';
import { webgpuTtt } from './ttt.ts';
import { coalesceRows, webgpuPeer } from './peer.ts';
import { webgpuFbi } from './fbi.ts';
import { checkSubgroupInt8 } from './kernels/subgroup-int8.ts';

export type { AcquireOpts } from './device.ts';
export type { PoolStats } from './pool.ts';

let runtime: Runtime | null = null;
// Dawn's instance must stay reachable while the device lives: collecting it tears the device down.
let instance: unknown = null;
let adapterName = '';
let pendingInit: Promise<Backend> | null = null;

/** A webgpu buffer that may be split into parts (only for kernels that handle parts). */
function gs(b: Buf): GpuBuf {
  if (!(b instanceof GpuBuf)) throw new Error('webgpu: got a buffer from another backend; move the tensor with toDevice() first');
  if (b.released) throw new Error('webgpu: buffer used after it was freed (a disposed tensor was read)');
  return b;
}
const g = (b: Buf): GpuBuf => webgpuRuntime().whole(gs(b), 'this operation');
const gn = (b: Buf | null) => (b === null ? null : g(b));

function makeKernels(rt: Runtime): Kernels {
  return {
    fill: (out, value) => ew.fill(rt, g(out), value),
    copy: (src, so, dst, d0, n) => ew.copy(rt, g(src), so, g(dst), d0, n),
    copyStrided: (src, view, dst) => ew.copyStrided(rt, g(src), view, g(dst)),
    binary: (op, a, av, b, bv, out) => ew.binary(rt, op, g(a), av, g(b), bv, g(out)),
    unary: (op, a, out, alpha, beta) => ew.unary(rt, op, g(a), g(out), alpha, beta),
    unaryBackward: (op, x, y, dy, dx) => ew.unaryBackward(rt, op, g(x), g(y), g(dy), g(dx)),
    swiglu: (gate, up, n, out) => ew.swiglu(rt, g(gate), g(up), n, g(out)),
    swigluBackward: (gate, up, dy, n, dgate, dup) => ew.swigluBackward(rt, g(gate), g(up), g(dy), n, g(dgate), g(dup)),
    reduce: (op, a, outer, n, inner, out) => rows.reduce(rt, op, g(a), outer, n, inner, g(out)),
    argmax: (a, outer, n, inner, out) => rows.argmax(rt, g(a), outer, n, inner, g(out)),
    matmul: (a, b, c, p) => matmul(rt, g(a), g(b), g(c), p),
    softmax: (a, r, n, out, log) => rows.softmax(rt, g(a), r, n, g(out), log),
    softmaxBackward: (y, dy, r, n, dx, log) => rows.softmaxBackward(rt, g(y), g(dy), r, n, g(dx), log),
    crossEntropy: (logits, target, r, n, soft, ignoreIndex, loss, dlogits) =>
      rows.crossEntropy(rt, g(logits), g(target), r, n, soft, ignoreIndex, g(loss), gn(dlogits)),
    norm: (kind, x, w, b, r, n, eps, out, rstd, mean) => rows.norm(rt, kind, g(x), gn(w), gn(b), r, n, eps, g(out), g(rstd), gn(mean)),
    normBackward: (kind, x, w, rstd, mean, dy, r, n, dx, dw, db) =>
      rows.normBackward(rt, kind, g(x), gn(w), g(rstd), gn(mean), g(dy), r, n, g(dx), gn(dw), gn(db)),
    rope: (x, pos, b, l, h, d, theta, inter, sign, out) => ew.rope(rt, g(x), g(pos), b, l, h, d, theta, inter, sign, g(out)),
    gather: (table, idx, n, width, out) => ew.gather(rt, g(table), g(idx), n, width, g(out)),
    scatterAdd: (src, idx, n, width, table) => ew.scatterAdd(rt, g(src), g(idx), n, width, g(table)),
    conv1d: (x, w, bias, b, l, c, k, out) => ew.conv1d(rt, g(x), g(w), gn(bias), b, l, c, k, g(out)),
    conv1dBackward: (x, w, dy, b, l, c, k, dx, dw, db) => ew.conv1dBackward(rt, g(x), g(w), g(dy), b, l, c, k, g(dx), g(dw), gn(db)),
    topk: (a, r, n, k, values, indices) => rows.topk(rt, g(a), r, n, k, g(values), g(indices)),
    findOutOfRange: (idx, n, lo, hi, skip, found) => ew.findOutOfRange(rt, g(idx), n, lo, hi, skip, g(found)),
    // No webgpu kernel produces factored gradients (PEER's backward gives coalesced rows here).
    factoredRows: unsupported('webgpu', 'factoredRows'),
  };
}

function makeBackend(rt: Runtime): Backend & { retain(b: Buf): void } {
  return {
    name: 'webgpu',
    alloc(length: number, dtype: DType, rowWidth?: number): Buf {
      const b = rt.alloc(length, dtype, rowWidth);
      // Zeroed like CPU allocations, so no op can observe a previous tensor's values.
      rt.clear(b);
      return b;
    },
    // No clear: the caller's kernel writes every element (one command and one pass fewer).
    allocUninit: (length: number, dtype: DType, rowWidth?: number): Buf => rt.alloc(length, dtype, rowWidth),
    upload(data: TypedArray, rowWidth?: number): Buf {
      const b = rt.alloc(data.length, data instanceof Float32Array ? 'f32' : 'i32', rowWidth);
      if (data.length) rt.write(b, data);
      return b;
    },
    syncReadable: false,
    readSync(): TypedArray {
      throw new Error('webgpu tensors cannot be read synchronously: use `await t.data()` or `await t.item()` instead of dataSync()/itemSync()');
    },
    read: (b: Buf) => rt.read(gs(b)),
    raiseIf(found: Buf, message: (value: number) => string): void {
      rt.deferCheck(g(found), message);
    },
    free(b: Buf): void {
      // Storage shared by several tensors (views) is released when the last of them is freed.
      if (!(b instanceof GpuBuf) || --b.refs > 0) return;
      rt.pool.release(b);
    },
    retain(b: Buf): void {
      if (b instanceof GpuBuf) b.refs++;
    },
    create(length, dtype, fill, opts = {}) {
      const host = dtype === 'f32' ? new Float32Array(length) : new Int32Array(length);
      fill(host);
      const b = rt.alloc(length, dtype, opts.rowWidth);
      if (length) rt.write(b, host);
      return b;
    },
    kernels: makeKernels(rt),
    attention: {
      forward: (q, k, v, o, lse, p) => attentionForward(rt, g(q), g(k), g(v), g(o), g(lse), p),
      backward: (q, k, v, o, dO, lse, dq, dk, dv, p) =>
        attentionBackward(rt, g(q), g(k), g(v), g(o), g(dO), g(lse), g(dq), g(dk), g(dv), p),
    },
    ttt: webgpuTtt(rt),
    peer: webgpuPeer(rt),
    fbi: webgpuFbi(rt),
    optim: {
      adamw: (param, grad, m, v, rws, nRows, width, h, scale = null) =>
        ew.adamw(rt, gs(param), gs(grad), gs(m), gs(v), gn(rws), nRows, width, h, gn(scale)),
      sumSquares: (a, n, out, at = 0) => rows.sumSquares(rt, gs(a), n, g(out), at),
      clipScale: (sumSq, count, maxNorm, scale, out) => rows.clipScale(rt, g(sumSq), count, maxNorm, scale, g(out)),
      coalesceRows: (rws, values, n, width) => coalesceRows(rt, g(rws), g(values), n, width),
      factoredSumSquares: unsupported('webgpu', 'optim.factoredSumSquares'),
      factoredAdamw: unsupported('webgpu', 'optim.factoredAdamw'),
    },
  };
}

/** Acquires a GPU device and registers the 'webgpu' backend (idempotent). */
export function initWebGPU(opts: AcquireOpts = {}): Promise<Backend> {
  if (hasBackend('webgpu')) return Promise.resolve(getBackend('webgpu'));
  pendingInit ??= (async () => {
    try {
      const acq = await acquireDevice(opts);
      instance = acq.gpu;
      runtime = new Runtime(acq.device, withEnvBindingLimit(opts).maxBindingBytes);
      runtime.int8Mma = await checkSubgroupInt8(acq.device);
      adapterName = acq.adapterName;
      const backend = makeBackend(runtime);
      registerBackend(backend);
      return backend;
    } catch (e) {
      const reason = (e as Error).message;
      markUnavailable('webgpu', reason);
      pendingInit = null;
      throw new Error(`webgpu backend unavailable: ${reason}`);
    }
  })();
  return pendingInit;
}

export function webgpuRuntime(): Runtime {
  if (!runtime) throw new Error("webgpu is not initialized: call 'await initWebGPU()' first");
  return runtime;
}

/** Whether int8 products run on subgroup matrices (tensor cores) on this device, and in which WGSL spelling. */
export function webgpuInt8Mma(): { spelling: 'template' | 'bool'; sg: number } | null {
  return webgpuRuntime().int8Mma;
}

/** Adapter description (vendor, architecture, driver) of the initialized device. */
export function webgpuAdapterName(): string {
  return adapterName;
}

/** How many parts a webgpu tensor's storage is split into (1 below the binding limit; see Runtime.alloc). */
export function webgpuStorageParts(b: Buf): number {
  return gs(b).parts?.length ?? 1;
}

/** Live and pooled GPU buffers. */
export function webgpuPoolStats(): PoolStats {
  return webgpuRuntime().pool.stats();
}

/** Submits pending work and waits for the GPU to finish it. */
export function syncWebGPU(): Promise<void> {
  return webgpuRuntime().sync();
}

/** Records fn's commands for replay (see replay.ts). */
export function captureWebGPUStep<T>(fn: () => T): { result: T; step: CapturedStep } {
  return captureStep(webgpuRuntime(), fn);
}

/** The device buffer under a webgpu tensor's storage (to pick a captured step's copies into it, see replay.ts). */
export function gpuBufferOf(b: Buf): GPUBuffer {
  return g(b).buffer;
}

/** Overwrites a buffer's contents in place (inputs of a captured step, see replay.ts). */
export function writeBuffer(b: Buf, data: TypedArray): void {
  const gb = gs(b);
  if (data.length > gb.length) throw new Error(`writeBuffer: ${data.length} values do not fit a buffer of ${gb.length}`);
  webgpuRuntime().write(gb, data);
}

/**
 * Waits for submitted work, frees pooled buffers and destroys the device (call before the process
 * exits: tearing Dawn down with work in flight has crashed at exit).
 */
export async function destroyWebGPU(): Promise<void> {
  if (!runtime) return;
  await runtime.sync();
  runtime.pool.trim();
  runtime.device.destroy();
  instance = null;
  markUnavailable('webgpu', 'the device was destroyed by destroyWebGPU()');
}
