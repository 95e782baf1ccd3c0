// Resolving a model argument: a checkpoint folder, a config .json file, or a preset name.
import { existsSync, statSync } from 'node:fs';
import { readTextFile } from '../io/safe-read.ts';
import { totalmem } from 'node:os';
import { CausalLM, type ModelConfig } from '../models/index.ts';
import { estimateParameters, resolveConfig } from '../models/config.ts';
import { presetByName } from '../models/presets.ts';
import { loadModel, resolveModelDir } from '../train/checkpoint.ts';
import { readConfig } from '../io/hf-folder.ts';
import { isPackedConfig } from '../io/packed.ts';
import { loadPackedModel } from '../infer/packed-linear.ts';
import { type GgufValue, readGguf } from '../io/gguf.ts';
import { modelFromGguf } from '../infer/gguf-model.ts';
import { tokenizerFromGguf } from '../data/gguf-tokenizer.ts';
import { loadModelTokenizer } from '../train/checkpoint.ts';
import type { Tokenizer } from '../data/index.ts';
import { UsageError } from './args.ts';
import type { DeviceName } from '../backend/types.ts';

/** Config of a preset or .json file, with the vocabulary set to the tokenizer's. */
async function configFromSpec(spec: string, vocabSize: number): Promise<Partial<ModelConfig>> {
  let cfg: Partial<ModelConfig>;
  if (spec.endsWith('.json') && existsSync(spec)) {
    const text = readTextFile(spec, { what: 'model config' });
    try {
      cfg = JSON.parse(text);
    } catch (e) {
      throw new UsageError(`model config ${spec} is not valid JSON (${(e as Error).message})`);
    }
    if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) {
      throw new UsageError(`model config ${spec} must hold one JSON object of model fields (see README), not ${Array.isArray(cfg) ? 'an array' : JSON.stringify(cfg)}`);
    }
  } else {
    cfg = await presetByName(spec);
  }
  return { ...cfg, vocabSize };
}

/**
 * Training keeps four f32 copies of every parameter (weights, gradients, two AdamW moments): a model
 * that cannot fit in this machine's memory is refused before anything is allocated, instead of
 * paging for minutes and being killed.
 */
function checkFitsInMemory(cfg: ModelConfig, spec: string): void {
  const params = estimateParameters(cfg);
  const need = params * 16;
  const have = totalmem();
  if (need > have) {
    const gib = (b: number) => (b / 2 ** 30).toFixed(1);
    throw new UsageError(`${spec}: training a model of about ${params.toExponential(2)} parameters needs about ${gib(need)} GiB (weights, gradients and optimizer state in f32), more than this machine's ${gib(have)} GiB; choose a smaller model`);
  }
}

/** A fresh model from a preset/config, or the model stored in a checkpoint folder. */
export async function modelFromSpec(spec: string, vocabSize: number, seed: number): Promise<{ model: CausalLM; fromCheckpoint: boolean }> {
  if (existsSync(spec) && statSync(spec).isDirectory()) return { model: loadModel(spec), fromCheckpoint: true };
  const cfg = resolveConfig(await configFromSpec(spec, vocabSize));
  checkFitsInMemory(cfg, spec);
  return { model: new CausalLM(cfg, { seed }), fromCheckpoint: false };
}

/** Whether a model argument names a GGUF file (by its extension). */
export function isGgufPath(path: string): boolean {
  return /\.gguf$/i.test(path);
}

/** A checkpoint folder or a packed 1-bit folder (written by frugal pack), whichever `dir` holds, or a .gguf file. */
export function loadAnyModel(dir: string): CausalLM {
  return loadServingModel(dir).model;
}

export interface ServingModel {
  model: CausalLM;
  tokenizer?: Tokenizer;
  path: string;
  /** A GGUF file's metadata (chat template and the like); undefined for a folder. */
  ggufMetadata?: Map<string, GgufValue>;
}

/** The model and the tokenizer stored with it (a folder's tokenizer.json, a GGUF's tokenizer metadata), if any. */
export function loadServingModel(spec: string): ServingModel {
  if (isGgufPath(spec)) {
    if (!existsSync(spec)) throw new UsageError(`GGUF file ${spec} does not exist`);
    const file = readGguf(spec);
    return { model: modelFromGguf(file, spec), tokenizer: tokenizerFromGguf(file.metadata, spec), path: spec, ggufMetadata: file.metadata };
  }
  const abs = resolveModelDir(spec);
  const model = isPackedConfig(readConfig(abs)) ? loadPackedModel(abs) : loadModel(abs);
  return { model, tokenizer: loadModelTokenizer(abs), path: abs };
}

/** Weights that are NaN or infinite (a diverged or damaged checkpoint): counts and the first tensors named. */
export function nonFiniteWeights(model: CausalLM): { values: number; tensors: string[] } {
  let values = 0;
  const tensors: string[] = [];
  for (const [name, t] of [...model.namedParameters(), ...model.namedBuffers()]) {
    if (t.dtype !== 'f32') continue;
    const d = t.dataSync() as Float32Array;
    let n = 0;
    for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i])) n++;
    if (n) {
      values += n;
      tensors.push(name);
    }
  }
  return { values, tensors };
}

export function describeNonFinite(r: { values: number; tensors: string[] }): string {
  const shown = r.tensors.slice(0, 3).join(', ') + (r.tensors.length > 3 ? `, ... (${r.tensors.length} tensors)` : '');
  return `${r.values} NaN/Inf values in ${shown}`;
}

/** loadServingModel, then placed on `device` (brought up by useDevice). */
export async function loadModelOn(spec: string, device: DeviceName): Promise<ServingModel> {
  const r = loadServingModel(spec);
  return { ...r, model: await r.model.moveTo(device) };
}
