// Training throughput of one full step (forward, backward, clip, AdamW) of the dense reference model,
// beside PyTorch running the identical model in the same run (CPU; CUDA with --device webgpu, where
// --family fbi|ttt|peer times the ~125M preset of that family beside its frugal_lm_torch twin).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { CausalLM, type ModelConfig } from '../src/models/index.ts';
import { PRESETS as MODEL_PRESETS } from '../src/models/presets.ts';
import { backward, fromArray, Rng, tidy } from '../src/tensor/index.ts';
import { AdamW } from '../src/train/optim.ts';
import type { DeviceName } from '../src/backend/types.ts';
import { captureWebGPUStep, syncWebGPU } from '../src/backend/webgpu/index.ts';
import { finishWebGPU, releasePool, startWebGPU, torchGpuPeer } from './matmul.ts';
import { runBenchIfMain } from './kit.ts';

export const REFERENCE = { vocab: 8192, dim: 256, layers: 6, heads: 8, ffn: 768, ctx: 256, batch: 8 };
/** Named model shapes for --preset (explicit flags override single fields). */
export const PRESETS: Record<string, typeof REFERENCE> = {
  'dense-125m': { vocab: 32000, dim: 768, layers: 12, heads: 12, ffn: 2048, ctx: 1024, batch: 8 },
};

