// SGEMM GFLOP/s against numpy (OpenBLAS) on the same shapes, in the same run, on all cores.
// Usage: node --import tsx bench/matmul.ts [--size N] [--reps R]; or `frugal bench matmul`.
// With --device webgpu: fp32 matmul on the GPU (--sizes 4096,2048) beside PyTorch CUDA fp32 (TF32 off)
// and bf16, timed in the same run by bench/torch_gpu_peer.py. --shapes MxNxK[:nn|nt|tn|tt],... adds
// rectangular products (op(A) op(B), a transposed operand stored transposed) as `shape_rows`; --shapes
// 125m names the 125M training model's forward and backward products.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { sgemm, sgemmIsa } from '../src/backend/cpu/gemm.ts';
import { nativeAddon } from '../src/backend/cpu/native.ts';
import { destroyWebGPU, initWebGPU, syncWebGPU, webgpuAdapterName, webgpuRuntime } from '../src/backend/webgpu/index.ts';
import { matmul } from '../src/ops/index.ts';
import { fromArray, noGrad } from '../src/tensor/index.ts';
import { bestOfMs, runBenchIfMain } from './kit.ts';

type Shape = [number, number, number];

function ours(m: number, n: number, k: number, reps: number): number {
  const A = Float32Array.from({ length: m * k }, () => Math.random() - 0.5);
  const B = Float32Array.from({ length: k * n }, () => Math.random() - 0.5);
  const C = new Float32Array(m * n);
  const best = bestOfMs(() => sgemm(false, false, m, n, k, 1, A, 0, k, B, 0, n, 0, C, 0, n), reps);
  return (2 * m * n * k) / (best * 1e6);
}

function numpy(shapes: Shape[], reps: number): Array<number | null> {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'numpy_matmul.py');
  const r = spawnSync('python3', [script, String(reps), ...shapes.map((s) => s.join('x'))], { encoding: 'utf8' });
  if (r.status !== 0) return shapes.map(() => null);  // numpy missing: report ours alone
  const rows = JSON.parse(r.stdout).rows as Array<{ gflops: number }>;
  return rows.map((x) => x.gflops);
}


/** The --key options run() reads (`frugal bench matmul` rejects any other). */
export const options: readonly string[] = ['device', 'reps', 'size', 'sizes', 'shapes', 'budget-s', 'target-ms', 'peer-budget-s', 'cpu-smoke', 'keep-device', 'no-peer'];
export async function run(args: Record<string, string | boolean>): Promise<Record<string, unknown>> {
  if (args.device === 'webgpu') return runWebGPU(args);
  if (args.device !== undefined && args.device !== 'cpu') throw new Error(`--device must be 'cpu' or 'webgpu', got '${args.device}'`);
  const reps = args.reps ? Number(args.reps) : 5;
  const squares = args.size ? [Number(args.size)] : [1024, 2048];
  // A 768-wide model: MLP up (2048x768 @ 768x2048), attention projections (768x768), MLP down.
  const shapes: Shape[] = [...squares.map((n) => [n, n, n] as Shape), [2048, 2048, 768], [2048, 768, 768], [2048, 768, 2048]];
  const np = numpy(shapes, reps);
  const rows = shapes.map(([m, n, k], i) => {
    const g = ours(m, n, k, reps);
    return { m, n, k, gflops: +g.toFixed(1), numpy_gflops: np[i] === null ? null : +np[i]!.toFixed(1), ratio: np[i] ? +(g / np[i]!).toFixed(3) : null };
  });
  const top = rows[squares.length - 1];
  return { gflops: top.gflops, numpy_gflops: top.numpy_gflops, threads: nativeAddon().numThreads(), isa: sgemmIsa(), rows };
}

// ---- WebGPU (shared by bench/attention.ts and bench/train-step.ts) ----

