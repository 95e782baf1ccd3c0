// GPU buffers and their pool. Buffers are bucketed by size (powers of two in four steps) and reused;
// Backend.free returns a buffer to the pool at once (deterministic, driven by dispose()/tidy()),
// and a FinalizationRegistry returns buffers whose handles were dropped without a free.
/// <reference types="@webgpu/types" preserve="true" />
import type { Buf, DType } from '../types.ts';

let nextId = 1;

export class GpuBuf implements Buf {
  readonly id = nextId++;
  released = false;
  /** Tensors sharing this storage (views such as reshape), counted when the tensor layer calls retain(). */
  refs = 0;
  /**
   * Storage above the adapter's binding limit is split into parts of whole rows: part j holds
   * elements [j * partLength, (j + 1) * partLength). `buffer` is then part 0's and must not be bound
   * alone; only the kernels that take split tensors (see splitParts) accept it.
   */
  parts: GpuBuf[] | null = null;
  partLength = 0;
  constructor(readonly buffer: GPUBuffer, readonly length: number, readonly dtype: DType, readonly bytes: number) {}
}

/** A buffer of `length` values stored as the given parts (each `partLength` values, the last one the rest). */
export function splitBuf(parts: GpuBuf[], length: number, dtype: DType, partLength: number): GpuBuf {
  const b = new GpuBuf(parts[0].buffer, length, dtype, parts.reduce((s, q) => s + q.bytes, 0));
  b.parts = parts;
  b.partLength = partLength;
  return b;
}

/** One part of a (possibly split) buffer: the buffer, its first element and its length. */
export interface BufPart { buf: GpuBuf; start: number; length: number }

/** The parts of b as ranges of its elements (one part covering all of b when it is not split). */
export function splitParts(b: GpuBuf): BufPart[] {
  if (!b.parts) return [{ buf: b, start: 0, length: b.length }];
  return b.parts.map((q, j) => ({ buf: q, start: j * b.partLength, length: q.length }));
}

/** Bucket size in bytes: the next of 2^k, 1.25, 1.5, 1.75 * 2^k at or above the request (>= 256). */
function bucketBytes(bytes: number): number {
  const b = Math.max(256, bytes);
  const p = 2 ** Math.floor(Math.log2(b));
  for (const f of [1, 1.25, 1.5, 1.75, 2]) {
    const s = Math.ceil((p * f) / 256) * 256;
    if (s >= b) return s;
  }
  return p * 2;
}

const USAGE_STORAGE = 0x80 | 0x04 | 0x08; // STORAGE | COPY_SRC | COPY_DST

export interface PoolStats {
  /** Buffers handed out and not yet freed. */
  live: number;
  liveBytes: number;
  /** Buffers waiting in the pool for reuse. */
  pooled: number;
  pooledBytes: number;
  /** GPU buffers ever created by the pool (a flat count means reuse works). */
  created: number;
}

export class BufferPool {
  private readonly free = new Map<number, GPUBuffer[]>();
  private stats_: PoolStats = { live: 0, liveBytes: 0, pooled: 0, pooledBytes: 0, created: 0 };
  private readonly finalizer = new FinalizationRegistry<{ buffer: GPUBuffer; bytes: number }>((h) => this.giveBack(h.buffer, h.bytes));
  /** Called before a buffer goes back to the pool (lets a capture keep it, see replay.ts). */
  onRelease: ((b: GpuBuf) => boolean) | null = null;

  constructor(private readonly device: GPUDevice, private readonly maxBytes: number) {}

  acquire(length: number, dtype: DType): GpuBuf {
    const need = Math.max(1, length) * 4;
    if (need > this.maxBytes) {
      throw new Error(`webgpu: a buffer of ${need} bytes exceeds this adapter's limit of ${this.maxBytes} bytes; use smaller tensors (shorter context, smaller batch)`);
    }
    const bytes = Math.min(bucketBytes(need), Math.max(need, Math.ceil(this.maxBytes / 4) * 4));
    const list = this.free.get(bytes);
    let buffer = list?.pop();
    if (buffer) {
      this.stats_.pooled--;
      this.stats_.pooledBytes -= bytes;
    } else {
      buffer = this.device.createBuffer({ size: bytes, usage: USAGE_STORAGE });
      this.stats_.created++;
    }
    this.stats_.live++;
    this.stats_.liveBytes += bytes;
    const b = new GpuBuf(buffer, length, dtype, bytes);
    this.finalizer.register(b, { buffer, bytes }, b);
    return b;
  }

  /** Returns b's storage to the pool; a second call for the same handle does nothing. */
  release(b: GpuBuf): void {
    if (b.released) return;
    if (b.parts) {
      b.released = true;
      for (const q of b.parts) this.release(q);
      return;
    }
    if (this.onRelease && this.onRelease(b)) return;
    b.released = true;
    this.finalizer.unregister(b);
    this.giveBack(b.buffer, b.bytes);
  }

  private giveBack(buffer: GPUBuffer, bytes: number): void {
    this.stats_.live--;
    this.stats_.liveBytes -= bytes;
    let list = this.free.get(bytes);
    if (!list) this.free.set(bytes, (list = []));
    list.push(buffer);
    this.stats_.pooled++;
    this.stats_.pooledBytes += bytes;
  }

  stats(): PoolStats {
    return { ...this.stats_ };
  }

  /** Destroys every pooled (unused) buffer. */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
    this.stats_.pooled = 0;
    this.stats_.pooledBytes = 0;
  }
}
