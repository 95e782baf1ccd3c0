// Fused attention (native/attention.cc) against the naive formulation that materializes the
// [H, L, L] scores through sgemm: forward + backward time and extra memory, causal, batch 1.
// Usage: node --import tsx bench/attention.ts [--heads 12] [--dim 64] [--lens 512,1024,2048,4096]
import { fileURLToPath } from 'node:url';
import { attentionBackward, attentionForward } from '../src/backend/cpu/attention.ts';
import { sgemmBatched } from '../src/backend/cpu/gemm.ts';
import { nativeAddon } from '../src/backend/cpu/native.ts';

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

function time(fn: () => void, reps: number): number {
  fn();
  let best = Infinity;
  for (let r = 0; r < reps; r++) {
    const t = performance.now();
    fn();
    best = Math.min(best, performance.now() - t);
  }
  return best;
}

export async function run(args: Record<string, string | boolean>): Promise<Record<string, unknown>> {
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
    const fusedMs = time(() => {
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
    const naiveMs = time(() => { naiveBytes = naive(q, k, v, o, dO, dq, dk, dv, L, H, D, scale); }, reps);
    const rssNaive = process.memoryUsage().rss - rss1;
    rows.push({
      L, fused_ms: +fusedMs.toFixed(1), naive_ms: +naiveMs.toFixed(1),
      fused_extra_mib: +(fusedBytes / MiB).toFixed(2), naive_extra_mib: +(naiveBytes / MiB).toFixed(1),
      fused_rss_delta_mib: +(rssFused / MiB).toFixed(1), naive_rss_delta_mib: +(rssNaive / MiB).toFixed(1),
    });
  }
  return { heads: H, dim: D, batch: 1, causal: true, threads, rows };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args: Record<string, string | boolean> = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    if (!argv[i].startsWith('--')) continue;
    const next = argv[i + 1];
    args[argv[i].slice(2)] = next !== undefined && !next.startsWith('--') ? (i++, next) : true;
  }
  console.log(JSON.stringify(await run(args), null, 2));
}
