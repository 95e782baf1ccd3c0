// What the training-style subcommands share: training flags, tokenizer and data setup, Ctrl-C
// handling, run folders and the report.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { ensureDir, recoverDir } from '../io/atomic.ts';
import { latestCheckpoint } from '../train/trainer.ts';
import { loadTrainerState } from '../train/checkpoint.ts';
import { join, resolve } from 'node:path';
import {
  BatchIterator, ByteTokenizer, defaultCorpus, loadTextDataset, loadTokenizer, PackedDataset, splitDocuments, splitTail,
  tokenizeDocuments, type CorpusSplit, type Tokenizer,
} from '../data/index.ts';
import { readMetrics } from '../train/metrics.ts';
import { writeReport } from '../train/report.ts';
import { explicitFlags, type FlagSpec, type Flags, num, positive, nonNegative, UsageError } from './args.ts';

export const TRAIN_FLAGS: Record<string, FlagSpec> = {
  data: { type: 'string', arg: 'PATH', help: 'training text: .txt, .jsonl ({"text": ...} per line) or a folder of them; default: the embedded corpus' },
  tokenizer: { type: 'string', arg: 'bytes|PATH', help: "'bytes' or a tokenizer.json (file or folder)", default: 'bytes' },
  out: { type: 'string', arg: 'DIR', help: 'run folder (metrics.jsonl, report.html, checkpoint in model/); default runs/<command>-<time>' },
  steps: { type: 'int', help: 'optimizer steps', default: 200 },
  batch: { type: 'int', help: 'sequences per micro-batch', default: 16 },
  ctx: { type: 'int', help: 'training sequence length in tokens', default: 128 },
  lr: { type: 'number', help: 'peak learning rate', default: 3e-3 },
  'min-lr': { type: 'number', help: 'final learning rate of the cosine decay (default lr/10)' },
  warmup: { type: 'int', help: 'linear warmup steps (default min(100, steps/10))' },
  clip: { type: 'number', help: 'max global gradient norm, 0 = off', default: 1 },
  accum: { type: 'int', help: 'micro-batches per optimizer step', default: 1 },
  'weight-decay': { type: 'number', help: 'AdamW weight decay', default: 0.1 },
  'eval-every': { type: 'int', help: 'steps between validation evaluations, 0 = only at the end', default: 50 },
  'eval-sequences': { type: 'int', help: 'validation sequences per evaluation', default: 64 },
  'save-every': { type: 'int', help: 'steps between checkpoints, 0 = only at the end', default: 50 },
  seed: { type: 'int', help: 'seed for initialization, data order and sampling', default: 0 },
  resume: { type: 'bool', help: 'continue the run in --out from its last checkpoint (model, tokenizer, data and settings come from it)' },
  overwrite: { type: 'bool', help: 'replace the run already in --out (the old one goes once the new one has a checkpoint)' },
  keep: { type: 'int', help: 'checkpoints to keep: model/ plus keep-1 older ones as checkpoint-STEP/', default: 1 },
  quiet: { type: 'bool', help: 'no progress output' },
};

export interface TrainSettings {
  steps: number;
  batch: number;
  ctx: number;
  lr: number;
  minLr?: number;
  warmup?: number;
  clip: number;
  accum: number;
  weightDecay: number;
  evalEvery: number;
  evalSequences: number;
  saveEvery: number;
  seed: number;
  resume: boolean;
  overwrite: boolean;
  keep: number;
}

