// Serving FBI models from packed sign bits: a forward-only linear that never materializes the f32
// weight, plus conversion of a latent model into packed form and loading of packed folders.
import { f16Matmul, fbiInt8Matmul, fbiPackSigns, fbiRepack, i8Matmul, type Int8Weight, int8RowBytes, quantizeRowsInt8 } from '../backend/cpu/fbi.ts';
import { f32ToF16Bits } from '../io/raw.ts';
import { type PackedModelData, type PackedWriteOptions, readPackedFolder, writePackedFolder } from '../io/packed.ts';
import type { RawTensor, TensorMap } from '../io/raw.ts';
import { CausalLM } from '../models/index.ts';
import { withFbiLinearFactory } from '../models/fbi-plugin.ts';
import { configFromHf, configToHf } from '../models/llama-hf.ts';
import type { ModelConfig } from '../models/config.ts';
import type { LinearLike } from '../nn/layers.ts';
import { Module } from '../nn/module.ts';
import { binarizedLinears } from '../nn/fbi-linear.ts';
import { type FbiScalePattern, fbiScaleShape } from '../ops/fbi.ts';
import { isGradEnabled } from '../tensor/autograd.ts';
import { empty, fromArray, type Tensor, zeros } from '../tensor/tensor.ts';
import type { DeviceName } from '../backend/types.ts';

const wordsPerRow = (inF: number) => Math.ceil(inF / 32);

/**
 * How packed linears treat their input: 'int8' quantizes each token once (absmax scale) and runs
 * integer dot products over the sign bits (the serving default); 'f32' is the exact path, whose
 * logits equal the latent model's.
 */
export type PackedActivations = 'int8' | 'f32';
const envActivations = process.env.FRUGAL_FBI_ACTIVATIONS;
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
  // The interleaved copy of the sign bits for the int8 kernels, built on first use from the current
  // weight_bits tensor (loading replaces that tensor, which invalidates the copy).
  private interleaved: { from: Tensor; words: Uint32Array } | null = null;

  constructor(readonly inFeatures: number, readonly outFeatures: number, readonly pattern: FbiScalePattern, device: DeviceName = 'cpu') {
    super();
    const shape = fbiScaleShape(pattern, outFeatures, inFeatures);
    this.buffer('weight_bits', zeros([outFeatures, wordsPerRow(inFeatures)], { dtype: 'i32', device }));
    this.buffer('wscale', zeros(shape, { device }));
    this.buffer('wbias', zeros(shape, { device }));
  }

  forward(x: Tensor): Tensor {
    if (x.shape.at(-1) !== this.inFeatures) throw new Error(`packed linear: input [${x.shape}] does not end in ${this.inFeatures} features`);
    if (x.requiresGrad && isGradEnabled()) throw new Error('packed linear: packed weights are for inference; train the latent model (linear "fbi") instead');
    const kernel = x.backend.extra.fbiPackedMatmul;
    if (!kernel) throw new Error(`packed FBI inference is not available on the ${x.device} backend; use the cpu device`);
    const rows = x.size / this.inFeatures;
    const y = empty([...x.shape.slice(0, -1), this.outFeatures], { device: x.device });
    if (x.device !== 'cpu') {
      const w = this.get('weight_bits');
      if (w.device !== x.device) throw new Error(`packed linear: input is on ${x.device} but the packed weights are on ${w.device}; move the model's tensors to ${x.device} first`);
      // Device kernels take the buffers themselves (the same argument order as the CPU kernel).
      kernel(x.buf, w.buf, this.get('wscale').buf, this.get('wbias').buf, this.pattern, rows, this.inFeatures, this.outFeatures, y.buf);
      return y;
    }
    const bitsT = this.get('weight_bits');
    const bits = bitsT.dataSync() as Int32Array;
    if (this.activations === 'int8') {
      if (this.interleaved?.from !== bitsT) {
        this.interleaved = { from: bitsT, words: fbiRepack(new Uint32Array(bits.buffer, bits.byteOffset, bits.length), this.inFeatures, this.outFeatures) };
      }
      fbiInt8Matmul(x.dataSync() as Float32Array, this.interleaved.words, this.get('wscale').dataSync() as Float32Array,
        this.get('wbias').dataSync() as Float32Array, this.pattern, rows, this.inFeatures, this.outFeatures, y.dataSync() as Float32Array);
      return y;
    }
    kernel(x.dataSync(), new Uint32Array(bits.buffer, bits.byteOffset, bits.length), this.get('wscale').dataSync(),
      this.get('wbias').dataSync(), this.pattern, rows, this.inFeatures, this.outFeatures, y.dataSync());
    return y;
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
    if (x.device !== 'cpu') throw new Error('an f16 LM head runs on the cpu device only');
    const words = this.get('weight_f16').dataSync() as Int32Array;
    const rows = x.size / this.inFeatures;
    const y = empty([...x.shape.slice(0, -1), this.outFeatures]);
    f16Matmul(x.dataSync() as Float32Array, new Uint16Array(words.buffer, words.byteOffset, this.outFeatures * this.inFeatures), rows, this.inFeatures,
      this.outFeatures, y.dataSync() as Float32Array);
    return y;
  }
}

