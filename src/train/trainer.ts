// The training loop: AdamW (or any optimizer with the same surface), warmup + cosine schedule,
// gradient accumulation and clipping, periodic evaluation, atomic checkpoints with exact resume
// (weights, optimizer moments, data position, RNG), a JSONL metrics log and a progress line.
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ensureDir, promoteDir, recoverDir, stagingPath } from '../io/atomic.ts';
import { loadWeights } from '../io/hf-folder.ts';
import type { BatchIterator, PackedDataset, Tokenizer } from '../data/index.ts';
import type { CausalLM } from '../models/index.ts';
import { loadStateDict } from '../models/hf.ts';
import { backward, fromArray, noGrad, Rng, type Tensor, tidy } from '../tensor/index.ts';
import {
  loadOptimizerState, loadTrainerState, type OptimizerSnapshot, saveCheckpointAsync, type TrainerState,
} from './checkpoint.ts';
import { type EvalRecord, MetricsLog, type StepRecord } from './metrics.ts';
import { AdamW, clipFactor, gradNorm } from './optim.ts';
import { checkSchedule, lrAt } from './schedule.ts';
import { Progress, type ProgressMode } from './progress.ts';

/** What the loop needs from an optimizer; AdamW (with its lazy row-sparse path) is the default. */
export interface Optimizer {
  lr: number;
  update(gradScale: number): void;
  /** Update with the global-norm clip computed on the device; returns f32 [2] = [factor, norm] (AdamW.updateClipped). */
  updateClipped?(maxNorm: number, gradScale: number): Tensor;
  zeroGrad(): void;
  state(): OptimizerSnapshot;
  loadState(step: number, moments: OptimizerSnapshot['moments']): void;
}

/** Plug-in hooks around each update (FBI flip-flop tracking, PEER expert usage, ...). */
export interface TrainHook {
  beforeUpdate?(): void | Promise<void>;
  /** Extra per-step metrics, merged into the step record. */
  afterUpdate?(): Record<string, number> | Promise<Record<string, number>>;
}

/** Loss of one micro-batch; default: the model's next-token cross-entropy. */
export type LossFn = (model: CausalLM, inputs: Tensor, targets: Tensor, rng: Rng) => Tensor;

export interface TrainOpts {
  model: CausalLM;
  data: BatchIterator;
  /** Validation sequences; the first evalSequences of them (in order) are scored at each evaluation. */
  valData?: PackedDataset;
  evalSequences?: number;
  steps: number;
  lr: number;
  minLr?: number;
  warmup?: number;
  /** Max global gradient norm (0 = no clipping). */
  clip?: number;
  accum?: number;
  weightDecay?: number;
  evalEvery?: number;
  saveEvery?: number;
  /** Run folder: metrics.jsonl and the latest checkpoint under model/. Without it nothing is written. */
  outDir?: string;
  seed?: number;
  lossFn?: LossFn;
  makeOptimizer?: (params: [string, Tensor][], opts: { lr: number; weightDecay: number }) => Optimizer;
  hooks?: TrainHook[];
  tokenizer?: Tokenizer;
  /** Continue from the run folder's latest checkpoint; an error when it holds none. */
  resume?: boolean;
  /**
   * outDir holds an older run to replace: the new run is written beside it and takes its place
   * only once its first checkpoint is on disk, so a failing new run never costs the old one.
   */
  overwrite?: boolean;
  /** Checkpoints to keep: model/ (the latest) plus keep-1 older ones as checkpoint-STEP/. Default 1. */
  keep?: number;
  /** Saved in trainer_state.json (extra), e.g. the settings a resume must match. */
  extra?: Record<string, unknown>;
  /** Stop (with a checkpoint) after this many steps although the schedule spans `steps`. */
  stopAfter?: number;
  /** Polled between steps; true stops the run after saving a checkpoint (Ctrl-C). */
  shouldStop?: () => boolean;
  onStep?: (rec: StepRecord) => void;
  onEval?: (rec: EvalRecord) => void;
  progress?: ProgressMode;
  label?: string;
}

export interface TrainResult {
  step: number;
  losses: number[];
  evals: EvalRecord[];
  interrupted: boolean;
  /** Mean training throughput over this call's steps. */
  tokensPerSecond: number;
  checkpointDir?: string;
}

const int = (v: number, what: string, min: number) => {
  if (!Number.isInteger(v) || v < min) throw new Error(`${what} must be an integer >= ${min}, got ${v}`);
  return v;
};

