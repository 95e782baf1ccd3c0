// Packed 1-bit FBI-Linear kernels on the native addon (native/fbi.cc). Sign bits are row-major,
// 32 per uint32 word (bit j % 32 of word j / 32), each row padded with zero bits to whole words;
// a set bit means +1, a clear bit -1.
import { type FbiKernels, type FbiMatmulArgs, int8RowBytes } from '../contracts.ts';
import type { Buf } from '../types.ts';
import { nativeAddon } from './native.ts';
import { quantMatmul } from './quant.ts';

export type FbiIsa = 'auto' | 'scalar' | 'avx2' | 'avx512';
const ISA_CODE: Record<FbiIsa, number> = { auto: 0, scalar: 1, avx2: 2, avx512: 3 };
const PATTERN_CODE = { column: 0, row: 1, single: 2 } as const;
export type PackedPattern = keyof typeof PATTERN_CODE;

/** uint32 words per packed row of `inF` signs. */
export const wordsPerRow = (inF: number) => Math.ceil(inF / 32);

function scaleCount(pattern: PackedPattern, inF: number, outF: number): number {
  if (!(pattern in PATTERN_CODE)) throw new Error(`packed FBI: scale pattern must be column | row | single, got ${JSON.stringify(pattern)}`);
  return pattern === 'column' ? inF : pattern === 'row' ? outF : 1;
}

function checkLen(what: string, a: { length: number }, need: number): void {
  if (a.length < need) throw new Error(`packed FBI: ${what} has ${a.length} elements, needs ${need}`);
}

function checkSizes(inF: number, outF: number): void {
  for (const [n, v] of [['in', inF], ['out', outF]] as const) {
    if (!Number.isSafeInteger(v) || v <= 0) throw new Error(`packed FBI: ${n} features must be a positive integer, got ${v}`);
  }
}

/** The checks both packed products share: sizes, row count, and the lengths of x, the scales and y. */
function checkMatmulArgs(
  x: Float32Array, alpha: Float32Array, beta: Float32Array, pattern: PackedPattern,
  rows: number, inF: number, outF: number, y: Float32Array,
): void {
  checkSizes(inF, outF);
  if (!Number.isSafeInteger(rows) || rows < 0) throw new Error(`packed FBI: rows must be a non-negative integer, got ${rows}`);
  const ns = scaleCount(pattern, inF, outF);
  checkLen('x', x, rows * inF);
  checkLen('wscale', alpha, ns);
  checkLen('wbias', beta, ns);
  checkLen('y', y, rows * outF);
}

/**
 * y [rows, out] = x [rows, in] @ (alpha * S + beta)^T from sign bits S [out, wordsPerRow(in)].
 * isa forces a code path (tests compare them); 'auto' picks the best this CPU has.
 */
export function fbiPackedMatmul(
  x: Float32Array, bits: Uint32Array, alpha: Float32Array, beta: Float32Array, pattern: PackedPattern,
  rows: number, inF: number, outF: number, y: Float32Array, isa: FbiIsa = 'auto',
): void {
  checkMatmulArgs(x, alpha, beta, pattern, rows, inF, outF, y);
  checkLen('sign bits', bits, outF * wordsPerRow(inF));
  if (!(isa in ISA_CODE)) throw new Error(`packed FBI: isa must be one of ${Object.keys(ISA_CODE).join(', ')}`);
  nativeAddon().fbiPackedMatmul(x, bits, alpha, beta, PATTERN_CODE[pattern], rows, inF, outF, y, ISA_CODE[isa]);
}

/** Sign bits of a latent weight [out, in]: 1 where w > 0 (so 0 packs as -1). */
export function fbiPackSigns(w: Float32Array, inF: number, outF: number): Uint32Array {
  checkSizes(inF, outF);
  checkLen('weight', w, inF * outF);
  const bits = new Uint32Array(outF * wordsPerRow(inF));
  nativeAddon().fbiPackSigns(w, inF, outF, bits);
  return bits;
}

/** The f32 weight alpha * S + beta [out, in] from sign bits (into `out` when given). */
export function fbiUnpack(
  bits: Uint32Array, alpha: Float32Array, beta: Float32Array, pattern: PackedPattern, inF: number, outF: number, out?: Float32Array,
): Float32Array {
  checkSizes(inF, outF);
  const ns = scaleCount(pattern, inF, outF);
  checkLen('sign bits', bits, outF * wordsPerRow(inF));
  checkLen('wscale', alpha, ns);
  checkLen('wbias', beta, ns);
  const w = out ?? new Float32Array(inF * outF);
  checkLen('output', w, inF * outF);
  nativeAddon().fbiUnpack(bits, alpha, beta, PATTERN_CODE[pattern], inF, outF, w);
  return w;
}