/** Comma-separated positive integers of a flag, or the default. */
export function intList(args: Record<string, string | boolean>, key: string, dflt: number[]): number[] {
  if (args[key] === undefined) return dflt;
  const xs = String(args[key]).split(',').map(Number);
  if (!xs.length || xs.some((x) => !Number.isInteger(x) || x <= 0)) {
    throw new Error(`--${key} must be positive integers separated by commas (e.g. 2048,4096), got '${args[key]}'`);
  }
  return xs;
}

/** Initializes the webgpu backend and returns the adapter's description. */
export async function startWebGPU(): Promise<string> {
  await initWebGPU();
  return webgpuAdapterName();
}

/** Returns pooled buffers to the driver (before the PyTorch peer runs on the same GPU). */
export async function releasePool(): Promise<void> {
  await syncWebGPU();
  webgpuRuntime().pool.trim();
}

/** Releases pooled buffers; destroys the device unless a caller runs more benchmarks after. */
export async function finishWebGPU(args: Record<string, string | boolean>): Promise<void> {
  if (args['keep-device']) await releasePool();
  else await destroyWebGPU();
}

/**
 * Milliseconds per call of fn once the queue is full, the quantity CUDA events around N calls give the
 * PyTorch peer. One warm-up call (pipeline compilation) and ~200 ms of calls (clocks), then batches doubling until one takes at least
 * targetMs / 2 (or reaches maxReps calls). With N >= 8 calls per batch, the figure is the median over
 * three pairs of (time of 2N calls - time of N calls) / N, so the fixed cost of the sync that ends each
 * batch (a round trip through Dawn's event loop) cancels instead of inflating short kernels; with
 * fewer calls (long kernels, where that cost is small) it is the mean over the last batch. `unsteady`:
 * the pairs disagreed and the figure is the plain mean of a batch of 2N calls.
 */
export async function timeWebGPU(fn: () => void, maxReps: number, targetMs: number): Promise<{ ms: number; reps: number; sync_overhead_ms?: number; unsteady?: boolean }> {
  const batch = async (n: number) => {
    const t = performance.now();
    for (let i = 0; i < n; i++) fn();
    await syncWebGPU();
    return performance.now() - t;
  };
  await batch(1);
  // The GPU's clocks drop while it idles (operands prepared on the host before a shape): about 200 ms
  // of calls before anything is timed.
  for (let w = 0, n = 1; w < 200; n = Math.min(2 * n, maxReps)) w += await batch(n);
  let reps = 1, t1 = await batch(1);
  while (t1 < targetMs / 2 && reps < maxReps) {
    reps = Math.min(maxReps, Math.max(reps * 2, Math.ceil((reps * targetMs) / 2 / Math.max(t1, 1e-3))));
    t1 = await batch(reps);
  }
  if (reps < 8) return { ms: t1 / reps, reps };
  // One batch of the pairs' longer size first: scratch buffers a call takes from the pool are then all
  // allocated (and cleared on first use) before any timed batch.
  const warm = await batch(2 * reps);
  const est: number[] = [], fixed: number[] = [], shorter: number[] = [];
  for (let r = 0; r < 3; r++) {
    const a = await batch(reps), b = await batch(2 * reps);
    est.push((b - a) / reps);
    fixed.push(a - (b - a));
    shorter.push(a);
  }
  est.sort((x, y) => x - y);
  fixed.sort((x, y) => x - y);
  shorter.sort((x, y) => x - y);
  const ms = est[1];
  // A pair in which the longer batch was not slower, or a fixed cost above a quarter of the shorter
  // batch (a sync costs well under a millisecond), says the batches did not run at one speed: the plain
  // mean of the warm long batch instead, which can only overstate the time.
  if (!(ms > 0) || fixed[1] > shorter[1] / 4) return { ms: warm / (2 * reps), reps: 2 * reps, unsteady: true };
  return { ms, reps: 9 * reps, sync_overhead_ms: Math.max(0, fixed[1]) };
}

/**
 * Runs bench/torch_gpu_peer.py (PyTorch on CUDA, fp32 with TF32 off and bf16) in a child process and
 * returns its JSON; any failure (no python, no torch, no CUDA, timeout) becomes { torch_error }.
 * --cpu-smoke runs the peer on the CPU at the same (tiny) sizes, to check it without a GPU.
 * The interpreter is `python3` on PATH unless FRUGAL_PYTHON names another.
 */
