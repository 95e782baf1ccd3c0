// GGUF block-quantized linears on the native addon (native/quant.cc): Q8_0, Q4_0 and Q1_0 weight rows
// multiplied by int8-quantized activations (one scale per 32 values), never expanded to f32.
import { nativeAddon } from './native.ts';

import type { QuantBlockType } from '../contracts.ts';

export type { QuantBlockType };
export type QuantIsa = 'auto' | 'scalar' | 'avx2' | 'avx512';
const TYPE_CODE: Record<QuantBlockType, number> = { Q8_0: 0, Q4_0: 1, Q1_0: 2 };
const ISA_CODE: Record<QuantIsa, number> = { auto: 0, scalar: 1, avx2: 2, avx512: 3 };
const BLOCK: Record<QuantBlockType, { weights: number; bytes: number }> = {
  Q8_0: { weights: 32, bytes: 34 }, Q4_0: { weights: 32, bytes: 18 }, Q1_0: { weights: 128, bytes: 18 },
};

/** Bytes of one weight row of `inF` values. */
function quantRowBytes(type: QuantBlockType, inF: number): number {
  return (inF / BLOCK[type].weights) * BLOCK[type].bytes;
}

/** Whether a code path can run on this CPU. */
export function quantIsaAvailable(isa: QuantIsa): boolean {
  return nativeAddon().quantIsaAvailable(ISA_CODE[isa]);
}

/** y [rows, outF] = x [rows, inF] @ W^T with W [outF, inF] in `type` blocks; isa forces a code path. */
export function quantMatmul(
  x: Float32Array, rows: number, inF: number, w: Uint8Array, type: QuantBlockType, outF: number, y: Float32Array, isa: QuantIsa = 'auto',
): void {
  if (!(type in TYPE_CODE)) throw new Error(`quantized linear: block type must be ${Object.keys(TYPE_CODE).join(' | ')}, got ${JSON.stringify(type)}`);
  if (!(isa in ISA_CODE)) throw new Error(`quantized linear: isa must be one of ${Object.keys(ISA_CODE).join(', ')}`);
  for (const [n, v] of [['rows', rows], ['in features', inF], ['out features', outF]] as const) {
    if (!Number.isSafeInteger(v) || v < (n === 'rows' ? 0 : 1)) throw new Error(`quantized linear: ${n} must be a ${n === 'rows' ? 'non-negative' : 'positive'} integer, got ${v}`);
  }
  const blk = BLOCK[type].weights;
  if (inF % blk) throw new Error(`quantized linear: ${type} rows need a multiple of ${blk} inputs, got ${inF}`);
  if (x.length < rows * inF) throw new Error(`quantized linear: x has ${x.length} values, needs ${rows * inF}`);
  if (w.byteLength < outF * quantRowBytes(type, inF)) throw new Error(`quantized linear: weights have ${w.byteLength} bytes, need ${outF * quantRowBytes(type, inF)}`);
  if (y.length < rows * outF) throw new Error(`quantized linear: y has ${y.length} values, needs ${rows * outF}`);
  if (rows === 0) return;
  nativeAddon().quantMatmul(x, rows, inF, w, TYPE_CODE[type], outF, y, ISA_CODE[isa]);
}
