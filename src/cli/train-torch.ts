// frugal train --engine torch: the same run folder as the native trainer, trained by torchrun with
// the PyTorch twin (src/train/torch-engine.ts). --data may also name a token shard (.tok).
import { tokenizeDocuments, type Tokenizer } from '../data/index.ts';
import type { CausalLM } from '../models/index.ts';
import { checkShard, readTokenShard, trainWithTorch } from '../train/torch-engine.ts';
import { type Flags, type FlagSpec, str, UsageError } from './args.ts';
import { loadSplit, type TrainSettings } from './common.ts';

export const TORCH_FLAGS: Record<string, FlagSpec> = {
  engine: { type: 'string', arg: 'native|torch', help: "training engine: 'native' (this library) or 'torch' (torchrun with the PyTorch twin)", default: 'native' },
  nproc: { type: 'int', arg: 'N', help: 'torch engine: processes (GPUs) per node for torchrun', default: 1 },
  fsdp: { type: 'bool', help: 'torch engine: shard parameters with FSDP instead of DDP' },
};

export function runTorchEngine(f: Flags, s: TrainSettings, model: CausalLM, tok: Tokenizer, out: string): { checkpointDir: string; tokensPerSecond: number } {
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
      evalSequences: s.evalSequences, saveEvery: s.saveEvery, seed: s.seed,
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}