export async function train(o: TrainOpts): Promise<TrainResult> {
  const minLr = o.minLr ?? o.lr / 10;
  const warmup = o.warmup ?? Math.min(100, Math.floor(o.steps / 10));
  checkSchedule({ lr: o.lr, minLr, warmup, steps: o.steps });
  const accum = int(o.accum ?? 1, 'gradient accumulation', 1);
  const clip = o.clip ?? 1.0;
  const evalEvery = int(o.evalEvery ?? 0, 'evalEvery', 0);
  const saveEvery = int(o.saveEvery ?? 0, 'saveEvery', 0);
  const weightDecay = o.weightDecay ?? 0.1;
  const { model, data } = o;
  const lossFn: LossFn = o.lossFn ?? ((m, x, y) => m.loss(x, y));
  const params = model.namedParameters();
  const opt = o.makeOptimizer?.(params, { lr: o.lr, weightDecay }) ??
    new AdamW(params, { lr: o.lr, weightDecay, noDecay: (name, t) => t.shape.length < 2 || name.endsWith('bias') });
  const rng = new Rng(o.seed ?? 0);
  const hooks = o.hooks ?? [];

  const keep = int(o.keep ?? 1, 'keep', 1);
  const finalDir = o.outDir ? resolve(o.outDir) : undefined;
  if (o.resume && o.overwrite) throw new Error('resume and overwrite exclude each other: resume continues the run in the folder, overwrite replaces it');
  // With overwrite the run lives in a staging sibling until its first checkpoint is written.
  let staging = finalDir && o.overwrite && existsSync(finalDir) ? stagingPath(finalDir) : undefined;
  let outDir = staging ?? finalDir;
  let ckptDir = outDir ? join(outDir, 'model') : undefined;
  if (outDir) ensureDir(outDir);
  let log = outDir ? new MetricsLog(join(outDir, 'metrics.jsonl')) : undefined;

  let step = 0;
  let tokens = 0;
  if (o.resume) {
    const from = finalDir ? latestCheckpoint(finalDir) : undefined;
    if (!from) throw new Error(`cannot resume: ${finalDir ?? 'the run (no outDir)'} holds no checkpoint with a trainer state; start the run without resume`);
    const st = resumeInto(from, model, opt, o, rng);
    step = st.step;
    tokens = st.tokens;
    log?.truncateAfter(step);
  } else if (log) {
    log.truncateAfter(-1);
  }

  const state = (): TrainerState => ({
    step, totalSteps: o.steps, data: data.state(), rng: rng.getState(), tokens, tokenizerId: o.tokenizer?.id(),
    ...(o.extra ? { extra: o.extra } : {}),
  });
  const save = async () => {
    if (!ckptDir || !outDir) return;
    const prev = keep > 1 ? savedStep(ckptDir) : undefined;
    // The records up to this step reach the disk before the checkpoint that covers them.
    log?.sync();
    await saveCheckpointAsync(ckptDir, model, {
      tokenizer: o.tokenizer, optimizer: opt.state(), state: state(),
      retireTo: prev !== undefined && prev !== step ? join(outDir, `checkpoint-${prev}`) : undefined,
    });
    if (keep > 1) pruneCheckpoints(outDir, keep - 1);
    if (staging && finalDir) {
      promoteDir(staging, finalDir);
      staging = undefined;
      outDir = finalDir;
      ckptDir = join(finalDir, 'model');
      log = new MetricsLog(join(finalDir, 'metrics.jsonl'));
    }
  };

  try {
    return await loop();
  } finally {
    // A new run that never reached its first checkpoint leaves the old run as it was.
    if (staging) rmSync(staging, { recursive: true, force: true });
  }

  async function loop(): Promise<TrainResult> {
    const losses: number[] = [];
    const evals: EvalRecord[] = [];
    const end = Math.min(o.steps, o.stopAfter ?? o.steps);
    const progress = new Progress(o.progress ?? 'none', end, o.label ?? 'train');
    progress.start(step);
    const t0 = performance.now();
    const stepsAtStart = step;
    let tokensThisCall = 0;
    let interrupted = false;
    model.train();
    while (step < end) {
      // CPU readbacks resolve as microtasks, which never let the event loop run: yield one macrotask
      // per step so signal handlers (Ctrl-C) and timers get their turn.
      await new Promise((r) => setImmediate(r));
      if (o.shouldStop?.()) {
        interrupted = true;
        break;
      }
      const ts = performance.now();
      opt.lr = lrAt(step, { lr: o.lr, minLr, warmup, steps: o.steps });
      let lossSum = 0;
      let stepTokens = 0;
      for (let a = 0; a < accum; a++) {
        const b = data.next();
        const l = tidy(() => {
          const x = fromArray(b.inputs, [b.batch, b.ctx], model.device);
          const y = fromArray(b.targets, [b.batch * b.ctx], model.device);
          const loss = lossFn(model, x, y, rng);
          backward(loss);
          return loss;
        });
        lossSum += await l.item();
        l.dispose();
        stepTokens += b.batch * b.ctx;
      }
      const diverged = (norm: number) =>
        new Error(`training diverged at step ${step + 1} (loss ${lossSum / accum}, grad norm ${norm}); lower the learning rate or enable clipping`);
      if (!Number.isFinite(lossSum)) throw diverged(NaN);
      for (const h of hooks) await h.beforeUpdate?.();
      let norm: number;
      if (opt.updateClipped) {
        // The global norm and clip factor are computed on the device inside the update; the norm is
        // read back after it, for the metrics (a non-finite norm still stops the run).
        const clipOut = opt.updateClipped(clip, 1 / accum);
        norm = (await clipOut.data())[1];
        clipOut.dispose();
        if (!Number.isFinite(norm)) throw diverged(norm);
      } else {
        norm = (await gradNorm(model.parameters())) / accum;
        if (!Number.isFinite(norm)) throw diverged(norm);
        opt.update(clipFactor(norm, clip) / accum);
      }
      opt.zeroGrad();
      const extras: Record<string, number> = {};
      for (const h of hooks) Object.assign(extras, await h.afterUpdate?.());
      step++;
      tokens += stepTokens;
      tokensThisCall += stepTokens;
      const dt = (performance.now() - ts) / 1000;
      const rec: StepRecord = {
        type: 'step', step, loss: lossSum / accum, lr: opt.lr, grad_norm: norm, tokens_per_s: stepTokens / dt, tokens, ...extras,
      };
      losses.push(rec.loss);
      log?.append(rec);
      o.onStep?.(rec);
      progress.update(step, rec.loss, rec.tokens_per_s);

      if (o.valData && ((evalEvery && step % evalEvery === 0) || step === o.steps)) {
        const ev = await validate(model, o.valData, o.evalSequences ?? 64, data.batchSize, step);
        model.train();
        evals.push(ev);
        log?.append(ev);
        o.onEval?.(ev);
        progress.note(`step ${step}: validation loss ${ev.val_loss.toFixed(4)}, perplexity ${ev.val_ppl.toFixed(2)}`);
      }
      if ((saveEvery && step % saveEvery === 0) || step === end) await save();
    }
    if (interrupted && step > stepsAtStart) await save();
    progress.done();
    const secs = (performance.now() - t0) / 1000;
    return { step, losses, evals, interrupted, tokensPerSecond: tokensThisCall / Math.max(secs, 1e-9), checkpointDir: ckptDir };
  }
}

