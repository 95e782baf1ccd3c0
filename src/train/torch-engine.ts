// The PyTorch engine: writes the data as token shards, saves the initial model here (same seed, same
// init as the native trainer), and launches torchrun with the twin (python/frugal_lm_torch) and its
// training script. The result is a run folder like the native trainer's (metrics.jsonl, model/).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { ensureDir, promoteDir, stagingPath, writeFileAtomic } from '../io/atomic.ts';
import { join, resolve } from 'node:path';
import type { Tokenizer } from '../data/index.ts';
import type { CausalLM } from '../models/index.ts';
import { loadModel, saveCheckpoint } from './checkpoint.ts';

/** Where the twin and the training script live (python/ at the package root). */
const PYTHON_DIR = resolve(import.meta.dirname, '..', '..', 'python');

const MAGIC = 'FRUGTOK1';

let python: string | null | undefined;
/** A Python that imports torch: $FRUGAL_PYTHON when set (only it), else python3 or Debian's /usr/bin/python3; null when none does. */
export function pythonWithTorch(refresh = false): string | null {
  if (python !== undefined && !refresh) return python;
  const cands = process.env.FRUGAL_PYTHON ? [process.env.FRUGAL_PYTHON] : ['python3', '/usr/bin/python3'];
  python = cands.find((c) => spawnSync(c, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0) ?? null;
  return python;
}

/**
 * Token shard (the format python/frugal_lm_torch/shards.py reads), little-endian:
 * magic "FRUGTOK1" | u32 vocab size | u32 id length n | u64 token count T | n bytes tokenizer id
 * (UTF-8) padded with zeros to a multiple of 4 | T x i32 token ids.
 */
export function encodeTokenShard(tokens: Int32Array, vocabSize: number, tokenizerId: string): Uint8Array {
  const id = Buffer.from(tokenizerId, 'utf8');
  const pad = (4 - (id.length % 4)) % 4;
  const head = 24 + id.length + pad;
  const out = new Uint8Array(head + tokens.length * 4);
  const dv = new DataView(out.buffer);
  out.set(Buffer.from(MAGIC, 'latin1'), 0);
  dv.setUint32(8, vocabSize, true);
  dv.setUint32(12, id.length, true);
  dv.setBigUint64(16, BigInt(tokens.length), true);
  out.set(id, 24);
  for (let i = 0; i < tokens.length; i++) dv.setInt32(head + 4 * i, tokens[i], true);
  return out;
}

export interface TokenShard {
  tokens: Int32Array;
  vocabSize: number;
  tokenizerId: string;
}

/** Reads a token shard; throws one line on a corrupt file. */
export function decodeTokenShard(bytes: Uint8Array, source = 'shard'): TokenShard {
  if (bytes.length < 24 || Buffer.from(bytes.subarray(0, 8)).toString('latin1') !== MAGIC) {
    throw new Error(`${source}: not a frugal token shard (bad magic)`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const vocabSize = dv.getUint32(8, true), n = dv.getUint32(12, true);
  const count = Number(dv.getBigUint64(16, true));
  const head = 24 + n + ((4 - (n % 4)) % 4);
  if (head + 4 * count !== bytes.length) throw new Error(`${source}: header says ${count} tokens but the file holds ${Math.floor((bytes.length - head) / 4)}`);
  const tokenizerId = Buffer.from(bytes.subarray(24, 24 + n)).toString('utf8');
  const tokens = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const t = dv.getInt32(head + 4 * i, true);
    if (t < 0 || t >= vocabSize) throw new Error(`${source}: token id ${t} at ${i} is outside the shard's vocabulary [0, ${vocabSize})`);
    tokens[i] = t;
  }
  return { tokens, vocabSize, tokenizerId };
}

export function readTokenShard(path: string): TokenShard {
  return decodeTokenShard(readFileSync(path), path);
}

/** Refuses a shard written by another tokenizer (or for a larger vocabulary than the model's). */
export function checkShard(shard: TokenShard, tok: Tokenizer, modelVocab: number, source: string): void {
  if (shard.tokenizerId !== tok.id() || shard.vocabSize !== tok.vocabSize) {
    throw new Error(`${source} was written by another tokenizer (${shard.tokenizerId || 'unnamed'}, vocabulary ${shard.vocabSize}) than this run's (${tok.id()}, vocabulary ${tok.vocabSize})`);
  }
  if (shard.vocabSize > modelVocab) throw new Error(`${source}: vocabulary ${shard.vocabSize} exceeds the model's ${modelVocab} entries`);
}

/**
 * The launcher: torchrun's own entry point (torch.distributed.run) through python/frugal_lm_torch/launch.py,
 * which fixes PyTorch 1.13's redirect parsing on Python 3.11; one clear line when torchrun is missing.
 */
export function findTorchrun(): string[] {
  const py = pythonWithTorch(true);
  if (!py) throw new Error('torchrun was not found: no python3 imports torch (install PyTorch, e.g. Debian: apt-get install python3-torch, or set FRUGAL_PYTHON)');
  const r = spawnSync(py, ['-c', 'import torch.distributed.run'], { stdio: 'ignore' });
  if (r.status !== 0) throw new Error(`torchrun was not found: ${py} imports torch but not torch.distributed.run (a PyTorch build without distributed support)`);
  return [py, '-m', 'frugal_lm_torch.launch'];
}

/** Builds the config with the twin's own validation, so a config it cannot build fails before launch. */
export function checkTwinConfig(model: CausalLM): void {
  const code = 'import json,sys\nfrom frugal_lm_torch.model import resolve_config, ConfigError\n' +
    'try:\n  resolve_config(json.loads(sys.stdin.read()))\nexcept ConfigError as e:\n  print(e); sys.exit(3)\n';
  const py = pythonWithTorch();
  if (!py) throw new Error('PyTorch is not installed: no python3 imports torch (Debian: apt-get install python3-torch, or set FRUGAL_PYTHON)');
  const r = spawnSync(py, ['-c', code], { input: JSON.stringify(model.config), encoding: 'utf8', env: { ...process.env, PYTHONPATH: PYTHON_DIR } });
  if (r.status === 3) throw new Error(`the PyTorch twin cannot build this model: ${r.stdout.trim()}`);
  if (r.status !== 0) throw new Error(`the PyTorch twin does not load (is python3-torch installed?): ${(r.stderr || r.stdout).trim().split('\n').at(-1)}`);
}

/**
 * findTorchrun and checkTwinConfig in one interpreter start (each start imports torch, seconds with
 * a CUDA build): the launcher, or the same one-line errors.
 */
function probeTorch(model: CausalLM): string[] {
  const py = pythonWithTorch(true);
  if (!py) throw new Error('torchrun was not found: no python3 imports torch (install PyTorch, e.g. Debian: apt-get install python3-torch, or set FRUGAL_PYTHON)');
  const code = 'import json,sys\ntry:\n  import torch.distributed.run\nexcept Exception:\n  sys.exit(4)\n' +
    'from frugal_lm_torch.model import resolve_config, ConfigError\n' +
    'try:\n  resolve_config(json.loads(sys.stdin.read()))\nexcept ConfigError as e:\n  print(e); sys.exit(3)\n';
  const r = spawnSync(py, ['-c', code], { input: JSON.stringify(model.config), encoding: 'utf8', env: { ...process.env, PYTHONPATH: PYTHON_DIR } });
  if (r.status === 4) throw new Error(`torchrun was not found: ${py} imports torch but not torch.distributed.run (a PyTorch build without distributed support)`);
  if (r.status === 3) throw new Error(`the PyTorch twin cannot build this model: ${r.stdout.trim()}`);
  if (r.status !== 0) throw new Error(`the PyTorch twin does not load (is python3-torch installed?): ${(r.stderr || r.stdout).trim().split('\n').at(-1)}`);
  return [py, '-m', 'frugal_lm_torch.launch'];
}

export interface TorchTrainOpts {
  model: CausalLM;
  tokenizer: Tokenizer;
  train: Int32Array;
  val?: Int32Array;
  outDir: string;
  nproc: number;
  fsdp?: boolean;
  steps: number; batch: number; ctx: number; lr: number; minLr?: number; warmup?: number;
  clip: number; accum: number; weightDecay: number; evalEvery: number; evalSequences: number; saveEvery: number; seed: number;
  /** Threads per process (default 1). */
  threads?: number;
  quiet?: boolean;
  /** Continue from this checkpoint folder (model/ of a torch-engine run): weights, AdamW state, step, data position. */
  resumeFrom?: string;
  /** Stop with a checkpoint after this many steps although the schedule spans `steps`. */
  stopAfter?: number;
  /** Distillation: teacher checkpoint folder (loaded by the twin, frozen, eval mode) and ground-truth weight. */
  teacher?: { dir: string; gtWeight: number };
  /** Saved in trainer_state.json (extra), e.g. the settings a resume must match. */
  extra?: Record<string, unknown>;
  /**
   * outDir holds an older run to replace: the new run is written in a staging sibling and takes its
   * place once torchrun has finished with a checkpoint; a failing new run leaves the old one as it was.
   */
  overwrite?: boolean;
}

export interface TorchTrainResult {
  checkpointDir: string;
  tokensPerSecond: number;
}

export function trainWithTorch(o: TorchTrainOpts): TorchTrainResult {
  const launcher = probeTorch(o.model);
  if (!Number.isInteger(o.nproc) || o.nproc < 1) throw new Error(`--nproc must be an integer >= 1, got ${o.nproc}`);
  if (o.batch % o.nproc) throw new Error(`--batch ${o.batch} is not divisible by --nproc ${o.nproc} (each process takes an equal share)`);
  const finalDir = resolve(o.outDir);
  if (o.resumeFrom && o.overwrite) throw new Error('resume and overwrite exclude each other');
  const staging = o.overwrite && existsSync(finalDir) && readdirSync(finalDir).length ? stagingPath(finalDir) : undefined;
  try {
    const r = launch(o, launcher, staging ?? finalDir);
    if (staging) promoteDir(staging, finalDir);
    return { checkpointDir: join(finalDir, 'model'), tokensPerSecond: r.tokensPerSecond };
  } finally {
    if (staging) rmSync(staging, { recursive: true, force: true });
  }
}

function launch(o: TorchTrainOpts, launcher: string[], out: string): TorchTrainResult {
  const dataDir = join(out, 'data');
  ensureDir(dataDir);
  const trainShard = join(dataDir, 'train.tok');
  writeFileAtomic(trainShard, encodeTokenShard(o.train, o.tokenizer.vocabSize, o.tokenizer.id()));
  let valShard: string | undefined;
  if (o.val && o.val.length > o.ctx) {
    valShard = join(dataDir, 'val.tok');
    writeFileAtomic(valShard, encodeTokenShard(o.val, o.tokenizer.vocabSize, o.tokenizer.id()));
  }
  // A resumed run's checkpoint carries its config and tokenizer; a new run saves its initial model.
  const init = o.resumeFrom ? resolve(o.resumeFrom) : join(out, 'init');
  if (!o.resumeFrom) saveCheckpoint(init, o.model, { tokenizer: o.tokenizer });
  if (o.resumeFrom && !existsSync(join(init, 'optimizer.pt'))) {
    throw new Error(`cannot resume ${init} with the torch engine: it holds no optimizer.pt (not written by --engine torch); resume it with the engine that wrote it`);
  }
  const extraFile = join(out, 'data', 'extra.json');
  writeFileAtomic(extraFile, JSON.stringify(o.extra ?? {}));
  const teacher = o.teacher ? twinCheckpoint(o.teacher.dir, join(out, 'teacher')) : undefined;
  const args = [
    ...launcher.slice(1), '--standalone', `--nproc_per_node=${o.nproc}`, '-m', 'frugal_lm_torch.train',
    '--init', init, '--train', trainShard, ...(valShard ? ['--val', valShard] : []), '--out', out,
    '--steps', String(o.steps), '--batch', String(o.batch), '--ctx', String(o.ctx), '--lr', String(o.lr),
    ...(o.minLr !== undefined ? ['--min-lr', String(o.minLr)] : []), ...(o.warmup !== undefined ? ['--warmup', String(o.warmup)] : []),
    '--clip', String(o.clip), '--accum', String(o.accum), '--weight-decay', String(o.weightDecay), '--eval-every', String(o.evalEvery),
    '--eval-sequences', String(o.evalSequences), '--save-every', String(o.saveEvery), '--seed', String(o.seed),
    '--threads', String(o.threads ?? 1), ...(o.fsdp ? ['--fsdp'] : []), '--extra', extraFile,
    ...(o.resumeFrom ? ['--resume-from', init] : []), ...(o.stopAfter !== undefined ? ['--stop-after', String(o.stopAfter)] : []),
    ...(teacher ? ['--teacher', teacher, '--gt-weight', String(o.teacher!.gtWeight)] : []),
  ];
  const r = spawnSync(launcher[0], args, {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PYTHONPATH: [PYTHON_DIR, process.env.PYTHONPATH].filter(Boolean).join(':'), OMP_NUM_THREADS: String(o.threads ?? 1) },
  });
  if (r.status !== 0) {
    const lines = (r.stderr || '').split('\n');
    const line = lines.find((l) => l.startsWith('frugal: '));
    if (line) throw new Error(line.slice('frugal: '.length));
    // An uncaught Python error: its last exception line, and the whole output kept for the traceback.
    const log = join(mkdtempSync(join(tmpdir(), 'frugal-torchrun-')), 'torchrun.log');
    writeFileSync(log, `${r.stdout || ''}\n${r.stderr || ''}`);
    const exc = lines.filter((l) => /^(\[rank\d+\]: )?\w+(\.\w+)*(Error|Exception): /.test(l.trim())).at(-1)?.trim();
    throw new Error(`torchrun exited with ${r.status ?? r.signal}${exc ? `: ${exc}` : ''} (full output: ${log})`);
  }
  const summary = (r.stdout || '').trim().split('\n').reverse().find((l) => l.startsWith('{'));
  const tps = summary ? (JSON.parse(summary) as { tokens_per_s: number }).tokens_per_s : NaN;
  const ckpt = join(out, 'model');
  if (!existsSync(join(ckpt, 'model.safetensors'))) throw new Error(`torchrun finished but wrote no checkpoint under ${ckpt}`);
  return { checkpointDir: ckpt, tokensPerSecond: tps };
}

/**
 * A folder the twin loads for `dir`: `dir` itself when its config.json has the frugal block (any
 * checkpoint this library wrote), else the model as loaded here, saved under `fallback`.
 */
function twinCheckpoint(dir: string, fallback: string): string {
  try {
    const js = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    if (js.frugal && existsSync(join(dir, 'model.safetensors'))) return resolve(dir);
  } catch {
    // Not a frugal folder: converted below.
  }
  saveCheckpoint(fallback, loadModel(dir));
  return fallback;
}