/** Whether this CPU can run a given code path. */
export function fbiIsaAvailable(isa: FbiIsa): boolean {
  return isa === 'auto' || Boolean(nativeAddon().fbiIsaAvailable(ISA_CODE[isa]));
}

/** uint32 words of the interleaved layout (16-row blocks x 4-input groups, one 64-bit word each, blocks in tiles of 4). */
export const interleavedWords = (inF: number, outF: number) => 2 * 4 * Math.ceil(outF / 64) * Math.ceil(inF / 4);

/**
 * The interleaved layout of row-major sign bits for the int8 kernels (native/fbi_int8.cc): word
 * (block b, group g) holds the sign of row 16 b + r at input 4 g + k, n = 4 r + k, at bit
 * 8 (n % 8) + floor(n / 8) (transposed so GFNI expands a word to bytes in one instruction), and sits at 64-bit
 * index (b / 4) * 4 G + 4 g + b % 4 (tiles of 4 blocks, group-major inside a tile, the last tile
 * zero-padded), so a decode pass over a tile reads one sequential stream.
 */
export function fbiRepack(bits: Uint32Array, inF: number, outF: number): Uint32Array {
  checkSizes(inF, outF);
  checkLen('sign bits', bits, outF * wordsPerRow(inF));
  // A fresh ArrayBuffer is 8-byte aligned, as the kernels' 64-bit loads need.
  const out = new Uint32Array(interleavedWords(inF, outF));
  nativeAddon().fbiRepack(bits, inF, outF, out);
  return out;
}

/**
 * y [rows, out] = x @ (alpha * S + beta)^T with x quantized to int8 once per token (absmax scale,
 * after the column scales for pattern 'column') and S from interleaved bits (fbiRepack).
 */
export function fbiInt8Matmul(
  x: Float32Array, interleaved: Uint32Array, alpha: Float32Array, beta: Float32Array, pattern: PackedPattern,
  rows: number, inF: number, outF: number, y: Float32Array, isa: FbiIsa = 'auto',
): void {
  checkMatmulArgs(x, alpha, beta, pattern, rows, inF, outF, y);
  checkLen('interleaved sign bits', interleaved, interleavedWords(inF, outF));
  if (interleaved.byteOffset % 8) throw new Error('packed FBI: interleaved sign bits must start at a multiple of 8 bytes');
  if (!(isa in ISA_CODE)) throw new Error(`packed FBI: isa must be one of ${Object.keys(ISA_CODE).join(', ')}`);
  nativeAddon().fbiInt8Matmul(x, interleaved, alpha, beta, PATTERN_CODE[pattern], rows, inF, outF, y, ISA_CODE[isa]);
}

/** y [rows, out] = x [rows, in] @ W^T with W [out, in] stored as f16 bits. */
export function f16Matmul(x: Float32Array, w: Uint16Array, rows: number, inF: number, outF: number, y: Float32Array, isa: FbiIsa = 'auto'): void {
  checkSizes(inF, outF);
  checkLen('x', x, rows * inF);
  checkLen('f16 weight', w, inF * outF);
  checkLen('y', y, rows * outF);
  if (!(isa in ISA_CODE)) throw new Error(`f16 matmul: isa must be one of ${Object.keys(ISA_CODE).join(', ')}`);
  nativeAddon().f16Matmul(x, w, rows, inF, outF, y, ISA_CODE[isa]);
}

/** An int8 weight with one f32 scale per row: W ~= scale[n] * q[n, :], and the row sums of q. */
export interface Int8Weight { q: Uint8Array; scale: Float32Array; rowSum: Int32Array }

/** y [rows, out] = x @ (scale * q)^T with x quantized to int8 per token. */
export function i8Matmul(x: Float32Array, w: Int8Weight, rows: number, inF: number, outF: number, y: Float32Array, isa: FbiIsa = 'auto'): void {
  checkSizes(inF, outF);
  checkLen('x', x, rows * inF);
  checkLen('int8 weight', w.q, outF * int8RowBytes(inF));
  checkLen('row scales', w.scale, outF);
  checkLen('row sums', w.rowSum, outF);
  checkLen('y', y, rows * outF);
  if (!(isa in ISA_CODE)) throw new Error(`int8 matmul: isa must be one of ${Object.keys(ISA_CODE).join(', ')}`);
  nativeAddon().i8Matmul(x, w.q, w.scale, w.rowSum, rows, inF, int8RowBytes(inF), outF, y, ISA_CODE[isa]);
}

