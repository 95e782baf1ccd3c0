// Serving FBI models from packed sign bits: conversion of a latent model into packed form and loading
// of packed folders into models whose FBI linears are PackedLinear (src/nn/packed.ts).
import { int8RowBytes } from '../backend/contracts.ts';
import { type PackedModelData, type PackedWriteOptions, readPackedFolder, writePackedFolder } from '../io/packed.ts';
import { checkPackedNames, packedTensorMap } from '../io/packed-files.ts';
import type { RawTensor, TensorMap } from '../io/raw.ts';
import { CausalLM } from '../models/index.ts';
import { withFbiLinearFactory } from '../models/fbi-plugin.ts';
import { llamaFromHf as configFromHf, llamaToHf as configToHf } from '../models/hf.ts';
import type { ModelConfig } from '../models/config.ts';
import type { LinearLike } from '../nn/layers.ts';
import { binarizedLinears } from '../nn/fbi-linear.ts';
import { HalfHead, Int8Head, PackedLinear, quantizeRowsInt8 } from '../nn/packed.ts';
import { fbiPackSigns } from '../ops/fbi.ts';
import { fromArray, type Tensor } from '../tensor/tensor.ts';


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
    const words = fbiPackSigns(p.weight).dataSync() as Int32Array;
    const bits = new Uint32Array(words.buffer, words.byteOffset, words.length);
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
function buildPackedModel(config: Partial<ModelConfig>, opts: { seed?: number } = {}): CausalLM {
  if (config.linear !== 'fbi') throw new Error(`a packed model needs linear 'fbi', got ${JSON.stringify(config.linear)}`);
  return withFbiLinearFactory((cfg, inF, outF) => new PackedLinear(inF, outF, cfg.fbiScale), () => new CausalLM(config, { seed: opts.seed }));
}

/** The runnable packed model of packed data (in memory or read from a folder). */
export function modelFromPacked(data: PackedModelData): CausalLM {
  const cfg = configFromHf(data.config);
  const model = buildPackedModel(cfg);
  const given = packedTensorMap(data);
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
  const expected = [...model.namedParameters(), ...model.namedBuffers()].map(([n]) => n);
  checkPackedNames(expected, given);
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
