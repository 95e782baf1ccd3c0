// Serving FBI models from packed sign bits: a forward-only linear that never materializes the f32
// weight, plus conversion of a latent model into packed form and loading of packed folders.
import { fbiPackSigns } from '../backend/cpu/fbi.ts';
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
 * y = x @ (wscale * S + wbias)^T with S = +-1 read from sign bits (buffer `weight_bits`, i32
 * [out, ceil(in/32)], the packed folder layout). Forward only: no gradient flows through it.
 */
export class PackedLinear extends Module implements LinearLike {
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
    const bits = this.get('weight_bits').dataSync() as Int32Array;
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

function raw(t: Tensor): RawTensor {
  return { dtype: 'f32', shape: [...t.shape], data: (t.dataSync() as Float32Array).slice() };
}

/** Packs a latent FBI model (signs of each binarized weight, scales and the fp tensors as they are). */
export function packModel(model: CausalLM): PackedModelData {
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
  return { config: configToHf(model.config), linears, tensors };
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
    model.setTensor(n, fromArray(t.data, t.shape));
  }
  // A serving model: nothing is trained, so activations carry no gradient into the packed linears.
  for (const p of model.parameters()) p.requiresGrad = false;
  return model.eval();
}

/** Writes a latent FBI model as a packed folder. */
export function savePackedModel(model: CausalLM, dir: string, opts: PackedWriteOptions = {}): void {
  writePackedFolder(dir, packModel(model), opts);
}

/** Loads a packed folder as a CausalLM whose FBI linears run from the sign bits. */
export function loadPackedModel(dir: string): CausalLM {
  return modelFromPacked(readPackedFolder(dir));
}
