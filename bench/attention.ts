// Fused attention (native/attention.cc) against the naive formulation that materializes the
// [H, L, L] scores through sgemm: forward + backward time and extra memory, causal, batch 1.
// Usage: node --import tsx bench/attention.ts [--heads 12] [--dim 64] [--lens 512,1024,2048,4096]
// With --device webgpu [--dims 64,128] [--lens 2048,...,16384]: the fused WebGPU kernels beside PyTorch
// CUDA scaled_dot_product_attention (fp32 with TF32 off, and bf16), timed in the same run.
import { attentionBackward, attentionForward } from '../src/backend/cpu/attention.ts';
import { sgemmBatched } from '../src/backend/cpu/gemm.ts';
import { nativeAddon } from '../src/backend/cpu/native.ts';
import { fromArray, type Tensor } from '../src/tensor/index.ts';
import { finishWebGPU, intList, releasePool, startWebGPU, timeWebGPU, torchGpuPeer } from './matmul.ts';
import { bestOfMs, runBenchIfMain } from './kit.ts';

const MiB = 2 ** 20;

// Naive causal attention, H == Hkv, B = 1: P = softmax(mask(scale q k^T)) kept whole for the backward.
function naive(q: Float32Array, k: Float32Array, v: Float32Array, o: Float32Array, dO: Float32Array,
  dq: Float32Array, dk: Float32Array, dv: Float32Array, L: number, H: number, D: number, scale: number): number {
  const ld = H * D, LL = L * L;
  const P = new Float32Array(H * LL), dP = new Float32Array(H * LL);
  sgemmBatched(H, false, true, L, L, D, scale, q, 0, ld, D, k, 0, ld, D, 0, P, 0, L, LL);
  for (let r = 0; r < H * L; r++) {
    const i = r % L, row = P.subarray(r * L, r * L + L);
    let mx = -Infinity;
    for (let j = 0; j <= i; j++) mx = Math.max(mx, row[j]);
    let sum = 0;
    for (let j = 0; j <= i; j++) sum += (row[j] = Math.exp(row[j] - mx));
    for (let j = 0; j <= i; j++) row[j] /= sum;
    row.fill(0, i + 1);
  }
  sgemmBatched(H, false, false, L, D, L, 1, P, 0, L, LL, v, 0, ld, D, 0, o, 0, ld, D);
  // Backward: dV = P^T dO, dP = dO V^T, dS = P * (dP - rowsum(P * dP)), dQ = scale dS K, dK = scale dS^T Q.
  sgemmBatched(H, true, false, L, D, L, 1, P, 0, L, LL, dO, 0, ld, D, 0, dv, 0, ld, D);
  sgemmBatched(H, false, true, L, L, D, 1, dO, 0, ld, D, v, 0, ld, D, 0, dP, 0, L, LL);
  for (let r = 0; r < H * L; r++) {
    let dot = 0;
    for (let j = 0; j < L; j++) dot += P[r * L + j] * dP[r * L + j];
    for (let j = 0; j < L; j++) dP[r * L + j] = P[r * L + j] * (dP[r * L + j] - dot);
  }
  sgemmBatched(H, false, false, L, D, L, scale, dP, 0, L, LL, k, 0, ld, D, 0, dq, 0, ld, D);
  sgemmBatched(H, true, false, L, D, L, scale, dP, 0, L, LL, q, 0, ld, D, 0, dk, 0, ld, D);
  return P.byteLength + dP.byteLength;
}



