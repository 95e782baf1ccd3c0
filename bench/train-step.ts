// Training throughput of one full step (forward, backward, clip, AdamW) of the dense reference model,
// beside PyTorch CPU running the identical model in the same run.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { CausalLM } from '../src/models/index.ts';
import { backward, fromArray, Rng, tidy } from '../src/tensor/index.ts';
import { AdamW, clipFactor, gradNorm } from '../src/train/optim.ts';
import type { DeviceName } from '../src/backend/types.ts';

export const REFERENCE = { vocab: 8192, dim: 256, layers: 6, heads: 8, ffn: 768, ctx: 256, batch: 8 };

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

export async function run(args: Record<string, string | boolean> = {}): Promise<Record<string, unknown>> {
  const c = { ...REFERENCE };
  for (const k of Object.keys(c) as (keyof typeof c)[]) if (typeof args[k] === 'string') c[k] = Number(args[k]);
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
    opt.update(clipFactor(await gradNorm(model.parameters()), 1.0));
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

if (import.meta.url === `file://${process.argv[1]}`) console.log(JSON.stringify(await run()));