/**
 * An LM head in int8 with one f32 scale per output row (buffers `weight_q` i32 [out, rowBytes/4]
 * holding the bytes, `weight_scale` f32 [out]); the hidden state is quantized to int8 per token.
 */
export class Int8Head extends Module implements LinearLike {
  private sums: { from: Tensor; rowSum: Int32Array } | null = null;
  constructor(readonly inFeatures: number, readonly outFeatures: number) {
    super();
    this.buffer('weight_q', zeros([outFeatures, int8RowBytes(inFeatures) / 4], { dtype: 'i32' }));
    this.buffer('weight_scale', zeros([outFeatures]));
  }
  static fromWeight(inF: number, outF: number, w: Float32Array): Int8Head {
    const h = new Int8Head(inF, outF);
    const q = quantizeRowsInt8(w, inF, outF);
    h.setTensor('weight_q', fromArray(new Int32Array(q.q.buffer), [outF, int8RowBytes(inF) / 4]));
    h.setTensor('weight_scale', fromArray(q.scale, [outF]));
    return h;
  }
  private weight(): Int8Weight {
    const qt = this.get('weight_q');
    const words = qt.dataSync() as Int32Array;
    const q = new Uint8Array(words.buffer, words.byteOffset, words.length * 4);
    if (this.sums?.from !== qt) {
      const s = new Int8Array(q.buffer, q.byteOffset, q.length), kp = int8RowBytes(this.inFeatures);
      const rowSum = new Int32Array(this.outFeatures);
      for (let n = 0; n < this.outFeatures; n++) for (let k = 0; k < kp; k++) rowSum[n] += s[n * kp + k];
      this.sums = { from: qt, rowSum };
    }
    return { q, scale: this.get('weight_scale').dataSync() as Float32Array, rowSum: this.sums.rowSum };
  }
  forward(x: Tensor): Tensor {
    if (x.device !== 'cpu') throw new Error('an int8 LM head runs on the cpu device only');
    const rows = x.size / this.inFeatures;
    const y = empty([...x.shape.slice(0, -1), this.outFeatures]);
    i8Matmul(x.dataSync() as Float32Array, this.weight(), rows, this.inFeatures, this.outFeatures, y.dataSync() as Float32Array);
    return y;
  }
}

/** Puts `head` in place of the model's untied LM head. */
function replaceHead(model: CausalLM, head: LinearLike): void {
  model.replaceChild('lm_head', head);
  (model as unknown as { lmHead: LinearLike }).lmHead = head;
}

function raw(t: Tensor): RawTensor {
  return { dtype: 'f32', shape: [...t.shape], data: (t.dataSync() as Float32Array).slice() };
}

/**
 * Packs a latent FBI model (signs of each binarized weight, scales and the fp tensors as they are);
 * head 'int8' quantizes the LM head per row (a stated perplexity change, see the README).
 */
export function packModel(model: CausalLM, opts: { head?: 'int8' } = {}): PackedModelData {
  if (model.config.linear !== 'fbi') throw new Error(`packModel: the model has linear '${model.config.linear}'; only FBI models (linear 'fbi') have binarized weights to pack`);
  const linears: PackedModelData['linears'] = new Map();
  const packedNames = new Set<string>();
  for (const [name, p] of binarizedLinears(model)) {
    const [outF, inF] = p.weight.shape;
    const bits = fbiPackSigns(p.weight.dataSync() as Float32Array, inF, outF);
    linears.set(name, { outFeatures: outF, inFeatures: inF, bits, wscale: raw(p.wscale), wbias: raw(p.wbias) });
    for (const s of ['weight', 'wscale', 'wbias']) packedNames.add(`${name}.${s}`);
  }
  const tensors: TensorMap = new Map();
  for (const [n, t] of [...model.namedParameters(), ...model.namedBuffers()]) if (!packedNames.has(n)) tensors.set(n, raw(t));
  if (opts.head === undefined) return { config: configToHf(model.config), linears, tensors };
  if (opts.head !== 'int8') throw new Error(`packModel: head must be int8 when given, got ${JSON.stringify(opts.head)}`);
  const w = tensors.get('lm_head.weight');
  if (!w) throw new Error('packModel: an int8 head needs an untied LM head (lm_head.weight); this model ties it to the embedding');
  const [outF, inF] = w.shape;
  const q = quantizeRowsInt8(w.data as Float32Array, inF, outF);
  tensors.delete('lm_head.weight');
  tensors.set('lm_head.weight_q', { dtype: 'i32', shape: [outF, int8RowBytes(inF) / 4], data: new Int32Array(q.q.buffer) });
  tensors.set('lm_head.weight_scale', { dtype: 'f32', shape: [outF], data: q.scale });
  return { config: configToHf(model.config), linears, tensors, headDtype: 'int8' };
}

