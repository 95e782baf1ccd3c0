// Packed 1-bit FBI-Linear kernels on the native addon (native/fbi.cc). Sign bits are row-major,
// 32 per uint32 word (bit j % 32 of word j / 32), each row padded with zero bits to whole words;
// a set bit means +1, a clear bit -1.
import { nativeAddon } from './native.ts';
import { cpuExtra } from './index.ts';

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

/**
 * y [rows, out] = x [rows, in] @ (alpha * S + beta)^T from sign bits S [out, wordsPerRow(in)].
 * isa forces a code path (tests compare them); 'auto' picks the best this CPU has.
 */
export function fbiPackedMatmul(
  x: Float32Array, bits: Uint32Array, alpha: Float32Array, beta: Float32Array, pattern: PackedPattern,
  rows: number, inF: number, outF: number, y: Float32Array, isa: FbiIsa = 'auto',
): void {
  checkSizes(inF, outF);
  if (!Number.isSafeInteger(rows) || rows < 0) throw new Error(`packed FBI: rows must be a non-negative integer, got ${rows}`);
  const ns = scaleCount(pattern, inF, outF);
  checkLen('x', x, rows * inF);
  checkLen('sign bits', bits, outF * wordsPerRow(inF));
  checkLen('wscale', alpha, ns);
  checkLen('wbias', beta, ns);
  checkLen('y', y, rows * outF);
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

/** The code path 'auto' selects on this CPU. */
export function fbiIsa(): string {
  return nativeAddon().fbiIsa() as string;
}

cpuExtra.fbiPackedMatmul = fbiPackedMatmul;
