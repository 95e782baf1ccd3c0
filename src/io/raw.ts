// The in-memory form every checkpoint reader returns and every writer accepts, plus the
// number conversions and random-access byte sources the readers share.
import type * as NodeFs from 'node:fs';
import { littleEndian, nodeBuiltin } from './node-builtins.ts';
import { openRegularFile } from './safe-read.ts';
const { closeSync, readSync } = nodeBuiltin<typeof NodeFs>('node:fs');

export type RawDType = 'f32' | 'i32';

/** A dense, row-major tensor. Floats of any width load as f32, integers and bools as i32. */
export interface RawTensor {
  dtype: RawDType;
  shape: number[];
  data: Float32Array | Int32Array;
}

export type TensorMap = Map<string, RawTensor>;

// Readers reinterpret file bytes as typed arrays; all formats handled here are little-endian.
if (!littleEndian) throw new Error('frugal-lm checkpoint I/O needs a little-endian host');

/** Element count of a shape; throws when an entry is not a non-negative safe integer or the product overflows. */
export function numel(shape: readonly number[], what = 'tensor'): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new Error(`${what}: shape entry ${String(d)} is not a non-negative integer`);
    n *= d;
    if (!Number.isSafeInteger(n)) throw new Error(`${what}: shape [${shape.join(', ')}] has too many elements`);
  }
  return n;
}

/** Checks that a tensor's dtype, array type and shape agree; used before writing. */
export function checkRawTensor(name: string, t: RawTensor): void {
  if (t === null || typeof t !== 'object' || !Array.isArray(t.shape)) {
    throw new Error(`tensor "${name}" is not a { dtype, shape, data } object`);
  }
  if (t.dtype === 'f32' ? !(t.data instanceof Float32Array) : t.dtype === 'i32' ? !(t.data instanceof Int32Array) : true) {
    throw new Error(`tensor "${name}": dtype "${String(t.dtype)}" does not match its data (${t.data?.constructor?.name}); use f32 with Float32Array or i32 with Int32Array`);
  }
  const n = numel(t.shape, `tensor "${name}"`);
  if (n !== t.data.length) {
    throw new Error(`tensor "${name}": shape [${t.shape.join(', ')}] needs ${n} elements but data holds ${t.data.length}`);
  }
}

export function toTensorMap(tensors: TensorMap | Record<string, RawTensor>): TensorMap {
  return tensors instanceof Map ? tensors : new Map(Object.entries(tensors));
}

// ---- number formats ----------------------------------------------------------------------

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

export function bf16BitsToF32(h: number): number {
  u32Scratch[0] = (h & 0xffff) << 16;
  return f32Scratch[0];
}

/** Nearest f16 (round half to even); values beyond the f16 range become +-Infinity, NaN stays NaN. */
export function f32ToF16Bits(x: number): number {
  f32Scratch[0] = x;
  const bits = u32Scratch[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal f16 (or zero): shift the full significand into place, rounding half to even.
    if (e < -10) return sign;
    const full = mant | 0x800000;
    const shift = 14 - e;
    let half = full >>> shift;
    const rem = full & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half++; // a carry into the exponent is the correct rounding
  return sign | half;
}

/** Storage dtypes the readers understand (safetensors names; torch storages map onto them). */
export type FileDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const ITEM_SIZE: Record<FileDType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

export function isFileDType(s: unknown): s is FileDType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(ITEM_SIZE, s);
}

/**
 * Decodes the little-endian elements of `dtype` in `bytes` into a new f32 or i32 array.
 * `owned` says the caller hands `bytes` over, so F32/I32 data may be viewed instead of copied.
 * 64-bit integers outside the int32 range are an error, not a wrap.
 */
export function decodeElements(bytes: Uint8Array, dtype: FileDType, what: string, owned = false): Float32Array | Int32Array {
  const size = ITEM_SIZE[dtype];
  const n = bytes.byteLength / size;
  // Typed-array views need element alignment; a file offset may not provide it, so copy then.
  const aligned = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  const buf = aligned.buffer;
  const at = aligned.byteOffset;
  // F32/I32 results are views, so they must not alias memory the caller still uses.
  const mine = () => (owned || aligned !== bytes ? aligned : aligned.slice());
  switch (dtype) {
    case 'F32': { const m = mine(); return new Float32Array(m.buffer, m.byteOffset, n); }
    case 'I32': { const m = mine(); return new Int32Array(m.buffer, m.byteOffset, n); }
    case 'F64': return Float32Array.from(new Float64Array(buf, at, n));
    case 'F16': {
      const src = new Uint16Array(buf, at, n);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = f16BitsToF32(src[i]);
      return out;
    }
    case 'BF16': {
      const src = new Uint16Array(buf, at, n);
      const out = new Uint32Array(n);
      for (let i = 0; i < n; i++) out[i] = src[i] << 16;
      return new Float32Array(out.buffer);
    }
    case 'I64': {
      const src = new BigInt64Array(buf, at, n);
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const v = src[i];
        if (v > 2147483647n || v < -2147483648n) {
          throw new Error(`${what}: int64 value ${v} at element ${i} does not fit in int32; frugal-lm stores integer tensors as int32`);
        }
        out[i] = Number(v);
      }
      return out;
    }
    case 'I16': return Int32Array.from(new Int16Array(buf, at, n));
    case 'I8': return Int32Array.from(new Int8Array(buf, at, n));
    case 'U8': return Int32Array.from(aligned);
    case 'BOOL': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        if (aligned[i] > 1) throw new Error(`${what}: bool element ${i} has byte value ${aligned[i]} (expected 0 or 1)`);
        out[i] = aligned[i];
      }
      return out;
    }
  }
}

// ---- random-access byte sources ----------------------------------------------------------

/** Random access to the bytes of a file or a buffer, so large files can be read in slices. */
export interface ByteSource {
  readonly name: string;
  readonly size: number;
  /** True when `read` returns new memory the caller may keep (file reads), false for views of a shared buffer. */
  readonly fresh: boolean;
  /** Exactly `length` bytes at `offset`; the caller has already checked the range. */
  read(offset: number, length: number): Uint8Array;
  close(): void;
}

export function bufferSource(bytes: Uint8Array, name = '<buffer>'): ByteSource {
  return {
    name,
    size: bytes.byteLength,
    fresh: false,
    read: (offset, length) => bytes.subarray(offset, offset + length),
    close: () => {},
  };
}

export function fileSource(path: string, root?: string): ByteSource {
  const { fd, size } = openRegularFile(path, root);
  let open = true;
  return {
    name: path,
    size,
    fresh: true,
    read(offset, length) {
      if (!open) throw new Error(`${path}: read after close`);
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const got = readSync(fd, out, done, length - done, offset + done);
        if (got === 0) throw new Error(`${path}: file shrank while reading (expected ${length} bytes at offset ${offset})`);
        done += got;
      }
      return out;
    },
    close() {
      if (open) closeSync(fd);
      open = false;
    },
  };
}
