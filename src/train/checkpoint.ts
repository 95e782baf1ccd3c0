// Checkpoint folders: config.json (HF style, src/models/hf.ts toHf, with the full frugal config embedded), model.safetensors,
// and for training runs optimizer.safetensors, trainer_state.json and tokenizer.json. The folder is
// replaced as a whole (src/io writeDirAtomic), so a crash or a failing save never leaves a broken one.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { recoverDir, writeDirAtomic, type FileData } from '../io/atomic.ts';
import type { RawTensor, TensorMap } from '../io/raw.ts';
import { encodeSafetensors, readSafetensors } from '../io/safetensors.ts';
import { loadTokenizer, type Tokenizer } from '../data/index.ts';
import type { BatchIteratorState } from '../data/index.ts';
import type { CausalLM } from '../models/index.ts';
import { loadPretrained, toHf } from '../models/hf.ts';
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
  /** Keep the replaced checkpoint under this path instead of deleting it. */
  retireTo?: string;
}

function toRaw(t: Tensor): RawTensor {
  const data = t.dataSync();
  return t.dtype === 'i32'
    ? { dtype: 'i32', shape: [...t.shape], data: data as Int32Array }
    : { dtype: 'f32', shape: [...t.shape], data: data as Float32Array };
}

/** The model's parameters and buffers by HF name. */
function modelTensors(model: CausalLM): TensorMap {
  const out: TensorMap = new Map();
  for (const [n, t] of [...model.namedParameters(), ...model.namedBuffers()]) out.set(n, toRaw(t));
  return out;
}

/** Writes a checkpoint folder in one atomic replacement. CPU tensors (call after syncing GPU ones). */
export function saveCheckpoint(dir: string, model: CausalLM, opts: SaveOpts = {}): void {
  const files: Record<string, FileData> = {
    'config.json': `${JSON.stringify(toHf(model.config), null, 2)}\n`,
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
  writeDirAtomic(resolve(dir), files, { retireTo: opts.retireTo });
}

/** Finishes or drops what a killed save left (best effort: a read-only folder is read as it is). */
function tryRecover(dir: string): void {
  try {
    recoverDir(dir);
  } catch {
    // Reading still works from the complete folder if one exists.
  }
}

/** A run folder holds its latest checkpoint under model/; accept either. */
export function resolveModelDir(dir: string): string {
  const abs = resolve(dir);
  tryRecover(abs);
  tryRecover(join(abs, 'model'));
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
  return loadPretrained(resolveModelDir(dir), { device: opts.device ?? 'cpu' });
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
