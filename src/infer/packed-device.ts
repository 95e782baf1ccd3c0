// Packed 1-bit FBI models built straight on a GPU device from packed data: the sign bits, scales and
// full-precision tensors are uploaded as stored, so the f32 weights of the binarized linears never
// exist on either side. Imports nothing Node-only and no CPU addon, so browsers use it (the playground
// loads packed folders from picked or fetched bytes through packedModelFromFiles). The linears are
// PackedLinear (src/nn/packed.ts) with the CLI's default int8 activations (setPackedActivations
// selects the exact mode). On Node, loadPackedModel + moveTo gives the same model.
import type { DeviceName } from '../backend/types.ts';
import { checkPackedConfig, checkPackedNames, packedDataFrom, type PackedModelData, packedTensorMap } from '../io/packed-files.ts';
import { CausalLM } from '../models/index.ts';
import { llamaFromHf as configFromHf } from '../models/hf.ts';
import type { Module } from '../nn/module.ts';
import { PackedLinear } from '../nn/packed.ts';
import { fromArray } from '../tensor/tensor.ts';

/** A packed model on `device` (a GPU device) whose FBI linears run from the sign bits. */
export function packedModelOnDevice(data: PackedModelData, device: DeviceName): CausalLM {
  const cfg = configFromHf(data.config);
  if (cfg.linear !== 'fbi') throw new Error(`a packed model needs linear 'fbi', got ${JSON.stringify(cfg.linear)}`);
  if (data.headDtype === 'int8') {
    throw new Error('this packed folder has an int8 LM head (frugal pack --head int8), which runs on the cpu only; pack it with the default f16 head');
  }
  const model = new CausalLM(cfg, { device, linear: (c, inF, outF) => new PackedLinear(inF, outF, c.fbiScale, device) });
  // An f16 head is uploaded as the f32 values of its halves (the logits of the f16 head on the cpu).
  const given = packedTensorMap(data);
  const current = new Map([...model.namedParameters(), ...model.namedBuffers()]);
  try {
    checkPackedNames([...current.keys()], given);
  } catch (e) {
    for (const t of current.values()) t.dispose();
    throw e;
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
    if (!(mod instanceof PackedLinear)) continue;
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

