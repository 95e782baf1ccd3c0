// The packed 1-bit products alone: the int8-activation kernel on each code path and the previous f32
// masked-add kernel (the peer here), at decode (1 token) and prefill (64 tokens), plus the f16 head.
//   frugal bench fbi-kernels [--reps 5] --json
import { f16Matmul, fbiInt8IsaAvailable, fbiInt8Matmul, fbiPackedMatmul, fbiRepack } from '../src/backend/cpu/fbi.ts';
import { bestOfMs, runBenchIfMain } from './kit.ts';

/** The --key options run() reads (`frugal bench fbi-kernels` rejects any other). */
export const options: readonly string[] = ['reps'];

export async function run(args: Record<string, string | boolean> = {}): Promise<Record<string, unknown>> {
  const reps = Number(args.reps ?? 5);
  const K = 2048, N = 5632 * 8; // 92M weights, 11.5 MB of bits
  let s = 7;
  const bits = new Uint32Array((N * K) / 32).map(() => (s = (s * 1103515245 + 12345) >>> 0));
  const il = fbiRepack(bits, K, N);
  const a = new Float32Array(K).fill(0.02), b = new Float32Array(K).fill(0.001);
  const rows: Record<string, unknown>[] = [];
  for (const M of [1, 64]) {
    const x = Float32Array.from({ length: M * K }, (_, i) => Math.sin(i)), y = new Float32Array(M * N);
    for (const isa of (['avx512', 'avx2', 'scalar'] as const).filter(fbiInt8IsaAvailable)) {
      const t = bestOfMs(() => fbiInt8Matmul(x, il, a, b, 'column', M, K, N, y, isa), reps);
      rows.push({ kernel: `int8 ${isa}`, tokens: M, ms: t, weight_GBps: N * K / 8 / t / 1e6 });
    }
    const t = bestOfMs(() => fbiPackedMatmul(x, bits, a, b, 'column', M, K, N, y), reps);
    rows.push({ kernel: 'f32 masked add (previous)', tokens: M, ms: t, weight_GBps: N * K / 8 / t / 1e6 });
  }
  const V = 32000, h = new Uint16Array(V * K).fill(0x3c00), x = new Float32Array(K).fill(0.1), y = new Float32Array(V);
  const t = bestOfMs(() => f16Matmul(x, h, 1, K, V, y), reps);
  rows.push({ kernel: 'f16 head 32000 x 2048', tokens: 1, ms: t, weight_GBps: (V * K * 2) / t / 1e6 });
  return { bench: 'fbi-kernels', K, N, reps, statistic: 'best of reps', rows };
}

await runBenchIfMain(import.meta.url, run);
