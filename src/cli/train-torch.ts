// frugal train --engine torch: the same run folder as the native trainer, trained by torchrun with
// the PyTorch twin (src/train/torch-engine.ts), for train and distill, new or resumed. --data may also
// name a token shard (.tok).
import { tokenizeDocuments, type Tokenizer } from '../data/index.ts';
import type { CausalLM } from '../models/index.ts';
import { checkShard, readTokenShard, trainWithTorch } from '../train/torch-engine.ts';
import { explicitFlags, type Flags, type FlagSpec, str, UsageError } from './args.ts';
import { loadTrainerState } from '../train/checkpoint.ts';
import { loadSplit, type TrainSettings } from './common.ts';

export const TORCH_FLAGS: Record<string, FlagSpec> = {
  engine: { type: 'string', arg: 'native|torch', help: "training engine: 'native' (this library) or 'torch' (torchrun with the PyTorch twin)", default: 'native' },
  nproc: { type: 'int', arg: 'N', help: 'torch engine: processes (GPUs) per node for torchrun', default: 1 },
  fsdp: { type: 'bool', help: 'torch engine: shard parameters with FSDP instead of DDP' },
};

/** --stop-after: both engines (train and distill). */
export const STOP_FLAG: Record<string, FlagSpec> = {
  'stop-after': { type: 'int', arg: 'N', help: 'stop with a checkpoint after step N of the --steps schedule (continue it later with --resume)' },
};

/** --stop-after N as a step count, or undefined. */
export function stopAfter(f: Flags): number | undefined {
  if (f['stop-after'] === undefined) return undefined;
  const v = Number(f['stop-after']);
  if (!Number.isInteger(v) || v < 1) throw new UsageError(`--stop-after must be an integer >= 1, got ${f['stop-after']}`);
  return v;
}

export interface TorchRunExtras {
  /** The checkpoint a --resume continues from. */
  resumeFrom?: string;
  teacher?: { dir: string; gtWeight: number };
  /** Saved in trainer_state.json (the settings a resume must match). */
  extra?: Record<string, unknown>;
}

/** The engine of the checkpoint a resume continues from ('torch' when --engine torch wrote it). */
export function checkpointEngine(ckpt: string): 'native' | 'torch' {
  return loadTrainerState(ckpt)?.extra?.engine === 'torch' ? 'torch' : 'native';
}

/**
 * The engine of this run: --engine, or for --resume the one that wrote the checkpoint (giving the
 * other engine is an error: optimizer state and data position are stored per engine).
 */
export function chooseEngine(f: Flags, resumedCkpt: string | undefined): 'native' | 'torch' {
  const given = str(f, 'engine') ?? 'native';
  if (given !== 'native' && given !== 'torch') throw new UsageError(`--engine must be native or torch, got ${given}`);
  if (!resumedCkpt) return given;
  const was = checkpointEngine(resumedCkpt);
  if (explicitFlags(f).has('engine') && given !== was) {
    throw new UsageError(`--engine ${given} contradicts the checkpoint in ${resumedCkpt}, which the ${was} engine wrote; drop --engine to continue the run as it was`);
  }
  return was;
}

export function runTorchEngine(f: Flags, s: TrainSettings, model: CausalLM, tok: Tokenizer, out: string, x: TorchRunExtras = {}): { checkpointDir: string; tokensPerSecond: number } {
  if (s.keep !== 1) throw new UsageError(`--keep ${s.keep}: the torch engine keeps only the latest checkpoint (model/); drop --keep`);
  const dataPath = str(f, 'data');
  let train: Int32Array, val: Int32Array | undefined;
  try {
    if (dataPath?.endsWith('.tok')) {
      const shard = readTokenShard(dataPath);
      checkShard(shard, tok, model.config.vocabSize, dataPath);
      train = shard.tokens;
    } else {
      const split = loadSplit(dataPath);
      train = tokenizeDocuments(split.trainDocs, tok);
      val = tokenizeDocuments(split.validationDocs, tok);
      for (const ids of [train, val]) for (const id of ids) {
        if (id >= model.config.vocabSize) throw new Error(`vocabulary mismatch: the tokenizer produced id ${id} but the model has ${model.config.vocabSize} entries; use the model's tokenizer`);
      }
    }
    const nproc = Number(f.nproc ?? 1);
    return trainWithTorch({
      model, tokenizer: tok, train, val, outDir: out, nproc, fsdp: Boolean(f.fsdp), steps: s.steps, batch: s.batch, ctx: s.ctx,
      lr: s.lr, minLr: s.minLr, warmup: s.warmup, clip: s.clip, accum: s.accum, weightDecay: s.weightDecay, evalEvery: s.evalEvery,
      evalSequences: s.evalSequences, saveEvery: s.saveEvery, seed: s.seed, overwrite: s.overwrite, resumeFrom: x.resumeFrom,
      teacher: x.teacher, extra: x.extra, stopAfter: stopAfter(f),
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}
