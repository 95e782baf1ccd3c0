// Checkpoint folders: config.json (HF style, src/models/hf.ts toHf, with the full frugal config embedded), model.safetensors,
// and for training runs optimizer.safetensors, trainer_state.json and tokenizer.json. The folder is
// replaced as a whole (src/io writeDirAtomic), so a crash or a failing save never leaves a broken one.
import { existsSync, statSync } from 'node:fs';
import { readTextFile } from '../io/safe-read.ts';
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
import type { TypedArray } from '../backend/types.ts';

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

/** Host copies of device tensors, read ahead for a save from a backend without synchronous readback. */
type HostCopies = Map<Tensor, TypedArray>;

function toRaw(t: Tensor, host?: HostCopies): RawTensor {
  const data = host?.get(t) ?? t.dataSync();
  return t.dtype === 'i32'
    ? { dtype: 'i32', shape: [...t.shape], data: data as Int32Array }
    : { dtype: 'f32', shape: [...t.shape], data: data as Float32Array };
}

/** The model's parameters and buffers by HF name. */
function modelTensors(model: CausalLM, host?: HostCopies): TensorMap {
  const out: TensorMap = new Map();
  for (const [n, t] of [...model.namedParameters(), ...model.namedBuffers()]) out.set(n, toRaw(t, host));
  return out;
}

/** Writes a checkpoint folder in one atomic replacement. CPU tensors (call after syncing GPU ones). */
export function saveCheckpoint(dir: string, model: CausalLM, opts: SaveOpts = {}, host?: HostCopies): void {
  const files: Record<string, FileData> = {
    'config.json': `${JSON.stringify(toHf(model.config), null, 2)}\n`,
    'model.safetensors': encodeSafetensors(modelTensors(model, host), { format: 'pt' }),
    ...opts.files,
  };
  if (opts.tokenizer) files['tokenizer.json'] = JSON.stringify(opts.tokenizer.toJSON());
  if (opts.optimizer) {
    const m: TensorMap = new Map();
    for (const [name, s] of opts.optimizer.moments) {
      m.set(`exp_avg.${name}`, toRaw(s.m, host));
      m.set(`exp_avg_sq.${name}`, toRaw(s.v, host));
    }
    files['optimizer.safetensors'] = encodeSafetensors(m, { step: String(opts.optimizer.step) });
  }
  if (opts.state) files['trainer_state.json'] = `${JSON.stringify(opts.state, null, 2)}\n`;
  writeDirAtomic(resolve(dir), files, { retireTo: opts.retireTo });
}

/**
 * saveCheckpoint for a model on any device: tensors of a backend without synchronous readback
 * (WebGPU) are read to the host first, one at a time.
 */
export async function saveCheckpointAsync(dir: string, model: CausalLM, opts: SaveOpts = {}): Promise<void> {
  const host: HostCopies = new Map();
  const all = [...model.namedParameters(), ...model.namedBuffers()].map(([, t]) => t);
  for (const [, s] of opts.optimizer?.moments ?? []) all.push(s.m, s.v);
  for (const t of all) if (!t.backend.syncReadable) host.set(t, await t.data());
  saveCheckpoint(dir, model, opts, host);
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
  const text = readTextFile(path, { root: resolveModelDir(dir), what: 'trainer state' });
  let s: TrainerState;
  try {
    s = JSON.parse(text) as TrainerState;
  } catch (e) {
    throw new Error(`${path} is not valid JSON (${(e as Error).message}); the checkpoint is corrupt`);
  }
  if (!Number.isInteger(s.step) || !Array.isArray(s.rng)) throw new Error(`${path} is not a valid trainer state (no step or rng); the checkpoint cannot be resumed`);
  return s;
}
