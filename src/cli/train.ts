// frugal train: trains a model (preset, config file, or an existing checkpoint) on a text corpus.
import { type CommandSpec, type Flags, str, UsageError } from './args.ts';
import {
  chooseTokenizer, interruptFlag, loadSplit, makeData, reportFor, runDir, TRAIN_FLAGS, trainSettings,
} from './common.ts';
import { familyHooks, modelFromSpec } from './model-spec.ts';
import { loadModelTokenizer } from '../train/checkpoint.ts';
import { train } from '../train/trainer.ts';
import { existsSync, statSync } from 'node:fs';
import { runTorchEngine, TORCH_FLAGS } from './train-torch.ts';

export const spec: CommandSpec = {
  name: 'train',
  summary: 'train a language model and save checkpoints, metrics and an HTML report',
  usage: 'frugal train [--preset NAME | --config FILE.json | --model DIR] [--data PATH] [--out DIR] [options]',
  flags: {
    preset: { type: 'string', arg: 'NAME', help: 'model preset (see frugal info --presets)', default: 'tiny-dense' },
    config: { type: 'string', arg: 'FILE', help: 'model config JSON (frugal ModelConfig fields) instead of a preset' },
    model: { type: 'string', arg: 'DIR', help: 'start from the weights of this checkpoint folder' },
    ...TRAIN_FLAGS,
    ...TORCH_FLAGS,
  },
};

export async function run(f: Flags): Promise<number> {
  const s = trainSettings(f);
  const modelDir = str(f, 'model');
  const tok = (modelDir && existsSync(modelDir) && statSync(modelDir).isDirectory() ? loadModelTokenizer(modelDir) : undefined) ?? chooseTokenizer(str(f, 'tokenizer'));
  const { model } = await modelFromSpec(modelDir ?? str(f, 'config') ?? str(f, 'preset')!, tok.vocabSize, s.seed);
  if (str(f, 'engine') === 'torch') {
    const out = runDir(str(f, 'out'), 'train');
    const r = runTorchEngine(f, s, model, tok, out);
    console.log(`finished (torch engine) at step ${s.steps}; ${r.tokensPerSecond.toFixed(0)} tokens/s\ncheckpoint: ${r.checkpointDir}\nreport: ${reportFor(out, `frugal train: ${out}`, [{ name: 'train', dir: out }])}`);
    return 0;
  }
  if (str(f, 'engine') !== 'native') throw new UsageError(`--engine must be native or torch, got ${str(f, 'engine')}`);
  const data = makeData(loadSplit(str(f, 'data')), tok, s, model.config.vocabSize);
  const out = runDir(str(f, 'out'), 'train');
  const stop = interruptFlag();
  try {
    const r = await train({
      model, data: data.train, valData: data.val, evalSequences: s.evalSequences, steps: s.steps, lr: s.lr, minLr: s.minLr,
      warmup: s.warmup, clip: s.clip, accum: s.accum, weightDecay: s.weightDecay, evalEvery: s.evalEvery, saveEvery: s.saveEvery,
      outDir: out, seed: s.seed, tokenizer: tok, resume: s.resume, shouldStop: stop.requested, hooks: familyHooks(model),
      progress: f.quiet ? 'none' : 'bar', label: 'train',
    });
    const report = reportFor(out, `frugal train: ${out}`, [{ name: 'train', dir: out }]);
    const last = r.evals.at(-1);
    console.log(`${r.interrupted ? 'interrupted' : 'finished'} at step ${r.step}/${s.steps}` +
      (last ? `; validation perplexity ${last.val_ppl.toFixed(3)}` : '') + `; ${r.tokensPerSecond.toFixed(0)} tokens/s`);
    console.log(`checkpoint: ${r.checkpointDir}`);
    console.log(`report: ${report}`);
    return r.interrupted ? 130 : 0;
  } finally {
    stop.dispose();
  }
}