/** The --key options run() reads (`frugal bench attention` rejects any other). */
export const options: readonly string[] = ['device', 'dim', 'heads', 'lens', 'reps', 'target-ms', 'budget-s', 'no-peer'];
export async function run(args: Record<string, string | boolean>): Promise<Record<string, unknown>> {
  if (args.device === 'webgpu') return runWebGPU(args);
  if (args.device !== undefined && args.device !== 'cpu') throw new Error(`--device must be 'cpu' or 'webgpu', got '${args.device}'`);
  const H = Number(args.heads ?? 12), D = Number(args.dim ?? 64), scale = 1 / Math.sqrt(D);
  const lens = typeof args.lens === 'string' ? args.lens.split(',').map(Number) : [512, 1024, 2048, 4096];
  const threads = nativeAddon().numThreads() as number;
  const rows = [];
  for (const L of lens) {
    const n = L * H * D, rnd = () => Float32Array.from({ length: n }, () => Math.random() - 0.5);
    const q = rnd(), k = rnd(), v = rnd(), dO = rnd();
    const o = new Float32Array(n), lse = new Float32Array(H * L), dq = new Float32Array(n), dk = new Float32Array(n), dv = new Float32Array(n);
    const reps = L >= 4096 ? 1 : 3;
    const rss0 = process.memoryUsage().rss;
    const fusedMs = bestOfMs(() => {
      attentionForward(q, k, v, o, lse, 1, L, L, H, H, D, scale, true);
      attentionBackward(q, k, v, o, dO, lse, dq, dk, dv, 1, L, L, H, H, D, scale, true);
    }, reps);
    const rssFused = process.memoryUsage().rss - rss0;
    // Fused intermediates: lse and D_i ([H, L] each), (threads - 1) private dq copies, and per thread
    // the tiles of attention_impl.h (3 x 32 x Dp + 6 x 64 x Dp + 2 x 32 x 64 floats).
    const Dp = Math.ceil(D / 16) * 16;
    const fusedBytes = 4 * (2 * H * L + (threads - 1) * n + threads * (3 * 32 * Dp + 6 * 64 * Dp + 2 * 32 * 64));
    let naiveBytes = 0;
    const rss1 = process.memoryUsage().rss;
    const naiveMs = bestOfMs(() => { naiveBytes = naive(q, k, v, o, dO, dq, dk, dv, L, H, D, scale); }, reps);
    const rssNaive = process.memoryUsage().rss - rss1;
    rows.push({
      L, fused_ms: +fusedMs.toFixed(1), naive_ms: +naiveMs.toFixed(1),
      fused_extra_mib: +(fusedBytes / MiB).toFixed(2), naive_extra_mib: +(naiveBytes / MiB).toFixed(1),
      fused_rss_delta_mib: +(rssFused / MiB).toFixed(1), naive_rss_delta_mib: +(rssNaive / MiB).toFixed(1),
    });
  }
  return { heads: H, dim: D, batch: 1, causal: true, threads, rows };
}

/** Causal FLOPs, used for ours and PyTorch alike: QK^T and PV (2*L*L*D each, half kept); backward 2.5x. */
export function attentionFlops(b: number, h: number, l: number, d: number): { fwd: number; bwd: number } {
  const fwd = (4 * b * h * l * l * d) / 2;
  return { fwd, bwd: 2.5 * fwd };
}

/**
 * The fused attention kernels on webgpu tensors (q, k, v, o, dO [B, L, H, D], lse [B, H, L]),
 * forward alone and forward + backward, causal, B = 1; rows past the time budget are skipped.
 */