export function trainSettings(f: Flags): TrainSettings {
  const int1 = (k: string) => num(f, k, (v) => Number.isInteger(v) && v >= 1, 'an integer >= 1');
  const int0 = (k: string) => num(f, k, (v) => Number.isInteger(v) && v >= 0, 'an integer >= 0');
  return {
    steps: int1('steps'), batch: int1('batch'), ctx: int1('ctx'), lr: num(f, 'lr', positive, '> 0'),
    minLr: f['min-lr'] === undefined ? undefined : num(f, 'min-lr', nonNegative, '>= 0'),
    warmup: f.warmup === undefined ? undefined : int0('warmup'),
    clip: num(f, 'clip', nonNegative, '>= 0'), accum: int1('accum'), weightDecay: num(f, 'weight-decay', nonNegative, '>= 0'),
    evalEvery: int0('eval-every'), evalSequences: int1('eval-sequences'), saveEvery: int0('save-every'), seed: int0('seed'),
    resume: Boolean(f.resume), overwrite: Boolean(f.overwrite), keep: int1('keep'),
  };
}

export function chooseTokenizer(spec: string | undefined): Tokenizer {
  if (!spec || spec === 'bytes') return new ByteTokenizer();
  return loadTokenizer(spec);
}

/** Train/validation split of --data (document split, or the tail of a single document) or the default corpus. */
export function loadSplit(path: string | undefined): CorpusSplit {
  if (!path) return defaultCorpus();
  const ds = loadTextDataset(path);
  return ds.documents.length >= 2 ? splitDocuments(ds.documents, path) : splitTail(ds.documents[0], path);
}

export interface DataSetup {
  train: BatchIterator;
  val: PackedDataset;
  trainTokens: number;
}

export function makeData(split: CorpusSplit, tok: Tokenizer, s: { batch: number; ctx: number; seed: number }, vocabSize: number): DataSetup {
  const trainIds = tokenizeDocuments(split.trainDocs, tok);
  const valIds = tokenizeDocuments(split.validationDocs, tok);
  for (const ids of [trainIds, valIds]) {
    for (const id of ids) {
      if (id >= vocabSize) throw new UsageError(`vocabulary mismatch: the tokenizer produced id ${id} but the model has ${vocabSize} entries; use the model's tokenizer`);
    }
  }
  const val = new PackedDataset(valIds, Math.min(s.ctx, Math.max(1, valIds.length - 1)));
  return { train: new BatchIterator(new PackedDataset(trainIds, s.ctx), { batchSize: s.batch, seed: s.seed }), val, trainTokens: trainIds.length };
}

export function timestamp(): string {
  return new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
}

export function runDir(out: string | undefined, cmd: string): string {
  return resolve(out ?? join('runs', `${cmd}-${timestamp()}`));
}

/**
 * The run folder of a training-style command, checked before any work: a folder that already holds
 * something is refused unless --resume (which needs a checkpoint there) or --overwrite is given.
 * `resumable: false` is for commands without --resume (the refusal then offers --overwrite only);
 * `resumeFrom` replaces the checkpoint test for commands whose run folder is laid out differently.
 */
export function prepareRunDir(out: string | undefined, cmd: string, f: Flags, opts: { resumable?: boolean; resumeFrom?: { has: (dir: string) => boolean; what: string } } = {}): string {
  const dir = runDir(out, cmd);
  if (f.resume && f.overwrite) throw new UsageError('--resume and --overwrite exclude each other: --resume continues the run in --out, --overwrite replaces it');
  try {
    recoverDir(dir);
  } catch {
    // An unreadable parent shows up below as a clear error.
  }
  let st;
  try {
    st = statSync(dir);
  } catch {
    st = undefined;
  }
  if (st && !st.isDirectory()) throw new UsageError(`--out ${dir} is a file; pass a folder for the run`);
  if (f.resume) {
    if (!st || !(opts.resumeFrom ? opts.resumeFrom.has(dir) : latestCheckpoint(dir))) {
      throw new UsageError(`--resume: ${dir} holds no checkpoint to resume from (no ${opts.resumeFrom?.what ?? 'model/trainer_state.json'}); run without --resume to start a new run there`);
    }
    return dir;
  }
  const held = st ? readdirSync(dir) : [];
  if (held.length && !f.overwrite) {
    const shown = held.slice(0, 3).join(', ') + (held.length > 3 ? ', ...' : '');
    const how = opts.resumable === false ? 'pass --overwrite to replace what it holds' : 'pass --resume to continue that run, --overwrite to replace it';
    throw new UsageError(`--out ${dir} already holds files (${shown}); ${how}, or choose another folder`);
  }
  try {
    ensureDir(dir);
  } catch (e) {
    throw new UsageError(`--out: ${(e as Error).message}`);
  }
  return dir;
}

