// frugal distill: autoregressive distillation (FBI-LLM, the loss is src/train/distill.ts) of a student
// from a teacher checkpoint.
import { existsSync, statSync } from 'node:fs';
import { loadModel, loadModelTokenizer } from '../train/checkpoint.ts';
import { distillLoss } from '../train/distill.ts';
import { familyHooks } from '../train/hooks.ts';
import { train } from '../train/trainer.ts';
import type { CausalLM } from '../models/index.ts';
import { type CommandSpec, type Flags, need, num, str, UsageError } from './args.ts';
import {
  ADJUSTABLE_KEYS, chooseTokenizer, interruptFlag, loadSplit, makeData, prepareRunDir, reportFor, resumeFlags, runSettings, TRAIN_FLAGS, trainSettings,
} from './common.ts';
import { modelFromSpec } from './model-spec.ts';
import { DEVICE_FLAGS, useDevice } from './device.ts';
import { chooseEngine, runTorchEngine, STOP_FLAG, stopAfter, TORCH_FLAGS } from './train-torch.ts';

export const spec: CommandSpec = {
  name: 'distill',
  summary: 'train a student (e.g. an FBI 1-bit model) from a full-precision teacher by autoregressive distillation',
  usage: 'frugal distill --teacher DIR --student PRESET|DIR [--gt-weight W] [--data PATH] [--out DIR] [--device cpu|webgpu] [--threads N] [--engine torch [--nproc N] [--fsdp]] [options]',
  flags: {
    teacher: { type: 'string', arg: 'DIR', help: 'teacher checkpoint folder (any full-precision model this build loads)' },
    student: { type: 'string', arg: 'PRESET|DIR', help: 'student preset, config .json, or checkpoint folder', default: 'tiny-fbi' },
    'gt-weight': { type: 'number', help: 'weight of the ground-truth cross-entropy mixed into the loss (0 = pure distillation, as the paper)', default: 0 },
    ...TRAIN_FLAGS,
    ...DEVICE_FLAGS,
    ...TORCH_FLAGS,
    ...STOP_FLAG,
  },
};

function checkSameVocabulary(teacher: CausalLM, student: CausalLM): void {
  if (teacher.config.vocabSize !== student.config.vocabSize) {
    throw new UsageError(`vocabulary mismatch: teacher has ${teacher.config.vocabSize} tokens, student ${student.config.vocabSize}; distillation needs one shared vocabulary`);
  }
}

const RESUME_KEYS = ['teacher', 'student', 'gt-weight', 'tokenizer', 'data', 'steps', 'batch', 'ctx', 'lr', 'min-lr', 'warmup', 'clip', 'accum', 'weight-decay', 'seed'];
const PATH_KEYS = ['teacher', 'tokenizer', 'data'];

export async function run(given: Flags): Promise<number> {
  const out = prepareRunDir(str(given, 'out'), 'distill', given);
  // A resumed run takes its student, teacher, data and settings from the checkpoint.
  const resumed = given.resume ? resumeFlags(given, out, RESUME_KEYS, PATH_KEYS) : undefined;
  const f = resumed?.flags ?? given;
  const s = trainSettings(f);
  const device = await useDevice(f);
  const gt = num(f, 'gt-weight', (v) => v >= 0 && v <= 1, 'in [0, 1]');
  const teacherDir = need(f, 'teacher', 'distill');
  const teacher = await loadModel(teacherDir).moveTo(device);
  const tok = loadModelTokenizer(teacherDir) ?? chooseTokenizer(str(f, 'tokenizer'));
  const studentSpec = str(f, 'student')!;
  if (existsSync(studentSpec) && statSync(studentSpec).isDirectory()) {
    const st = loadModelTokenizer(studentSpec);
    if (st && st.id() !== tok.id()) throw new UsageError(`vocabulary mismatch: student ${studentSpec} and teacher ${teacherDir} use different tokenizers`);
  }
  const model = resumed ? loadModel(resumed.ckpt) : (await modelFromSpec(studentSpec, teacher.config.vocabSize, s.seed)).model;
  checkSameVocabulary(teacher, model);
  if (s.ctx > model.config.maxPositions) {
    throw new UsageError(`--ctx ${s.ctx} is longer than the student's context of ${model.config.maxPositions} positions; pass --ctx ${model.config.maxPositions} or less`);
  }
  const engine = chooseEngine(given, resumed?.ckpt);
  if (engine === 'torch') {
    const settings = runSettings(f, [...RESUME_KEYS, ...ADJUSTABLE_KEYS], PATH_KEYS);
    const r = runTorchEngine(f, s, model, tok, out, { resumeFrom: resumed?.ckpt, teacher: { dir: teacherDir, gtWeight: gt }, extra: { settings } });
    console.log(`finished (torch engine) at step ${Math.min(s.steps, stopAfter(f) ?? s.steps)}/${s.steps}; ${r.tokensPerSecond.toFixed(0)} tokens/s\ncheckpoint: ${r.checkpointDir}\nreport: ${reportFor(out, `frugal distill: ${out}`, [{ name: 'student', dir: out }])}`);
    return 0;
  }
  await model.moveTo(device);
  const data = makeData(loadSplit(str(f, 'data')), tok, s, model.config.vocabSize);
  const settings = { ...runSettings(f, [...RESUME_KEYS, ...ADJUSTABLE_KEYS], PATH_KEYS), trainTokens: data.trainTokens };
  const stop = interruptFlag();
  try {
    const r = await train({
      overwrite: s.overwrite, keep: s.keep, extra: { settings },
      model, data: data.train, valData: data.val, evalSequences: s.evalSequences, steps: s.steps, lr: s.lr, minLr: s.minLr,
      warmup: s.warmup, clip: s.clip, accum: s.accum, weightDecay: s.weightDecay, evalEvery: s.evalEvery, saveEvery: s.saveEvery,
      outDir: out, seed: s.seed, tokenizer: tok, resume: s.resume, stopAfter: stopAfter(f), shouldStop: stop.requested, lossFn: distillLoss(teacher, gt),
      hooks: familyHooks(model), progress: f.quiet ? 'none' : 'bar', label: 'distill',
    });
    const report = reportFor(out, `frugal distill: ${out}`, [{ name: 'student', dir: out }]);
    const last = r.evals.at(-1);
    console.log(`${r.interrupted ? 'interrupted' : 'finished'} at step ${r.step}/${s.steps}` +
      (last ? `; student validation perplexity ${last.val_ppl.toFixed(3)}` : '') + `; ${r.tokensPerSecond.toFixed(0)} tokens/s`);
    console.log(`checkpoint: ${r.checkpointDir}`);
    console.log(`report: ${report}`);
    return r.interrupted ? 130 : 0;
  } finally {
    stop.dispose();
  }
}