/** Step recorded in a checkpoint folder's trainer state, or undefined. */
function savedStep(dir: string): number | undefined {
  try {
    return loadTrainerState(dir)?.step;
  } catch {
    return undefined;
  }
}

/** checkpoint-STEP/ folders of a run, newest first. */
function olderCheckpoints(runDir: string): { step: number; dir: string }[] {
  let names: string[];
  try {
    names = readdirSync(runDir);
  } catch {
    return [];
  }
  return names.map((n) => /^checkpoint-(\d+)$/.exec(n)).filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ step: Number(m[1]), dir: join(runDir, m[0]) })).sort((a, b) => b.step - a.step);
}

function pruneCheckpoints(runDir: string, keepOlder: number): void {
  for (const c of olderCheckpoints(runDir).slice(keepOlder)) rmSync(c.dir, { recursive: true, force: true });
}

/**
 * The checkpoint a resume continues from: model/ when it holds a trainer state, else the newest
 * checkpoint-STEP/ (a run whose latest save was lost still has its older ones).
 */
export function latestCheckpoint(runDir: string): string | undefined {
  const candidates = [join(runDir, 'model'), ...olderCheckpoints(runDir).map((c) => c.dir)];
  for (const dir of candidates) {
    recoverDir(dir);
    if (existsSync(join(dir, 'trainer_state.json'))) return dir;
  }
  return undefined;
}

function resumeInto(dir: string, model: CausalLM, opt: Optimizer, o: TrainOpts, rng: Rng): TrainerState {
  const st = loadTrainerState(dir)!;
  if (o.tokenizer && st.tokenizerId && st.tokenizerId !== o.tokenizer.id()) {
    throw new Error(`cannot resume ${dir}: it was trained with a different tokenizer (${st.tokenizerId} vs ${o.tokenizer.id()})`);
  }
  // Weights come from the checkpoint (the caller's model supplies the architecture).
  loadStateDict(model, loadWeights(dir).tensors, `cannot resume ${dir}: checkpoint`);
  // setTensor swapped the parameter tensors: rebind the optimizer's parameter list.
  const fresh = new Map(model.namedParameters());
  const params = (opt as { params?: [string, Tensor][] }).params;
  if (params) for (const p of params) p[1] = fresh.get(p[0])!;
  const os = loadOptimizerState(dir, model.device);
  if (os) opt.loadState(os.step, os.moments);
  if (st.data) o.data.restore(st.data);
  rng.setState(st.rng);
  return st;
}

/** Mean cross-entropy over the first `maxSeq` validation sequences, in order, without gradients. */
async function validate(model: CausalLM, val: PackedDataset, maxSeq: number, batch: number, step: number): Promise<EvalRecord> {
  model.eval();
  const n = Math.min(maxSeq, val.numSequences);
  let total = 0;
  let count = 0;
  for (let s = 0; s < n; s += batch) {
    const b = Math.min(batch, n - s);
    const inputs = new Int32Array(b * val.ctx);
    const targets = new Int32Array(b * val.ctx);
    for (let i = 0; i < b; i++) val.write(s + i, inputs, targets, i * val.ctx);
    const l = tidy(() => noGrad(() => model.loss(fromArray(inputs, [b, val.ctx], model.device), fromArray(targets, [b * val.ctx], model.device))));
    total += (await l.item()) * b * val.ctx;
    count += b * val.ctx;
  }
  const loss = total / Math.max(count, 1);
  return { type: 'eval', step, val_loss: loss, val_ppl: Math.exp(loss) };
}