/** Settings a resume takes from the checkpoint unless given again (they change no training loss). */
export const ADJUSTABLE_KEYS = ['eval-every', 'eval-sequences', 'save-every', 'keep'];

/** Flags a resume must match: their values as given to the run (paths resolved), saved in its checkpoint. */
export function runSettings(f: Flags, keys: string[], paths: string[]): Record<string, string | number | boolean | null> {
  const out: Record<string, string | number | boolean | null> = {};
  for (const k of keys) {
    const v = f[k];
    out[k] = v === undefined ? null : paths.includes(k) && typeof v === 'string' && v !== 'bytes' ? resolve(v) : v;
  }
  return out;
}

/**
 * For --resume: the run's checkpoint folder and the flags to continue with, taken from the checkpoint.
 * A flag the user gave that contradicts the checkpoint is an error naming both values.
 */
export function resumeFlags(f: Flags, dir: string, keys: string[], paths: string[], adjustable: string[] = ADJUSTABLE_KEYS): { ckpt: string; flags: Flags; saved?: Record<string, unknown> } {
  const ckpt = latestCheckpoint(dir)!;
  const saved = loadTrainerState(ckpt)?.extra?.settings as Record<string, unknown> | undefined;
  if (!saved) return { ckpt, flags: f };
  const given = runSettings(f, keys, paths);
  const explicit = explicitFlags(f);
  const show = (v: unknown) => (v === null || v === undefined ? '(not set)' : String(v));
  for (const k of keys) {
    if (!explicit.has(k) || !(k in saved) || given[k] === saved[k]) continue;
    throw new UsageError(`--${k} ${show(given[k])} contradicts the checkpoint in ${ckpt}, which was trained with --${k} ${show(saved[k])}; drop --${k} to continue the run as it was`);
  }
  const flags: Flags = { ...f };
  for (const k of [...keys, ...adjustable.filter((a) => !explicit.has(a))]) {
    if (k in saved) flags[k] = saved[k] === null ? undefined : (saved[k] as string | number | boolean);
  }
  return { ckpt, flags, saved };
}

/**
 * Ctrl-C: the first press asks the loop to stop after the current step (it then saves a checkpoint
 * atomically); a second press exits at once, which an atomic save survives too.
 */
export function interruptFlag(): { requested: () => boolean; dispose: () => void } {
  let requested = false;
  const onSig = () => {
    if (requested) process.exit(130);
    requested = true;
    process.stderr.write('\nfrugal: interrupt received; stopping after this step (press Ctrl-C again to quit now)\n');
  };
  process.on('SIGINT', onSig);
  return { requested: () => requested, dispose: () => void process.off('SIGINT', onSig) };
}

/** report.html for one run folder (or several runs under a parent). */
export function reportFor(dir: string, title: string, runs: { name: string; dir: string }[], table?: { headers: string[]; rows: (string | number)[][] }): string {
  return writeReport(dir, { title, runs: runs.map((r) => ({ name: r.name, records: readMetrics(join(r.dir, 'metrics.jsonl')) })), table });
}

/** Bytes of a folder's files (not recursive into sub-folders of the checkpoint). */
export function folderBytes(dir: string, only?: (name: string) => boolean): number {
  if (!existsSync(dir)) return 0;
  return readdirSync(dir).filter((n) => !only || only(n)).reduce((s, n) => {
    const st = statSync(join(dir, n));
    return s + (st.isFile() ? st.size : 0);
  }, 0);
}

export { fmtBytes, fmtCount } from '../io/format.ts';
