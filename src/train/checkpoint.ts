// Checkpoint folders: config.json (HF style, with the full frugal config embedded), model.safetensors,
// and for training runs optimizer.safetensors, trainer_state.json and tokenizer.json. The folder is
// replaced as a whole (src/io writeDirAtomic), so a crash or a failing save never leaves a broken one.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeDirAtomic, type FileData } from '../io/atomic.ts';
import { loadWeights, readConfig } from '../io/hf-folder.ts';
import type { RawTensor, TensorMap } from '../io/raw.ts';
import { encodeSafetensors, readSafetensors } from '../io/safetensors.ts';
import { loadTokenizer, type Tokenizer } from '../data/index.ts';
import type { BatchIteratorState } from '../data/index.ts';
import { CausalLM, type ModelConfig, resolveConfig } from '../models/index.ts';
import type { DeviceName } from '../backend/types.ts';
import { fromArray, type Tensor } from '../tensor/index.ts';

/** Everything besides weights that exact resume needs. */
export interface TrainerState {
  /** Optimizer steps done. */
  step: number;
  /** Total steps the run was planned for (schedule length). */
  totalSteps: number;
  data?: BatchIteratorState;
  rng: number[];
  tokens: number;
  /** Tokenizer fingerprint, to refuse resuming with another vocabulary. */
  tokenizerId?: string;
  extra?: Record<string, unknown>;
}

/** Moments of an optimizer by parameter name (AdamW's state()). */
export interface OptimizerSnapshot {
  step: number;
  moments: Map<string, { m: Tensor; v: Tensor }>;
}

export interface SaveOpts {
  tokenizer?: Tokenizer;
  optimizer?: OptimizerSnapshot;
  state?: TrainerState;
  /** Extra files written into the same atomic folder replacement. */
  files?: Record<string, FileData>;
}

/** HF-style config.json: LLaMA field names for interoperability plus the exact frugal config. */
export function toHfConfig(cfg: ModelConfig): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: cfg.vocabSize,
    hidden_size: cfg.hiddenSize,
    num_hidden_layers: cfg.numLayers,
    num_attention_heads: cfg.numHeads,
    num_key_value_heads: cfg.numKvHeads,
    intermediate_size: cfg.intermediateSize,
    max_position_embeddings: cfg.maxPositions,
    rms_norm_eps: cfg.rmsNormEps,
    rope_theta: cfg.ropeTheta,
    tie_word_embeddings: cfg.tieEmbeddings,
    hidden_act: 'silu',
    torch_dtype: 'float32',
    ...(cfg.bosTokenId !== undefined ? { bos_token_id: cfg.bosTokenId } : {}),
    ...(cfg.eosTokenId !== undefined ? { eos_token_id: cfg.eosTokenId } : {}),
    frugal: cfg,
  };
}

/** ModelConfig from config.json: the embedded frugal config when present, else the LLaMA fields. */
export function fromHfConfig(json: Record<string, unknown>, source = 'config.json'): ModelConfig {
  if (json.frugal !== undefined) {
    if (typeof json.frugal !== 'object' || json.frugal === null) throw new Error(`${source}: "frugal" must be an object`);
    return resolveConfig(json.frugal as Partial<ModelConfig>);
  }
  const need = (k: string) => {
    if (json[k] === undefined) throw new Error(`${source} has no "${k}"; it is not a LLaMA-style config this build can read`);
    return json[k] as number;
  };
  return resolveConfig({
    vocabSize: need('vocab_size'),
    hiddenSize: need('hidden_size'),
    numLayers: need('num_hidden_layers'),
    numHeads: need('num_attention_heads'),
    numKvHeads: (json.num_key_value_heads as number | undefined) ?? need('num_attention_heads'),
    intermediateSize: need('intermediate_size'),
    maxPositions: (json.max_position_embeddings as number | undefined) ?? 2048,
    rmsNormEps: (json.rms_norm_eps as number | undefined) ?? 1e-6,
    ropeTheta: (json.rope_theta as number | undefined) ?? 10000,
    tieEmbeddings: Boolean(json.tie_word_embeddings),
    bosTokenId: json.bos_token_id as number | undefined,
    eosTokenId: json.eos_token_id as number | undefined,
  });
}

function toRaw(t: Tensor): RawTensor {
  const data = t.dataSync();
  return t.dtype === 'i32'
    ? { dtype: 'i32', shape: [...t.shape], data: data as Int32Array }
    : { dtype: 'f32', shape: [...t.shape], data: data as Float32Array };
}

/** The model's parameters and buffers by HF name. */
export function modelTensors(model: CausalLM): TensorMap {
  const out: TensorMap = new Map();
  for (const [n, t] of [...model.namedParameters(), ...model.namedBuffers()]) out.set(n, toRaw(t));
  return out;
}

