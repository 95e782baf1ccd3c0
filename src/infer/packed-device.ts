// Packed 1-bit FBI models built straight on a GPU device from packed data: the sign bits, scales and
// full-precision tensors are uploaded as stored, so the f32 weights of the binarized linears never
// exist on either side. Imports nothing Node-only and no CPU addon, so browsers use it (the playground
// loads packed folders from picked or fetched bytes through packedModelFromFiles). On Node,
// loadPackedModel + moveTo gives the same model through the CPU packed classes.
import type { DeviceName } from '../backend/types.ts';
import { checkPackedConfig, packedDataFrom, type PackedModelData, packedWordsPerRow } from '../io/packed-files.ts';
import type { RawTensor } from '../io/raw.ts';
import { CausalLM } from '../models/index.ts';
import { configFromHf } from '../models/llama-hf.ts';
import type { LinearLike } from '../nn/layers.ts';
import { Module } from '../nn/module.ts';
import { type FbiScalePattern, fbiScaleShape } from '../ops/fbi.ts';
import { isGradEnabled } from '../tensor/autograd.ts';
import { empty, fromArray, type Tensor, zeros } from '../tensor/tensor.ts';

/**
 * y = x @ (wscale * S + wbias)^T with S = +-1 from sign bits (buffer `weight_bits`, i32
 * [out, ceil(in/32)], the packed folder layout), run by the device's packed kernel
 * (`fbiPackedMatmul` of the backend's extra table). Forward only.
 */
export class DevicePackedLinear extends Module implements LinearLike {
  constructor(readonly inFeatures: number, readonly outFeatures: number, readonly pattern: FbiScalePattern, device: DeviceName) {
    super();
    if (device === 'cpu') throw new Error('DevicePackedLinear runs on a GPU device; on the cpu use loadPackedModel (Node)');
    const shape = fbiScaleShape(pattern, outFeatures, inFeatures);
    this.buffer('weight_bits', zeros([outFeatures, packedWordsPerRow(inFeatures)], { dtype: 'i32', device }));
    this.buffer('wscale', zeros(shape, { device }));
    this.buffer('wbias', zeros(shape, { device }));
  }

  forward(x: Tensor): Tensor {
    if (x.shape.at(-1) !== this.inFeatures) throw new Error(`packed linear: input [${x.shape}] does not end in ${this.inFeatures} features`);
    if (x.requiresGrad && isGradEnabled()) throw new Error('packed linear: packed weights are for inference; train the latent model (linear "fbi") instead');
    const w = this.get('weight_bits');
    if (w.device !== x.device) throw new Error(`packed linear: input is on ${x.device} but the packed weights are on ${w.device}`);
    const kernel = x.backend.extra.fbiPackedMatmul;
    if (!kernel) throw new Error(`packed FBI inference is not available on the ${x.device} backend`);
    const y = empty([...x.shape.slice(0, -1), this.outFeatures], { device: x.device });
    kernel(x.buf, w.buf, this.get('wscale').buf, this.get('wbias').buf, this.pattern, x.size / this.inFeatures, this.inFeatures, this.outFeatures, y.buf);
    return y;
  }
}

/** A packed model on `device` (a GPU device) whose FBI linears run from the sign bits. */
export function packedModelOnDevice(data: PackedModelData, device: DeviceName): CausalLM {
  const cfg = configFromHf(data.config);
  if (cfg.linear !== 'fbi') throw new Error(`a packed model needs linear 'fbi', got ${JSON.stringify(cfg.linear)}`);
  if (data.headDtype === 'int8') {
    throw new Error('this packed folder has an int8 LM head (frugal pack --head int8), which runs on the cpu only; pack it with the default f16 head');
  }
  const model = new CausalLM(cfg, { device, linear: (c, inF, outF) => new DevicePackedLinear(inF, outF, c.fbiScale, device) });
  // An f16 head is uploaded as the f32 values of its halves (the logits of the f16 head on the cpu).
  const given = new Map<string, RawTensor>(data.tensors);
  for (const [name, l] of data.linears) {
    given.set(`${name}.weight_bits`, { dtype: 'i32', shape: [l.outFeatures, packedWordsPerRow(l.inFeatures)], data: new Int32Array(l.bits.buffer, l.bits.byteOffset, l.bits.length) });
    given.set(`${name}.wscale`, l.wscale);
    given.set(`${name}.wbias`, l.wbias);
  }
  const current = new Map([...model.namedParameters(), ...model.namedBuffers()]);
  const missing = [...current.keys()].filter((n) => !given.has(n));
  const extra = [...given.keys()].filter((n) => !current.has(n));
  if (missing.length || extra.length) {
    for (const t of current.values()) t.dispose();
    throw new Error(`packed model does not match its config: ${missing.length ? `missing ${missing.join(', ')}` : ''}${missing.length && extra.length ? '; ' : ''}${extra.length ? `unexpected ${extra.join(', ')}` : ''}`);
  }
  for (const [name, old] of current) {
    const t = given.get(name)!;
    model.setTensor(name, fromArray(t.data, t.shape, device));
    old.dispose();
  }
  // A serving model: nothing is trained, so activations carry no gradient into the packed linears.
  for (const p of model.parameters()) p.requiresGrad = false;
  return model.eval();
}

/**
 * A packed folder's model on `device` from the bytes of its files: config.json (bytes, text or the
 * parsed object) and model.safetensors. `where` names the folder in error messages.
 */
export function packedModelFromFiles(config: Uint8Array | string | Record<string, unknown>, weights: Uint8Array, device: DeviceName,
  where = 'the packed folder'): CausalLM {
  let raw: Record<string, unknown>;
  if (config instanceof Uint8Array || typeof config === 'string') {
    try {
      raw = JSON.parse(typeof config === 'string' ? config : new TextDecoder().decode(config));
    } catch (e) {
      throw new Error(`${where}: config.json is not valid JSON (${(e as Error).message})`);
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`${where}: config.json must hold a JSON object`);
  } else raw = config;
  checkPackedConfig(raw, where);
  return packedModelOnDevice(packedDataFrom(raw, weights, where), device);
}

export interface PackedMemory {
  /** Number of packed (binarized) linears. */
  linears: number;
  /** Their 1-bit weights. */
  binarizedWeights: number;
  /** Bytes their sign bits and scales take on the device. */
  packedBytes: number;
  /** Bytes the same linears would take with f32 weights (plus the same scales). */
  packedAsF32Bytes: number;
  /** Bytes of every other tensor of the model (embedding, norms, head), all 4-byte elements. */
  otherBytes: number;
}

/** Memory of a model's weights with its packed linears as they are, against f32 weights in their place. */
export function packedMemory(model: Module): PackedMemory {
  const m: PackedMemory = { linears: 0, binarizedWeights: 0, packedBytes: 0, packedAsF32Bytes: 0, otherBytes: 0 };
  const packedNames = new Set<string>();
  for (const [name, mod] of model.namedModules()) {
    if (!(mod instanceof DevicePackedLinear)) continue;
    m.linears++;
    m.binarizedWeights += mod.inFeatures * mod.outFeatures;
    let scales = 0;
    for (const [n, t] of mod.namedBuffers(`${name}.`)) {
      packedNames.add(n);
      if (n.endsWith('.weight_bits')) m.packedBytes += t.size * 4;
      else scales += t.size * 4;
    }
    m.packedBytes += scales;
    m.packedAsF32Bytes += mod.inFeatures * mod.outFeatures * 4 + scales;
  }
  for (const [n, t] of [...model.namedParameters(), ...model.namedBuffers()]) if (!packedNames.has(n)) m.otherBytes += t.size * 4;
  return m;
}