/** Whether this CPU can run a code path of the int8 kernels (AVX-512 needs BW; both SIMD paths F16C). */
export function fbiInt8IsaAvailable(isa: FbiIsa): boolean {
  return isa === 'auto' || Boolean(nativeAddon().fbiInt8IsaAvailable(ISA_CODE[isa]));
}

/** The code path 'auto' selects for the int8 kernels (avx512-vnni | avx512bw, with -gfni where GFNI expands the sign words | avx2 | scalar). */
export function fbiInt8Isa(): string {
  return nativeAddon().fbiInt8Isa() as string;
}

/** Best-of-`reps` parallel memcpy bandwidth in bytes/s (read + write), over `megabytes` MiB. */
export function copyBandwidth(megabytes = 512, reps = 5): number {
  return nativeAddon().copyBandwidth(megabytes, reps) as number;
}

/** Best-of-`reps` bandwidth in bytes/s of reading `megabytes` MiB over all threads (the streaming ceiling). */
export function readBandwidth(megabytes = 512, reps = 5): number {
  return nativeAddon().readBandwidth(megabytes, reps) as number;
}

const f32 = (b: Buf) => b as unknown as Float32Array;
const u32 = (b: Buf) => { const a = b as unknown as Int32Array; return new Uint32Array(a.buffer, a.byteOffset, a.length); };

// Layouts derived from a weight buffer, built on first use and dropped with the buffer.
const interleavedOf = new WeakMap<object, Uint32Array>();
const rowSumsOf = new WeakMap<object, Int32Array>();

/** Per-row sums of an int8 weight's values (rows of int8RowBytes(inF) bytes): the kernels' zero-point term. */
export function int8RowSums(q: Uint8Array, inF: number, outF: number): Int32Array {
  const s = new Int8Array(q.buffer, q.byteOffset, q.length), kp = int8RowBytes(inF);
  const rowSum = new Int32Array(outF);
  for (let n = 0; n < outF; n++) for (let k = 0; k < kp; k++) rowSum[n] += s[n * kp + k];
  return rowSum;
}

/** The interleaved layout of a sign-bit buffer (built on first use, cached with the buffer). */
export function interleavedBitsOf(bits: Buf, inF: number, outF: number): Uint32Array {
  let il = interleavedOf.get(bits);
  if (!il) { il = fbiRepack(u32(bits), inF, outF); interleavedOf.set(bits, il); }
  return il;
}

/** An int8 weight from its buffers, with the row sums cached per buffer. */
export function int8Weight(qBuf: Buf, scale: Buf, inF: number, outF: number): Int8Weight {
  const words = qBuf as unknown as Int32Array;
  const q = new Uint8Array(words.buffer, words.byteOffset, words.length * 4);
  let rowSum = rowSumsOf.get(qBuf);
  if (!rowSum) {
    rowSum = int8RowSums(q, inF, outF);
    rowSumsOf.set(qBuf, rowSum);
  }
  return { q, scale: f32(scale), rowSum };
}

/** The CPU's FBI and low-bit table (cpu/index.ts adds decodeStack from fbi-decode.ts, which builds on this file). */
export const cpuFbi: Omit<FbiKernels, 'decodeStack'> = {
  packSigns(w, inF, outF, bits) {
    checkSizes(inF, outF);
    checkLen('weight', f32(w), inF * outF);
    checkLen('sign bits', bits as unknown as Int32Array, outF * wordsPerRow(inF));
    nativeAddon().fbiPackSigns(f32(w), inF, outF, u32(bits));
  },
  packedMatmul(a: FbiMatmulArgs) {
    fbiPackedMatmul(f32(a.x), u32(a.bits), f32(a.alpha), f32(a.beta), a.pattern, a.rows, a.inF, a.outF, f32(a.y));
  },
  int8Matmul(a: FbiMatmulArgs) {
    fbiInt8Matmul(f32(a.x), interleavedBitsOf(a.bits, a.inF, a.outF), f32(a.alpha), f32(a.beta), a.pattern, a.rows, a.inF, a.outF, f32(a.y));
  },
  f16Matmul(x, w, rows, inF, outF, y) {
    const words = w as unknown as Int32Array;
    f16Matmul(f32(x), new Uint16Array(words.buffer, words.byteOffset, outF * inF), rows, inF, outF, f32(y));
  },
  int8HeadMatmul(x, q, scale, rows, inF, outF, y) {
    i8Matmul(f32(x), int8Weight(q, scale, inF, outF), rows, inF, outF, f32(y));
  },
  quantMatmul(x, w, type, rows, inF, outF, y) {
    quantMatmul(f32(x), rows, inF, w, type, outF, f32(y));
  },
};