/** Writes a checkpoint folder in one atomic replacement. CPU tensors (call after syncing GPU ones). */
export function saveCheckpoint(dir: string, model: CausalLM, opts: SaveOpts = {}): void {
  const files: Record<string, FileData> = {
    'config.json': `${JSON.stringify(toHfConfig(model.config), null, 2)}\n`,
    'model.safetensors': encodeSafetensors(modelTensors(model), { format: 'pt' }),
    ...opts.files,
  };
  if (opts.tokenizer) files['tokenizer.json'] = JSON.stringify(opts.tokenizer.toJSON());
  if (opts.optimizer) {
    const m: TensorMap = new Map();
    for (const [name, s] of opts.optimizer.moments) {
      m.set(`exp_avg.${name}`, toRaw(s.m));
      m.set(`exp_avg_sq.${name}`, toRaw(s.v));
    }
    files['optimizer.safetensors'] = encodeSafetensors(m, { step: String(opts.optimizer.step) });
  }
  if (opts.state) files['trainer_state.json'] = `${JSON.stringify(opts.state, null, 2)}\n`;
  writeDirAtomic(resolve(dir), files);
}

/** A run folder holds its latest checkpoint under model/; accept either. */
export function resolveModelDir(dir: string): string {
  const abs = resolve(dir);
  if (!existsSync(abs)) throw new Error(`model folder ${abs} does not exist; pass a checkpoint folder (with config.json) or a run folder`);
  if (!statSync(abs).isDirectory()) throw new Error(`${abs} is a file; pass the checkpoint folder that holds config.json`);
  if (!existsSync(join(abs, 'config.json')) && existsSync(join(abs, 'model', 'config.json'))) return join(abs, 'model');
  return abs;
}

export interface LoadOpts {
  device?: DeviceName;
}

/** Builds the model described by a checkpoint folder and loads its weights (all names must match). */
export function loadModel(dir: string, opts: LoadOpts = {}): CausalLM {
  const abs = resolveModelDir(dir);
  const cfg = fromHfConfig(readConfig(abs), join(abs, 'config.json'));
  const model = new CausalLM(cfg, { device: opts.device ?? 'cpu' });
  const { tensors } = loadWeights(abs);
  const own = new Map([...model.namedParameters(), ...model.namedBuffers()]);
  for (const [name, t] of own) {
    const raw = tensors.get(name);
    if (!raw) throw new Error(`checkpoint ${abs} has no tensor "${name}"; the weights do not match config.json`);
    if (raw.dtype !== t.dtype) throw new Error(`checkpoint tensor "${name}" is ${raw.dtype}, the model expects ${t.dtype}`);
    model.setTensor(name, fromArray(raw.data, raw.shape, model.device));
  }
  for (const name of tensors.keys()) {
    // A tied head may still be stored by other writers; anything else unknown means a config mismatch.
    if (!own.has(name) && !(name === 'lm_head.weight' && cfg.tieEmbeddings)) {
      throw new Error(`checkpoint ${abs} has tensor "${name}" that this config does not use; config.json and weights disagree`);
    }
  }
  return model;
}

/** The tokenizer saved with a model, or undefined when the folder has none. */
export function loadModelTokenizer(dir: string): Tokenizer | undefined {
  const abs = resolveModelDir(dir);
  return existsSync(join(abs, 'tokenizer.json')) ? loadTokenizer(abs) : undefined;
}

export function loadOptimizerState(dir: string, device: DeviceName = 'cpu'): OptimizerSnapshot | undefined {
  const path = join(resolveModelDir(dir), 'optimizer.safetensors');
  if (!existsSync(path)) return undefined;
  const { tensors, metadata } = readSafetensors(path);
  const moments = new Map<string, { m: Tensor; v: Tensor }>();
  for (const [key, raw] of tensors) {
    if (!key.startsWith('exp_avg.')) continue;
    const name = key.slice('exp_avg.'.length);
    const v = tensors.get(`exp_avg_sq.${name}`);
    if (!v) throw new Error(`${path} has exp_avg for "${name}" but no exp_avg_sq; the optimizer state is corrupt`);
    moments.set(name, { m: fromArray(raw.data, raw.shape, device), v: fromArray(v.data, v.shape, device) });
  }
  const step = Number(metadata.step);
  if (!Number.isInteger(step) || step < 0) throw new Error(`${path} has no valid "step" metadata`);
  return { step, moments };
}

export function loadTrainerState(dir: string): TrainerState | undefined {
  const path = join(resolveModelDir(dir), 'trainer_state.json');
  if (!existsSync(path)) return undefined;
  let s: TrainerState;
  try {
    s = JSON.parse(readFileSync(path, 'utf8')) as TrainerState;
  } catch (e) {
    throw new Error(`${path} is not valid JSON (${(e as Error).message}); the checkpoint is corrupt`);
  }
  if (!Number.isInteger(s.step) || !Array.isArray(s.rng)) throw new Error(`${path} is not a valid trainer state (no step or rng); the checkpoint cannot be resumed`);
  return s;
}
