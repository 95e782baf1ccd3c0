// Resolving a model argument: a checkpoint folder, a config .json file, or a preset name.
import { existsSync, statSync } from 'node:fs';
import { readTextFile } from '../io/safe-read.ts';
import { CausalLM, type ModelConfig } from '../models/index.ts';
import { presetByName } from '../models/presets.ts';
import { loadModel, resolveModelDir } from '../train/checkpoint.ts';
import { readConfig } from '../io/hf-folder.ts';
import { isPackedConfig } from '../io/packed.ts';
import { loadPackedModel } from '../infer/packed-linear.ts';
import { readGguf } from '../io/gguf.ts';
import { modelFromGguf } from '../infer/gguf-model.ts';
import { tokenizerFromGguf } from '../data/gguf-tokenizer.ts';
import { loadModelTokenizer } from '../train/checkpoint.ts';
import type { Tokenizer } from '../data/index.ts';
import { UsageError } from './args.ts';
import type { DeviceName } from '../backend/types.ts';

/** Config of a preset or .json file, with the vocabulary set to the tokenizer's. */
async function configFromSpec(spec: string, vocabSize: number): Promise<Partial<ModelConfig>> {
  let cfg: Partial<ModelConfig>;
  if (spec.endsWith('.json') && existsSync(spec) && statSync(spec).isFile()) {
    try {
      cfg = JSON.parse(readTextFile(spec, { what: 'model config' }));
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

/** A fresh model from a preset/config, or the model stored in a checkpoint folder. */
export async function modelFromSpec(spec: string, vocabSize: number, seed: number): Promise<{ model: CausalLM; fromCheckpoint: boolean }> {
  if (existsSync(spec) && statSync(spec).isDirectory()) return { model: loadModel(spec), fromCheckpoint: true };
  return { model: new CausalLM(await configFromSpec(spec, vocabSize), { seed }), fromCheckpoint: false };
}

/** Whether a model argument names a GGUF file (by its extension). */
export function isGgufPath(path: string): boolean {
  return /\.gguf$/i.test(path);
}

/** A checkpoint folder or a packed 1-bit folder (written by frugal pack), whichever `dir` holds, or a .gguf file. */
export function loadAnyModel(dir: string): CausalLM {
  return loadServingModel(dir).model;
}

/** The model and the tokenizer stored with it (a folder's tokenizer.json, a GGUF's tokenizer metadata), if any. */
export function loadServingModel(spec: string): { model: CausalLM; tokenizer?: Tokenizer; path: string } {
  if (isGgufPath(spec)) {
    if (!existsSync(spec) || !statSync(spec).isFile()) throw new UsageError(`GGUF file ${spec} does not exist`);
    const file = readGguf(spec);
    return { model: modelFromGguf(file, spec), tokenizer: tokenizerFromGguf(file.metadata, spec), path: spec };
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
export async function loadModelOn(spec: string, device: DeviceName): Promise<{ model: CausalLM; tokenizer?: Tokenizer; path: string }> {
  const r = loadServingModel(spec);
  return { ...r, model: await r.model.moveTo(device) };
}
