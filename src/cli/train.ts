// frugal train: trains a model (preset, config file, or an existing checkpoint) on a text corpus.
import { type CommandSpec, type Flags, str, UsageError } from './args.ts';
import {
  ADJUSTABLE_KEYS, chooseTokenizer, interruptFlag, loadSplit, makeData, prepareRunDir, reportFor, resumeFlags, runSettings, TRAIN_FLAGS, trainSettings,
} from './common.ts';
import { modelFromSpec } from './model-spec.ts';
import { loadModel, loadModelTokenizer } from '../train/checkpoint.ts';
import { familyHooks } from '../train/hooks.ts';
import { train } from '../train/trainer.ts';
import { ByteTokenizer } from '../data/index.ts';
import { existsSync, statSync } from 'node:fs';
import { DEVICE_FLAGS, useDevice } from './device.ts';
import { chooseEngine, runTorchEngine, STOP_FLAG, stopAfter, TORCH_FLAGS } from './train-torch.ts';

/** What a resumed run takes from its checkpoint; giving one of these with another value is an error. */
export const RESUME_KEYS = ['preset', 'config', 'model', 'tokenizer', 'data', 'steps', 'batch', 'ctx', 'lr', 'min-lr', 'warmup', 'clip', 'accum', 'weight-decay', 'seed'];
export const PATH_KEYS = ['config', 'model', 'tokenizer', 'data'];

export const spec: CommandSpec = {
  name: 'train',
  summary: 'train a language model and save checkpoints, metrics and an HTML report',
  usage: 'frugal train [--preset NAME | --config FILE.json | --model DIR] [--data PATH] [--out DIR] [--device cpu|webgpu] [--threads N] [options]',
  flags: {
    preset: { type: 'string', arg: 'NAME', help: 'model preset (see frugal info --presets)', default: 'tiny-dense' },
    config: { type: 'string', arg: 'FILE', help: 'model config JSON (frugal ModelConfig fields) instead of a preset' },
    model: { type: 'string', arg: 'DIR', help: 'start from the weights of this checkpoint folder' },
    ...TRAIN_FLAGS,
    ...DEVICE_FLAGS,
    ...TORCH_FLAGS,
    ...STOP_FLAG,
  },
};

export async function run(given: Flags): Promise<number> {
  const out = prepareRunDir(str(given, 'out'), 'train', given);
  // A resumed run is rebuilt from its checkpoint: architecture, weights, tokenizer, data and settings.
  const resumed = given.resume ? resumeFlags(given, out, RESUME_KEYS, PATH_KEYS) : undefined;
  const f = resumed?.flags ?? given;
  const s = trainSettings(f);
  const device = await useDevice(f);
  const modelDir = str(f, 'model');
  let tok;
  let model;
  if (resumed) {
    tok = loadModelTokenizer(resumed.ckpt) ?? new ByteTokenizer();
    model = loadModel(resumed.ckpt);
  } else {
    tok = (modelDir && existsSync(modelDir) && statSync(modelDir).isDirectory() ? loadModelTokenizer(modelDir) : undefined) ?? chooseTokenizer(str(f, 'tokenizer'));
    // The preset is recorded only when it chose the model (not under --config or --model).
    if (modelDir || str(f, 'config')) f.preset = undefined;
    model = (await modelFromSpec(modelDir ?? str(f, 'config') ?? str(f, 'preset')!, tok.vocabSize, s.seed)).model;
  }
  if (s.ctx > model.config.maxPositions) {
    throw new UsageError(`--ctx ${s.ctx} is longer than the model's context of ${model.config.maxPositions} positions; pass --ctx ${model.config.maxPositions} or less`);
  }
  const engine = chooseEngine(given, resumed?.ckpt);
  if (engine === 'torch') {
    const settings = { ...runSettings(f, [...RESUME_KEYS, ...ADJUSTABLE_KEYS], PATH_KEYS) };
    const r = runTorchEngine(f, s, model, tok, out, { resumeFrom: resumed?.ckpt, extra: { settings } });
    console.log(`finished (torch engine) at step ${Math.min(s.steps, stopAfter(f) ?? s.steps)}/${s.steps}; ${r.tokensPerSecond.toFixed(0)} tokens/s\ncheckpoint: ${r.checkpointDir}\nreport: ${reportFor(out, `frugal train: ${out}`, [{ name: 'train', dir: out }])}`);
    return 0;
  }
  model = await model.moveTo(device);
  const data = makeData(loadSplit(str(f, 'data')), tok, s, model.config.vocabSize);
  if (resumed?.saved && resumed.saved.trainTokens !== undefined && resumed.saved.trainTokens !== data.trainTokens) {
    throw new UsageError(`the training data changed since the checkpoint in ${resumed.ckpt} (${data.trainTokens} tokens now, ${resumed.saved.trainTokens} then); an exact resume needs the same data`);
  }
  const settings = { ...runSettings(f, [...RESUME_KEYS, ...ADJUSTABLE_KEYS], PATH_KEYS), trainTokens: data.trainTokens };
  const stop = interruptFlag();
  try {
    const r = await train({
      overwrite: s.overwrite, keep: s.keep, extra: { settings },
      model, data: data.train, valData: data.val, evalSequences: s.evalSequences, steps: s.steps, lr: s.lr, minLr: s.minLr,
      warmup: s.warmup, clip: s.clip, accum: s.accum, weightDecay: s.weightDecay, evalEvery: s.evalEvery, saveEvery: s.saveEvery,
      outDir: out, seed: s.seed, tokenizer: tok, resume: s.resume, stopAfter: stopAfter(f), shouldStop: stop.requested, hooks: familyHooks(model),
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