/** A CausalLM whose FBI linears are PackedLinear (weights zero until loaded). */
export function buildPackedModel(config: Partial<ModelConfig>, opts: { seed?: number } = {}): CausalLM {
  if (config.linear !== 'fbi') throw new Error(`a packed model needs linear 'fbi', got ${JSON.stringify(config.linear)}`);
  return withFbiLinearFactory((cfg, inF, outF) => new PackedLinear(inF, outF, cfg.fbiScale), () => new CausalLM(config, { seed: opts.seed }));
}

/** The runnable packed model of packed data (in memory or read from a folder). */
export function modelFromPacked(data: PackedModelData): CausalLM {
  const cfg = configFromHf(data.config);
  const model = buildPackedModel(cfg);
  const given = new Map<string, RawTensor>(data.tensors);
  const headDtype = data.headDtype ?? 'f32';
  if (headDtype !== 'f32' && cfg.tieEmbeddings) throw new Error(`packed model: a ${headDtype} LM head needs untied embeddings`);
  let int8Head: Int8Head | null = null;
  if (headDtype === 'int8') {
    // The stored int8 head stands in for lm_head.weight.
    int8Head = new Int8Head(model.config.hiddenSize, model.config.vocabSize);
    for (const n of ['weight_q', 'weight_scale']) {
      const t = given.get(`lm_head.${n}`);
      if (!t) throw new Error(`packed model with an int8 head lacks lm_head.${n}`);
      int8Head.setTensor(n, fromArray(t.data, t.shape));
      given.delete(`lm_head.${n}`);
    }
    given.set('lm_head.weight', { dtype: 'f32', shape: [model.config.vocabSize, model.config.hiddenSize], data: new Float32Array(0) });
  }
  for (const [name, l] of data.linears) {
    given.set(`${name}.weight_bits`, { dtype: 'i32', shape: [l.outFeatures, wordsPerRow(l.inFeatures)], data: new Int32Array(l.bits.buffer, l.bits.byteOffset, l.bits.length) });
    given.set(`${name}.wscale`, l.wscale);
    given.set(`${name}.wbias`, l.wbias);
  }
  const expected = [...model.namedParameters(), ...model.namedBuffers()].map(([n]) => n);
  const missing = expected.filter((n) => !given.has(n));
  const extra = [...given.keys()].filter((n) => !expected.includes(n));
  if (missing.length || extra.length) {
    throw new Error(`packed model does not match its config: ${missing.length ? `missing ${missing.join(', ')}` : ''}${missing.length && extra.length ? '; ' : ''}${extra.length ? `unexpected ${extra.join(', ')}` : ''}`);
  }
  for (const n of expected) {
    const t = given.get(n)!;
    if (n === 'lm_head.weight' && headDtype !== 'f32') continue;
    model.setTensor(n, fromArray(t.data, t.shape));
  }
  if (int8Head) replaceHead(model, int8Head);
  // An f16 head on disk runs from f16 in memory (the values are the same, so are the logits).
  if (headDtype === 'f16') replaceHead(model, new HalfHead(model.config.hiddenSize, model.config.vocabSize, given.get('lm_head.weight')!.data as Float32Array));
  // A serving model: nothing is trained, so activations carry no gradient into the packed linears.
  for (const p of model.parameters()) p.requiresGrad = false;
  return model.eval();
}

/** Writes a latent FBI model as a packed folder. */
export function savePackedModel(model: CausalLM, dir: string, opts: PackedWriteOptions & { head?: 'int8' } = {}): void {
  writePackedFolder(dir, packModel(model, { head: opts.head }), opts);
}

/** Loads a packed folder as a CausalLM whose FBI linears run from the sign bits. */
export function loadPackedModel(dir: string): CausalLM {
  return modelFromPacked(readPackedFolder(dir));
}
