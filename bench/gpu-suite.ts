// The WebGPU benchmarks in one process (one device start): matmul (4096, 2048 and the 125M model's
// products), fused attention (L = 2k..16k, D = 64 and 128), the 125M dense training step and its FBI,
// TTT-Linear and PEER variants, each beside PyTorch CUDA timed in the same run. Writes DIR/NAME.json per
// benchmark (matmul, attention, train-step, train-step-fbi, train-step-ttt, train-step-peer) and
// DIR/summary.json, and prints the summary. Budgets bound every entry (our part and PyTorch's).
// Usage: node --import tsx bench/gpu-suite.ts --out DIR [--tiny --cpu-smoke]  (or `frugal bench gpu-suite --out DIR`)
//   --tiny shrinks every shape for a CPU (SwiftShader) check; --cpu-smoke runs the PyTorch peer on the CPU.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { destroyWebGPU, initWebGPU, webgpuAdapterName } from '../src/backend/webgpu/index.ts';
import { runBenchIfMain } from './kit.ts';

type Args = Record<string, string | boolean>;
type Bench = { run(a: Args): Promise<Record<string, unknown>> };

interface Entry {
  name: string;
  load: () => Promise<Bench>;
  /** Flags for the full run on the H200; budget-s bounds our part, peer-budget-s PyTorch's. */
  full: Args;
  tiny: Args;
  /** Headline figures of this entry's result (else headline() below). */
  summary?: (r: Record<string, unknown>) => Record<string, unknown>;
}

const SUITE: Entry[] = [
  {
    name: 'matmul', load: () => import('./matmul.ts'),
    full: { sizes: '4096,2048', shapes: '125m', 'budget-s': '40', reps: '4000', 'target-ms': '300', 'peer-budget-s': '30' },
    tiny: { sizes: '64,32', shapes: '40x24x36:nt,24x40x36:tn', reps: '3' },
  },
  {
    name: 'attention', load: () => import('./attention.ts'),
    full: { lens: '2048,4096,8192,16384', dims: '64,128', heads: '12', reps: '40', 'target-ms': '300', 'budget-s': '60', 'peer-budget-s': '40' },
    tiny: { lens: '32,64', dims: '16', heads: '2', reps: '2' },
  },
  {
    name: 'train-step', load: () => import('./train-step.ts'),
    full: { preset: 'dense-125m', batch: '8', steps: '10', 'budget-s': '35', 'peer-budget-s': '30' },
    tiny: { vocab: '64', dim: '32', layers: '2', heads: '2', ffn: '64', ctx: '16', batch: '2', steps: '2' },
  },
  // The ~125M FBI, TTT-Linear and PEER variants (train-step.ts FAMILIES) beside their PyTorch twins.
  // Our budget counts from the built model (PEER-130M's two 1M x 768 tables take ~2 minutes on the host);
  // its PyTorch twin's budget includes the twin's own build.
  ...(['fbi', 'ttt', 'peer'] as const).map((family): Entry => ({
    name: `train-step-${family}`, load: () => import('./train-step.ts'),
    full: { family, ctx: '1024', batch: '8', steps: '6', 'budget-s': '30', 'peer-budget-s': family === 'peer' ? '60' : '20' },
    tiny: { family, 'model-preset': { fbi: 'fbi-tiny', ttt: 'ttt-linear-tiny', peer: 'peer-tiny' }[family], ctx: '16', batch: '2', steps: '1' },
  })),
  {
    name: 'gpu-decode', load: () => import('./gpu-decode.ts'),
    full: { preset: 'fbi-1.3b', prompt: '16', decode: '64', 'budget-s': '30', 'peer-budget-s': '30' },
    tiny: { preset: 'fbi-tiny', prompt: '4', decode: '4' },
    summary: (r) => r.error ? { error: r.error } : {
      tokens_per_s: r.tokens_per_s, host_loop_tokens_per_s: r.host_loop_tokens_per_s, torch_bf16_tokens_per_s: r.torch_bf16_tokens_per_s,
      torch_bf16_graph_tokens_per_s: r.torch_bf16_graph_tokens_per_s, ratio_vs_torch_bf16: r.ratio_vs_torch_bf16, weight_read_GBps: r.weight_read_GBps,
      ...(r.torch_error ? { torch_error: r.torch_error } : {}),
    },
  },
];

const num = (x: unknown, digits = 3) => (typeof x === 'number' ? +x.toPrecision(digits) : x ?? null);

