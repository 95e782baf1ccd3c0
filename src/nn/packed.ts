// Forward-only layers that serve weights in packed or low-bit form (never expanded to f32): FBI's
// 1-bit linears and the f16 / int8 LM heads. The products are ops (src/ops/fbi.ts) and run on any
// backend that has the FBI kernels (src/backend/contracts.ts).
import { f32ToF16Bits } from '../io/raw.ts';
import { type FbiScalePattern, f16Linear, fbiScaleShape, int8Linear, packedFbiLinear } from '../ops/fbi.ts';
import { fromArray, type Tensor, zeros } from '../tensor/tensor.ts';
import { int8RowBytes } from '../backend/contracts.ts';
import type { DeviceName } from '../backend/types.ts';
import type { LinearLike } from './layers.ts';
import { Module } from './module.ts';

const wordsPerRow = (inF: number) => Math.ceil(inF / 32);

/**
 * How packed linears treat their input: 'int8' quantizes each token once (absmax scale) and runs
 * integer sums over the sign bits (the serving default); 'f32' is the exact path, whose logits equal
 * the latent model's.
 */
export type PackedActivations = 'int8' | 'f32';
const envActivations = typeof process !== 'undefined' ? process.env?.FRUGAL_FBI_ACTIVATIONS : undefined;
if (envActivations !== undefined && envActivations !== 'int8' && envActivations !== 'f32') {
  throw new Error(`FRUGAL_FBI_ACTIVATIONS must be int8 or f32, got ${JSON.stringify(envActivations)}`);
}
const DEFAULT_ACTIVATIONS: PackedActivations = (envActivations as PackedActivations | undefined) ?? 'int8';

/**
 * y = x @ (wscale * S + wbias)^T with S = +-1 read from sign bits (buffer `weight_bits`, i32
 * [out, ceil(in/32)], the packed folder layout). Forward only: no gradient flows through it.
 */
export class PackedLinear extends Module implements LinearLike {
  /** Input handling of this linear (see PackedActivations); setPackedActivations sets a whole model. */
  activations: PackedActivations = DEFAULT_ACTIVATIONS;

  constructor(readonly inFeatures: number, readonly outFeatures: number, readonly pattern: FbiScalePattern, device: DeviceName = 'cpu') {
    super();
    const shape = fbiScaleShape(pattern, outFeatures, inFeatures);
    this.buffer('weight_bits', zeros([outFeatures, wordsPerRow(inFeatures)], { dtype: 'i32', device }));
    this.buffer('wscale', zeros(shape, { device }));
    this.buffer('wbias', zeros(shape, { device }));
  }

  forward(x: Tensor): Tensor {
    return packedFbiLinear(x, this.get('weight_bits'), this.get('wscale'), this.get('wbias'), this.pattern,
      this.inFeatures, this.outFeatures, this.activations);
  }

  /** Bytes of the packed weight plus its scales. */
  get storageBytes(): number {
    return this.get('weight_bits').size * 4 + this.storageScaleCount * 4;
  }
  /** Number of f32 scale values (wscale and wbias). */
  get storageScaleCount(): number {
    return this.get('wscale').size + this.get('wbias').size;
  }
}

/** Sets how every packed linear of a model treats its input. */
export function setPackedActivations(model: Module, mode: PackedActivations): void {
  if (mode !== 'int8' && mode !== 'f32') throw new Error(`packed activations must be int8 or f32, got ${JSON.stringify(mode)}`);
  for (const m of model.modules()) if (m instanceof PackedLinear) m.activations = mode;
}

/** Storage of a packed model's LM head in memory and on disk. */
export type HeadDtype = 'f32' | 'f16' | 'int8';

/**
 * An LM head kept as f16 bits (buffer `weight_f16`, i32 [out, ceil(in/2)] holding two halves per
 * word) and multiplied straight from them: half the bytes per token of an f32 head.
 */
export class HalfHead extends Module implements LinearLike {
  constructor(readonly inFeatures: number, readonly outFeatures: number, weight: Float32Array) {
    super();
    const words = new Int32Array(outFeatures * Math.ceil(inFeatures / 2));
    const half = new Uint16Array(words.buffer, 0, outFeatures * inFeatures);
    for (let i = 0; i < half.length; i++) half[i] = f32ToF16Bits(weight[i]);
    this.buffer('weight_f16', fromArray(words, [outFeatures, Math.ceil(inFeatures / 2)]));
  }
  forward(x: Tensor): Tensor {
    return f16Linear(x, this.get('weight_f16'), this.inFeatures, this.outFeatures);
  }
}

/**
 * An LM head in int8 with one f32 scale per output row (buffers `weight_q` i32 [out, rowBytes/4]
 * holding the bytes, `weight_scale` f32 [out]); the hidden state is quantized to int8 per token.
 */
export class Int8Head extends Module implements LinearLike {
  constructor(readonly inFeatures: number, readonly outFeatures: number) {
    super();
    this.buffer('weight_q', zeros([outFeatures, int8RowBytes(inFeatures) / 4], { dtype: 'i32' }));
    this.buffer('weight_scale', zeros([outFeatures]));
  }
  /** Quantizes W [out, in] per row to int8 (absmax / 127). */
  static fromWeight(inF: number, outF: number, w: Float32Array): Int8Head {
    const h = new Int8Head(inF, outF);
    const q = quantizeRowsInt8(w, inF, outF);
    h.setTensor('weight_q', fromArray(new Int32Array(q.q.buffer), [outF, int8RowBytes(inF) / 4]));
    h.setTensor('weight_scale', fromArray(q.scale, [outF]));
    return h;
  }
  forward(x: Tensor): Tensor {
    return int8Linear(x, this.get('weight_q'), this.get('weight_scale'), this.inFeatures, this.outFeatures);
  }
}

/** W [out, in] quantized per row to int8 (absmax / 127), rows zero-padded to int8RowBytes(in). */
export function quantizeRowsInt8(w: Float32Array, inF: number, outF: number): { q: Uint8Array; scale: Float32Array } {
  for (const [n, v] of [['in', inF], ['out', outF]] as const) {
    if (!Number.isSafeInteger(v) || v <= 0) throw new Error(`int8 quantization: ${n} features must be a positive integer, got ${v}`);
  }
  if (w.length < inF * outF) throw new Error(`int8 quantization: weight has ${w.length} elements, needs ${inF * outF}`);
  const kp = int8RowBytes(inF);
  const q = new Uint8Array(outF * kp), scale = new Float32Array(outF);
  const qs = new Int8Array(q.buffer);
  for (let n = 0; n < outF; n++) {
    let amax = 0;
    for (let k = 0; k < inF; k++) amax = Math.max(amax, Math.abs(w[n * inF + k]));
    scale[n] = amax / 127;
    const inv = amax > 0 ? 127 / amax : 0;
    for (let k = 0; k < inF; k++) qs[n * kp + k] = Math.max(-127, Math.min(127, Math.round(w[n * inF + k] * inv)));
  }
  return { q, scale };
}