async function runWebGPU(args: Record<string, string | boolean>): Promise<Record<string, unknown>> {
  const t0 = performance.now();
  const H = Number(args.heads ?? 12), B = 1;
  const dims = intList(args, 'dims', intList(args, 'dim', [64]));
  const lens = intList(args, 'lens', [2048, 4096, 8192, 16384]);
  const maxReps = Number(args.reps ?? 5), targetMs = Number(args['target-ms'] ?? 3000);
  const budgetMs = Number(args['budget-s'] ?? 240) * 1000;
  const adapter = await startWebGPU();
  const rows: Record<string, unknown>[] = [];
  const rnd = (n: number) => Float32Array.from({ length: n }, () => Math.random() - 0.5);
  // The last row's per-call times, scaled by L*L*D, predict the next row (warm-up and sizing calls
  // plus the timed reps, as timeWebGPU runs them); rows that would overrun the budget are skipped.
  let fwdUnit = 0, fwdBwdUnit = 0;
  const callsMs = (perCall: number, target: number) => {
    const reps = Math.max(1, Math.min(maxReps, Math.ceil(target / 2 / Math.max(perCall, 1e-3))));
    // Warm-up and the doubling batches (about 2N calls), then three pairs of N and 2N when N >= 8.
    return perCall * (2 + 2 * reps + (reps >= 8 ? 9 * reps : 0));
  };
  for (const D of dims) {
    for (const L of lens) {
      const units = L * L * D;
      const predicted = fwdUnit ? callsMs(fwdUnit * units, targetMs / 3) + callsMs(fwdBwdUnit * units, targetMs) : 0;
      if (performance.now() - t0 + predicted > budgetMs) {
        rows.push({ L, D, skipped: 'time budget' });
        continue;
      }
      const n = B * L * H * D;
      const up = (x: Float32Array) => fromArray(x, [B, L, H, D], 'webgpu');
      const q = up(rnd(n)), k = up(rnd(n)), v = up(rnd(n)), dO = up(rnd(n));
      const o = up(new Float32Array(n)), dq = up(new Float32Array(n)), dk = up(new Float32Array(n)), dv = up(new Float32Array(n));
      const lse = fromArray(new Float32Array(B * H * L), [B, H, L], 'webgpu');
      const p = { b: B, l: L, s: L, h: H, hkv: H, d: D, scale: 1 / Math.sqrt(D), causal: true };
      const kern = q.backend.attention;
      const fwd = () => kern.forward(q.buf, k.buf, v.buf, o.buf, lse.buf, p);
      const fwdBwd = () => {
        fwd();
        kern.backward(q.buf, k.buf, v.buf, o.buf, dO.buf, lse.buf, dq.buf, dk.buf, dv.buf, p);
      };
      const f = await timeWebGPU(fwd, maxReps, targetMs / 3);
      const fb = await timeWebGPU(fwdBwd, maxReps, targetMs);
      // A cheap sanity check that the kernels produced numbers: the output and gradients are finite.
      const finite = (await Promise.all([o, dq].map((t: Tensor) => t.data()))).every((a) => a.every(Number.isFinite));
      for (const t of [q, k, v, dO, o, dq, dk, dv, lse]) t.dispose();
      fwdUnit = f.ms / units;
      fwdBwdUnit = fb.ms / units;
      const fl = attentionFlops(B, H, L, D);
      rows.push({
        L, D, reps: fb.reps, fwd_ms: f.ms, fwd_bwd_ms: fb.ms,
        fwd_tflops: fl.fwd / (f.ms * 1e9), fwd_bwd_tflops: (fl.fwd + fl.bwd) / (fb.ms * 1e9), finite,
      });
    }
  }
  const res: Record<string, unknown> = {
    device: 'webgpu', adapter, batch: B, heads: H, dims, causal: true, rows,
    flops_formula: 'fwd = 4*B*H*L*L*D/2 (causal), bwd = 2.5*fwd; same for PyTorch',
    ratio_definition: 'ratio_vs_X = PyTorch X forward+backward ms / ours (above 1: ours faster)',
    ours_s: (performance.now() - t0) / 1000,
  };
  await releasePool();
  if (!args['no-peer']) {
    const done = rows.filter((r) => !r.skipped);
    const peer = torchGpuPeer('attention', { batch: B, heads: H, dims: [...new Set(done.map((r) => r.D))], lens: [...new Set(done.map((r) => r.L))], reps: maxReps }, args);
    if ('torch_error' in peer) res.torch_error = peer.torch_error;
    else {
      for (const r of done) {
        const pr = (peer.rows as Record<string, number>[]).find((x) => x.L === r.L && x.D === r.D);
        if (!pr) continue;
        Object.assign(r, pr);
        for (const dt of ['fp32', 'bf16']) {
          const t = pr[`torch_${dt}_fwd_bwd_ms`];
          if (t) r[`ratio_vs_${dt}`] = t / (r.fwd_bwd_ms as number);
        }
      }
      res.torch_version = peer.torch_version;
      res.torch_device = peer.torch_device;
    }
  }
  await finishWebGPU(args);
  return res;
}

await runBenchIfMain(import.meta.url, run);