/** One line of headline figures per benchmark. */
function headline(name: string, r: Record<string, unknown>): Record<string, unknown> {
  if (r.error) return { error: r.error };
  const peerErr = r.torch_error ? { torch_error: r.torch_error } : {};
  if (name === 'matmul') {
    const rows = (r.rows as Record<string, unknown>[]).map((x) => ({
      n: x.n, tflops: num(x.tflops), torch_fp32: num(x.torch_fp32_tflops), torch_bf16: num(x.torch_bf16_tflops), ratio_vs_fp32: num(x.ratio_vs_fp32),
    }));
    const shapes = ((r.shape_rows ?? []) as Record<string, unknown>[]).map((x) => ({
      shape: `${x.m}x${x.n}x${x.k}:${x.transA ? 't' : 'n'}${x.transB ? 't' : 'n'}`,
      ...(x.skipped ? { skipped: x.skipped } : { tflops: num(x.tflops), torch_fp32: num(x.torch_fp32_tflops), ratio_vs_fp32: num(x.ratio_vs_fp32) }),
    }));
    return { rows, ...(shapes.length ? { shapes } : {}), meets_0_9_of_fp32: r.meets_target, ...peerErr, ...(r.torch_shapes_error ? { torch_shapes_error: r.torch_shapes_error } : {}) };
  }
  if (name === 'attention') {
    const rows = (r.rows as Record<string, unknown>[]).map((x) => x.skipped ? { L: x.L, D: x.D, skipped: x.skipped } : {
      L: x.L, D: x.D, ms: num(x.fwd_bwd_ms), tflops: num(x.fwd_bwd_tflops), torch_fp32_tflops: num(x.torch_fp32_fwd_bwd_tflops),
      torch_bf16_tflops: num(x.torch_bf16_fwd_bwd_tflops), ratio_vs_fp32: num(x.ratio_vs_fp32),
    });
    return { fwd_bwd: rows, ...peerErr };
  }
  return {
    family: r.family, params: r.params,
    tokens_per_s: num(r.tokens_per_s), replay_tokens_per_s: num(r.replay_tokens_per_s), replay_error: r.replay_error,
    torch_fp32_tokens_per_s: num(r.torch_fp32_tokens_per_s), torch_bf16_tokens_per_s: num(r.torch_bf16_tokens_per_s),
    ratio_vs_fp32: num(r.ratio_vs_fp32), replay_ratio_vs_fp32: num(r.replay_ratio_vs_fp32), ...peerErr,
  };
}


/** The --key options run() reads (`frugal bench gpu-suite` rejects any other). */
export const options: readonly string[] = ['out', 'only', 'tiny', 'cpu-smoke', 'no-peer'];
export async function run(args: Args): Promise<Record<string, unknown>> {
  if (typeof args.out !== 'string') throw new Error('gpu-suite needs --out DIR (the folder that receives one JSON file per benchmark)');
  const out = args.out;
  mkdirSync(out, { recursive: true });
  const t0 = performance.now();
  const log = (msg: string) => console.error(`[gpu-suite ${((performance.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
  await initWebGPU();
  const adapter = webgpuAdapterName();
  log(`adapter: ${adapter}`);
  const summary: Record<string, unknown> = { adapter };
  const only = typeof args.only === 'string' ? args.only.split(',') : null;
  for (const e of SUITE) {
    if (only && !only.includes(e.name)) continue;
    const flags: Args = { ...(args.tiny ? e.tiny : e.full), device: 'webgpu', 'keep-device': true };
    if (args['cpu-smoke']) flags['cpu-smoke'] = true;
    if (args['no-peer']) flags['no-peer'] = true;
    log(`${e.name} ${JSON.stringify(flags)}`);
    const t = performance.now();
    let res: Record<string, unknown>;
    try {
      res = await (await e.load()).run(flags);
    } catch (err) {
      res = { error: (err as Error).stack ?? String(err) };
    }
    res.wall_s = (performance.now() - t) / 1000;
    writeFileSync(join(out, `${e.name}.json`), JSON.stringify(res, null, 2) + '\n');
    summary[e.name] = { ...(e.summary ? e.summary(res) : headline(e.name, res)), wall_s: num(res.wall_s) };
    log(`${e.name} done in ${(res.wall_s as number).toFixed(1)}s: ${JSON.stringify(summary[e.name])}`);
  }
  summary.total_s = num((performance.now() - t0) / 1000);
  writeFileSync(join(out, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  // Tearing Dawn down with work in flight has crashed at exit: wait, free and destroy first.
  await destroyWebGPU();
  return summary;
}

await runBenchIfMain(import.meta.url, run);