export function torchGpuPeer(mode: string, shapes: object, args: Record<string, string | boolean>): Record<string, unknown> {
  return runPythonPeer('torch_gpu_peer.py', { mode, ...shapes }, args, 180, 90);
}

/**
 * Runs the peer script bench/SCRIPT with `payload` (+ budget_s, cpu_smoke) as its JSON argument and
 * returns the JSON of its last stdout line; any failure becomes { torch_error }. The interpreter is
 * $FRUGAL_PYTHON, else Debian's /usr/bin/python3 under --cpu-smoke when present, else `python3`.
 */
export function runPythonPeer(script: string, payload: object, args: Record<string, string | boolean>, defaultBudgetS: number, graceS: number): Record<string, unknown> {
  const budgetS = Number(args['peer-budget-s'] ?? defaultBudgetS);
  const smoke = Boolean(args['cpu-smoke']);
  const python = process.env.FRUGAL_PYTHON ?? (smoke && existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');
  const path = fileURLToPath(new URL(`./${script}`, import.meta.url));
  const r = spawnSync(python, [path, JSON.stringify({ ...payload, budget_s: budgetS, cpu_smoke: smoke })], { encoding: 'utf8', timeout: (budgetS + graceS) * 1000, maxBuffer: 1 << 24 });
  if (r.error) return { torch_error: `${python}: ${r.error.message}` };
  if (r.status !== 0) return { torch_error: (r.stderr || `exit ${r.status} (signal ${r.signal})`).trim().split('\n').at(-1)! };
  try {
    return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
  } catch {
    return { torch_error: `unreadable peer output: ${r.stdout.slice(-200)}` };
  }
}

/** Max error of a few entries of C = A B (recomputed in float64 on the host) relative to C's max-abs. */
function spotCheck(a: Float32Array, b: Float32Array, c: Float32Array, n: number): number {
  let maxAbs = 0, maxErr = 0;
  for (let i = 0; i < c.length; i++) maxAbs = Math.max(maxAbs, Math.abs(c[i]));
  for (let s = 0; s < 16; s++) {
    const i = (s * 7919) % n, j = (s * 104729 + 13) % n;
    let ref = 0;
    for (let p = 0; p < n; p++) ref += a[i * n + p] * b[p * n + j];
    maxErr = Math.max(maxErr, Math.abs(ref - c[i * n + j]));
  }
  return maxErr / (maxAbs || 1);
}

interface ShapeSpec { m: number; n: number; k: number; transA: boolean; transB: boolean }

// The 125M training model (d 768, FFN 2048, vocab 32000, 8192 tokens = batch 8 x ctx 1024): a linear
// y = x W^T is nt forward, its input gradient g W nn, its weight gradient g^T x tn over the tokens.
const MODEL_125M = [[8192, 768, 768], [8192, 2048, 768], [8192, 768, 2048], [8192, 32000, 768]];
export const SHAPES_125M: readonly string[] = [
  ...MODEL_125M.map(([t, o, i]) => `${t}x${o}x${i}:nt`), ...MODEL_125M.map(([t, o, i]) => `${t}x${i}x${o}:nn`),
  ...MODEL_125M.map(([t, o, i]) => `${o}x${i}x${t}:tn`)];

/** --shapes: MxNxK with an optional :nn|nt|tn|tt (the transposes of A and B), comma-separated; '125m' for SHAPES_125M. */
export function shapeList(spec: string): ShapeSpec[] {
  const items = spec.split(',').flatMap((x) => (x === '125m' ? SHAPES_125M : [x]));
  return items.map((x) => {
    const mt = /^(\d+)x(\d+)x(\d+)(?::([nt])([nt]))?$/.exec(x);
    if (!mt || [mt[1], mt[2], mt[3]].some((d) => Number(d) <= 0)) {
      throw new Error(`--shapes must be MxNxK[:nn|nt|tn|tt] items separated by commas, or 125m (e.g. 8192x768x768:nt), got '${x}'`);
    }
    return { m: +mt[1], n: +mt[2], k: +mt[3], transA: mt[4] === 't', transB: mt[5] === 't' };
  });
}

/**
 * Uniform [-0.5, 0.5) values from a fast LCG: 2^20 + 7 of them, repeated (operands reach 262 M entries;
 * the odd period keeps rows from repeating; the check sums the arrays themselves).
 */
function randomArray(n: number, seed: number): Float32Array {
  const x = new Float32Array(n), period = Math.min(n, (1 << 20) + 7);
  let s = seed >>> 0;
  for (let i = 0; i < period; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; x[i] = s / 2 ** 32 - 0.5; }
  for (let filled = period; filled < n; filled *= 2) x.copyWithin(filled, 0, Math.min(filled, n - filled));
  return x;
}

/** One rectangular product op(A) op(B) through the matmul op, timed, with 16 entries checked in float64. */
async function timeShape(sh: ShapeSpec, maxReps: number, targetMs: number): Promise<Record<string, unknown>> {
  const { m, n, k, transA, transB } = sh;
  const A = randomArray(m * k, 1), B = randomArray(k * n, 2);
  const a = fromArray(A, transA ? [k, m] : [m, k], 'webgpu'), b = fromArray(B, transB ? [n, k] : [k, n], 'webgpu');
  const { ms, reps, unsteady } = await timeWebGPU(() => noGrad(() => matmul(a, b, { transA, transB }).dispose()), maxReps, targetMs);
  const c = noGrad(() => matmul(a, b, { transA, transB }));
  const C = (await c.data()) as Float32Array;
  let maxAbs = 0, maxErr = 0;
  for (let i = 0; i < C.length; i++) maxAbs = Math.max(maxAbs, Math.abs(C[i]));
  for (let s = 0; s < 16; s++) {
    const i = s === 0 ? m - 1 : (s * 7919) % m, j = s === 1 ? n - 1 : (s * 104729 + 13) % n;
    let ref = 0;
    for (let t = 0; t < k; t++) ref += A[transA ? t * m + i : i * k + t] * B[transB ? j * k + t : t * n + j];
    maxErr = Math.max(maxErr, Math.abs(ref - C[i * n + j]));
  }
  for (const t of [a, b, c]) t.dispose();
  await releasePool();
  return { m, n, k, transA, transB, reps, ms, tflops: (2 * m * n * k) / (ms * 1e9), spot_check_rel_err: maxErr / (maxAbs || 1), unsteady };
}

/** About one second of n x n products before anything is timed: an idle GPU runs its first ones at low clocks. */
async function warmGpu(n: number): Promise<void> {
  const a = fromArray(new Float32Array(n * n).fill(0.5), [n, n], 'webgpu');
  const t = performance.now();
  while (performance.now() - t < 1000) {
    for (let i = 0; i < 8; i++) noGrad(() => matmul(a, a).dispose());
    await syncWebGPU();
  }
  a.dispose();
}

/** Square fp32 matmuls through the matmul op on webgpu tensors, beside PyTorch fp32 (TF32 off) and bf16. */
async function runWebGPU(args: Record<string, string | boolean>): Promise<Record<string, unknown>> {
  const sizes = intList(args, 'size', intList(args, 'sizes', [4096]));
  const maxReps = Number(args.reps ?? 20), targetMs = Number(args['target-ms'] ?? 2000);
  const shapes = args.shapes === undefined ? [] : shapeList(String(args.shapes));
  const adapter = await startWebGPU();
  const rows: Record<string, unknown>[] = [];
  await warmGpu(sizes[0] ?? 2048);
  for (const n of sizes) {
    const A = Float32Array.from({ length: n * n }, () => Math.random() - 0.5);
    const B = Float32Array.from({ length: n * n }, () => Math.random() - 0.5);
    const a = fromArray(A, [n, n], 'webgpu'), b = fromArray(B, [n, n], 'webgpu');
    const timed = await timeWebGPU(() => noGrad(() => matmul(a, b).dispose()), maxReps, targetMs);
    const { ms, reps } = timed;
    const c = noGrad(() => matmul(a, b));
    const err = spotCheck(A, B, (await c.data()) as Float32Array, n);
    for (const t of [a, b, c]) t.dispose();
    rows.push({ n, reps, ms, tflops: (2 * n ** 3) / (ms * 1e9), spot_check_rel_err: err, sync_overhead_ms: timed.sync_overhead_ms, unsteady: timed.unsteady });
  }
  // --budget-s bounds the shape rows (ours; the peer has its own): rows past it are marked skipped.
  const budgetS = args['budget-s'] === undefined ? Infinity : Number(args['budget-s']);
  if (!(budgetS >= 0)) throw new Error(`--budget-s must be a number of seconds >= 0, got '${args['budget-s']}'`);
  const t0 = performance.now();
  const shapeRows: Record<string, unknown>[] = [];
  for (const sh of shapes) {
    if ((performance.now() - t0) / 1000 > budgetS) shapeRows.push({ ...sh, skipped: 'time budget' });
    else shapeRows.push(await timeShape(sh, maxReps, targetMs));
  }
  const res: Record<string, unknown> = { device: 'webgpu', adapter, dtype: 'f32', rows };
  if (shapes.length) res.shape_rows = shapeRows;
  await releasePool();
  if (!args['no-peer']) {
    // CUDA events need no long batches: 100 calls at most per size.
    const peer = torchGpuPeer('matmul', { sizes, reps: Math.min(maxReps, 100) }, args);
    if ('torch_error' in peer) res.torch_error = peer.torch_error;
    else {
      const prow = peer.rows as Record<string, number>[];
      rows.forEach((r, i) => {
        const p = prow[i] ?? {};
        Object.assign(r, p, { n: r.n });
        if (p.torch_fp32_tflops) r.ratio_vs_fp32 = (r.tflops as number) / p.torch_fp32_tflops;
        if (p.torch_bf16_tflops) r.ratio_vs_bf16 = (r.tflops as number) / p.torch_bf16_tflops;
      });
      res.torch_version = peer.torch_version;
      res.torch_device = peer.torch_device;
      res.torch_tf32_setting = peer.tf32_setting;
      res.torch_fp32_rel_err = peer.fp32_rel_err;
    }
    if (shapes.length) {
      const sp = torchGpuPeer('matmul', { shapes: shapes.map((x) => [x.m, x.n, x.k, x.transA, x.transB]), reps: maxReps, target_ms: Math.min(targetMs, 500) }, args);
      if ('torch_error' in sp) res.torch_shapes_error = sp.torch_error;
      else {
        shapeRows.forEach((r, i) => {
          const p = (sp.rows as Record<string, number>[])[i] ?? {};
          for (const key of ['torch_fp32_ms', 'torch_fp32_tflops', 'torch_bf16_ms', 'torch_bf16_tflops']) if (key in p) r[key] = p[key];
          if (p.torch_fp32_tflops) r.ratio_vs_fp32 = (r.tflops as number) / p.torch_fp32_tflops;
          if (p.torch_bf16_tflops) r.ratio_vs_bf16 = (r.tflops as number) / p.torch_bf16_tflops;
        });
      }
    }
  }
  // Headline: the first size (4096 by default), against the 0.9 x PyTorch fp32 target.
  const top = rows[0];
  Object.assign(res, {
    n: top.n, tflops: top.tflops, torch_fp32_tflops: top.torch_fp32_tflops ?? null, torch_bf16_tflops: top.torch_bf16_tflops ?? null,
    ratio_vs_fp32: top.ratio_vs_fp32 ?? null, ratio_vs_bf16: top.ratio_vs_bf16 ?? null,
    target_ratio_vs_fp32: 0.9, meets_target: top.ratio_vs_fp32 === undefined ? null : (top.ratio_vs_fp32 as number) >= 0.9,
  });
  await finishWebGPU(args);
  return res;
}

await runBenchIfMain(import.meta.url, run);