/** Runs the PyTorch peer with the BLAS that gives it its real speed (OpenBLAS, OpenMP threads). */
export function torchPeer(script: string, args: object): Record<string, unknown> | { torch_error: string } {
  const python = '/usr/bin/python3';
  if (!existsSync(python)) return { torch_error: 'no /usr/bin/python3' };
  const env: NodeJS.ProcessEnv = { ...process.env, OMP_NUM_THREADS: String(cpus().length) };
  const openblas = '/usr/lib/x86_64-linux-gnu/openblas-openmp';
  if (existsSync(openblas)) env.LD_LIBRARY_PATH = openblas + (env.LD_LIBRARY_PATH ? `:${env.LD_LIBRARY_PATH}` : '');
  const r = spawnSync(python, [fileURLToPath(new URL(script, import.meta.url)), JSON.stringify(args)], { env, encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) return { torch_error: (r.stderr || r.error?.message || 'failed').trim().split('\n').at(-1)! };
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
}


/** The --key options run() reads (`frugal bench train-step` rejects any other). */
export const options: readonly string[] = ['device', 'preset', 'family', 'model-preset', 'profile', 'profile-reps', 'steps', 'budget-s', 'no-peer', 'no-replay',
  'sync-every', 'peer-budget-s', 'cpu-smoke', 'keep-device', ...Object.keys(REFERENCE)];
export async function run(args: Record<string, string | boolean> = {}): Promise<Record<string, unknown>> {
  const c = modelShape(args);
  if (args.device === 'webgpu') return runWebGPU(c, args);
  const steps = Number(args.steps ?? 5), warmup = 2;
  const device = (args.device as DeviceName) ?? 'cpu';
  const model = new CausalLM(
    { vocabSize: c.vocab, hiddenSize: c.dim, numLayers: c.layers, numHeads: c.heads, intermediateSize: c.ffn, maxPositions: c.ctx },
    { seed: 0, device },
  );
  const opt = new AdamW(model.namedParameters(), { lr: 1e-3, weightDecay: 0.1 });
  const rng = new Rng(0);
  const ids = Int32Array.from({ length: c.batch * (c.ctx + 1) }, () => rng.int(c.vocab));
  const inp = new Int32Array(c.batch * c.ctx), tgt = new Int32Array(c.batch * c.ctx);
  for (let b = 0; b < c.batch; b++) {
    inp.set(ids.subarray(b * (c.ctx + 1), b * (c.ctx + 1) + c.ctx), b * c.ctx);
    tgt.set(ids.subarray(b * (c.ctx + 1) + 1, (b + 1) * (c.ctx + 1)), b * c.ctx);
  }
  const times: number[] = [];
  for (let i = 0; i < warmup + steps; i++) {
    const t0 = performance.now();
    const loss = tidy(() => {
      const l = model.loss(fromArray(inp, [c.batch, c.ctx], device), fromArray(tgt, [c.batch * c.ctx], device));
      backward(l);
      return l;
    });
    await loss.item();
    (await opt.updateClipped(1.0)).dispose();
    opt.zeroGrad();
    if (i >= warmup) times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  const stepMs = times[Math.floor(times.length / 2)];
  const ours = { tokens_per_s: (c.batch * c.ctx * 1000) / stepMs, step_ms: stepMs, device, threads: cpus().length, model: c };
  if (args['no-peer'] || device !== 'cpu') return ours;
  const peer = torchPeer('./torch_train_step.py', { ...c, steps });
  const ratio = 'torch_tokens_per_s' in peer ? ours.tokens_per_s / (peer.torch_tokens_per_s as number) : null;
  return { ...ours, ...peer, ratio };
}

/** REFERENCE, or --preset NAME, with single fields overridden by --vocab, --dim, ... flags. */
export function modelShape(args: Record<string, string | boolean>): typeof REFERENCE {
  let base = REFERENCE;
  if (args.preset !== undefined) {
    const p = PRESETS[String(args.preset)];
    if (!p) throw new Error(`unknown --preset '${args.preset}'; available: ${Object.keys(PRESETS).join(', ')}`);
    base = p;
  }
  const c = { ...base };
  for (const k of Object.keys(c) as (keyof typeof c)[]) {
    if (args[k] === undefined) continue;
    const v = Number(args[k]);
    if (!Number.isInteger(v) || v <= 0) throw new Error(`--${k} must be a positive integer, got '${args[k]}'`);
    c[k] = v;
  }
  return c;
}

/** --family NAME: the ~125M preset of each layer family (src/models/presets.ts), timed beside its PyTorch twin. */
export const FAMILIES: Record<string, string> = { fbi: 'fbi-130m', ttt: 'ttt-linear-125m', peer: 'peer-130m' };

/**
 * The model config of a run: the dense shape c (REFERENCE or --preset), or with --family (or
 * --model-preset NAME, any preset, for small checks) that preset with maxPositions set to --ctx.
 */
export function modelConfig(c: typeof REFERENCE, args: Record<string, string | boolean>): { family: string; preset: string | null; config: Partial<ModelConfig> } {
  const fam = args.family === undefined ? 'dense' : String(args.family);
  if (fam !== 'dense' && !(fam in FAMILIES)) throw new Error(`unknown --family '${fam}'; available: dense, ${Object.keys(FAMILIES).join(', ')}`);
  const name = args['model-preset'] !== undefined ? String(args['model-preset']) : fam === 'dense' ? null : FAMILIES[fam];
  if (name === null) {
    return { family: fam, preset: null, config: { vocabSize: c.vocab, hiddenSize: c.dim, numLayers: c.layers, numHeads: c.heads, intermediateSize: c.ffn, maxPositions: c.ctx } };
  }
  const p = MODEL_PRESETS[name];
  if (!p) throw new Error(`unknown --model-preset '${name}'; see \`frugal info --presets\``);
  return { family: fam, preset: name, config: { ...p, maxPositions: c.ctx } };
}

/**
 * WebGPU training throughput: full eager steps (forward, backward, global-norm clip computed on the
 * device, AdamW, all inside tidy) and, when capture works for the model, the same step replayed from
 * one recorded command buffer -- clip included, since the clip factor never leaves the device. The
 * loss and norm are read once, after the timed steps. PyTorch eager fp32 (TF32 off) and bf16
 * autocast time the same model: the inline LLaMA of torch_gpu_peer.py for the dense shape, the
 * frugal_lm_torch twin (same config) for --family. --profile adds per-kernel-family GPU times.
 */
async function runWebGPU(c: typeof REFERENCE, args: Record<string, string | boolean>): Promise<Record<string, unknown>> {
  const t0 = performance.now();
  const budgetMs = Number(args['budget-s'] ?? 300) * 1000;
  const steps = Number(args.steps ?? 5), warmup = 2;
  // 0: the timed steps run back to back with one wait at the end, as the PyTorch peer's CUDA events
  // time them; N > 0 waits for the GPU after every N steps (the figures before 2026-12-04 used 2).
  const syncEvery = Number(args['sync-every'] ?? 0);
  if (!(Number.isInteger(syncEvery) && syncEvery >= 0)) throw new Error(`--sync-every: '${args['sync-every']}' is not a whole number >= 0`);
  const { family, preset, config } = modelConfig(c, args);
  const adapter = await startWebGPU();
  const device = 'webgpu' as const;
  const log = (m: string) => console.error(`[train-step ${family} ${((performance.now() - t0) / 1000).toFixed(1)}s] ${m}`);
  const model = new CausalLM(config, { seed: 0, device });
  const cfg = model.config;
  const named = model.namedParameters();
  const params = named.reduce((n, [, p]) => n + p.size, 0);
  const opt = new AdamW(named, { lr: 1e-3, weightDecay: 0.1 });
  // The budget counts from here: building a model with million-expert tables takes minutes on the host.
  const buildS = (performance.now() - t0) / 1000;
  const tb = performance.now();
  const rng = new Rng(0);
  const V = cfg.vocabSize;
  const ids = Int32Array.from({ length: c.batch * (c.ctx + 1) }, () => rng.int(V));
  const inpArr = new Int32Array(c.batch * c.ctx), tgtArr = new Int32Array(c.batch * c.ctx);
  for (let b = 0; b < c.batch; b++) {
    inpArr.set(ids.subarray(b * (c.ctx + 1), b * (c.ctx + 1) + c.ctx), b * c.ctx);
    tgtArr.set(ids.subarray(b * (c.ctx + 1) + 1, (b + 1) * (c.ctx + 1)), b * c.ctx);
  }
  const inp = fromArray(inpArr, [c.batch, c.ctx], device), tgt = fromArray(tgtArr, [c.batch * c.ctx], device);
  const forwardBackward = () => tidy(() => {
    const l = model.loss(inp, tgt);
    backward(l);
    return l;
  });
  // One step without any readback: the loss and the clip output are returned for reading later.
  const step = () => {
    const loss = forwardBackward();
    const clip = opt.updateClipped(1.0);
    opt.zeroGrad();
    return { loss, clip };
  };
  const tokens = c.batch * c.ctx;
  const res: Record<string, unknown> = { device, adapter, family, preset, model: { ...c, vocab: V, dim: cfg.hiddenSize, layers: cfg.numLayers }, params, build_s: buildS };
  log(`${params} parameters; warm-up`);
  const first = step();
  res.first_loss = await first.loss.item();
  res.first_grad_norm = (await first.clip.data())[1];
  first.loss.dispose();
  first.clip.dispose();
  for (let i = 1; i < warmup; i++) { const r = step(); r.loss.dispose(); r.clip.dispose(); }
  await syncWebGPU();
  // Steps are timed back to back (sync, N steps, sync); stop early when the budget runs short.
  let done = 0;
  const tEager = performance.now();
  let last: ReturnType<typeof step> | null = null;
  while (done < steps) {
    if (last) { last.loss.dispose(); last.clip.dispose(); }
    last = step();
    done++;
    if (syncEvery > 0 && done % syncEvery === 0) await syncWebGPU();
    if (performance.now() - tb > budgetMs * 0.5) break;
  }
  await syncWebGPU();
  const eagerMs = (performance.now() - tEager) / done;
  if (last) {
    res.last_eager_loss = await last.loss.item();
    last.loss.dispose();
    last.clip.dispose();
  }
  Object.assign(res, { steps: done, sync_every: syncEvery, step_ms: eagerMs, tokens_per_s: (tokens * 1000) / eagerMs });
  log(`eager ${eagerMs.toFixed(1)} ms/step`);
  if (family === 'dense') {
    // Model FLOPs per token ~ 6 x non-embedding parameters + causal attention (6 * layers * ctx * dim).
    const flopsPerToken = 6 * (params - c.vocab * c.dim) + 6 * c.layers * c.ctx * c.dim;
    res.tflops = (flopsPerToken * tokens) / (eagerMs * 1e9);
    res.flops_formula = '6*(params - vocab*dim) + 6*layers*ctx*dim per token';
  }

  if (!args['no-replay']) {
    try {
      const cap = captureWebGPUStep(step);
      await syncWebGPU();
      const base = opt.step;
      cap.step.replay({ adam: { step: base + 1 } });
      await syncWebGPU();
      let n = 0;
      const tr = performance.now();
      while (n < steps) {
        cap.step.replay({ adam: { step: base + 2 + n } });
        n++;
        if (syncEvery > 0 && n % syncEvery === 0) await syncWebGPU();
        if (performance.now() - tb > budgetMs * 0.8) break;
      }
      await syncWebGPU();
      const replayMs = (performance.now() - tr) / n;
      opt.step = base + 1 + n;
      const clipOut = await cap.result.clip.data();
      Object.assign(res, {
        replay_steps: n, replay_step_ms: replayMs, replay_tokens_per_s: (tokens * 1000) / replayMs,
        replay_commands: cap.step.commandCount, replay_note: 'forward, backward, global-norm clip, AdamW',
        replay_last_loss: await cap.result.loss.item(), replay_last_grad_norm: clipOut[1],
      });
      log(`replay ${replayMs.toFixed(1)} ms/step, ${cap.step.commandCount} commands`);
      if (args.profile) {
        const prof = await cap.step.profile(Number(args['profile-reps'] ?? 3));
        const byPrefix = new Map<string, { count: number; ms: number }>();
        for (const f of prof.families) {
          const k = f.key.split(':')[0];
          const e = byPrefix.get(k) ?? { count: 0, ms: 0 };
          e.count += f.count;
          e.ms += f.ms;
          byPrefix.set(k, e);
        }
        res.profile = {
          note: 'each kernel key submitted alone (3 reps), GPU wall ms per step; the data is garbage after this',
          total_ms: prof.totalMs,
          sum_ms: prof.families.reduce((a, f) => a + f.ms, 0),
          by_prefix: [...byPrefix].sort((a, b) => b[1].ms - a[1].ms).map(([key, e]) => ({ key, count: e.count, ms: +e.ms.toFixed(3) })),
          by_key: prof.families.slice(0, 40).map((f) => ({ key: f.key, count: f.count, ms: +f.ms.toFixed(3) })),
        };
        log('profiled');
      }
      cap.result.loss.dispose();
      cap.result.clip.dispose();
      cap.step.dispose();
    } catch (e) {
      res.replay_error = (e as Error).message;
    }
  }
  res.ours_s = (performance.now() - t0) / 1000;
  for (const [, p] of named) p.dispose();
  for (const m of opt.state().moments.values()) { m.m.dispose(); m.v.dispose(); }
  inp.dispose();
  tgt.dispose();
  await releasePool();
  if (!args['no-peer']) {
    log('PyTorch peer');
    const peer = family === 'dense'
      ? torchGpuPeer('train-step', { model: c, steps }, args)
      : torchGpuPeer('train-step-config', { config, batch: c.batch, ctx: c.ctx, steps }, args);
    Object.assign(res, peer);
    const fp32 = peer.torch_fp32_tokens_per_s as number | undefined, bf16 = peer.torch_bf16_tokens_per_s as number | undefined;
    if (fp32) res.ratio_vs_fp32 = (res.tokens_per_s as number) / fp32;
    if (bf16) res.ratio_vs_bf16 = (res.tokens_per_s as number) / bf16;
    if (fp32 && res.replay_tokens_per_s) res.replay_ratio_vs_fp32 = (res.replay_tokens_per_s as number) / fp32;
  }
  await finishWebGPU(args);
  return res;
}

await runBenchIfMain(import.meta.url, run);
