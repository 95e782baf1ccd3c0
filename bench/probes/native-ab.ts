// Two builds of the native addon side by side in one process: the same packed FBI products, the f16 head and SGEMM,
// called alternately on each build, one kernel thread, timed as CPU time (process.cpuUsage) so other
// load on a shared machine disturbs the comparison less than wall time. For checking that a change to
// native/ does not slow a kernel down: build the old tree's addon somewhere, then
//   node --import tsx bench/probes/native-ab.ts OLD/build/Release/frugal.node build/Release/frugal.node [--reps 12]
// Prints one JSON line: best-of-reps ms per kernel and build, and new / old time ratios.
import { createRequire } from 'node:module';
import { resolve } from 'node:path';

const [oldPath, newPath] = process.argv.slice(2).filter((a) => !a.startsWith('--') && !/^\d+$/.test(a));
if (!oldPath || !newPath) {
  console.error('usage: node --import tsx bench/probes/native-ab.ts OLD.node NEW.node [--reps N]');
  process.exit(2);
}
const repsAt = process.argv.indexOf('--reps');
const reps = repsAt > 0 ? Number(process.argv[repsAt + 1]) : 12;
const require = createRequire(import.meta.url);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const builds: Record<string, any> = { old: require(resolve(oldPath)), new: require(resolve(newPath)) };
for (const b of Object.values(builds)) b.setNumThreads(1);

const K = 2048, N = 5632 * 8;
let s = 7;
const bits = new Uint32Array((N * K) / 32).map(() => (s = (s * 1103515245 + 12345) >>> 0));
const il = new Uint32Array(2 * 4 * Math.ceil(N / 64) * Math.ceil(K / 4));  // interleavedWords(K, N)
builds.new.fbiRepack(bits, K, N, il);
const alpha = new Float32Array(K).fill(0.02), beta = new Float32Array(K).fill(0.001);
const A = Float32Array.from({ length: 1024 * 1024 }, (_, i) => Math.sin(i)), C = new Float32Array(1024 * 1024);

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const kernels: [string, (a: any) => void][] = [];
for (const M of [1, 16]) {
  const x = Float32Array.from({ length: M * K }, (_, i) => Math.sin(i)), y = new Float32Array(M * N);
  for (const [isa, code] of [['avx512', 3], ['avx2', 2]] as const) {
    if (builds.new.fbiInt8IsaAvailable(code)) kernels.push([`fbiInt8Matmul ${isa} M=${M}`, (a) => a.fbiInt8Matmul(x, il, alpha, beta, 0, M, K, N, y, code)]);
  }
  kernels.push([`fbiPackedMatmul auto M=${M}`, (a) => a.fbiPackedMatmul(x, bits, alpha, beta, 0, M, K, N, y, 0)]);
}
// The 1.3B LM head at batch 1 (f16, 32000 x 2048: 131 MB, streamed from memory every call).
{
  const HK = 2048, HN = 32000;
  const hw = new Uint16Array(HN * HK).map((_, i) => 0x3c00 ^ (i & 0x83ff));
  const hx = Float32Array.from({ length: HK }, (_, i) => Math.sin(i)), hy = new Float32Array(HN);
  kernels.push(['f16Matmul M=1 32000x2048', (a) => a.f16Matmul(hx, hw, 1, HK, HN, hy, 0)]);
}
kernels.push(['sgemm 1024', (a) => a.sgemmBatched(1, false, false, 1024, 1024, 1024, 1, A, 0, 1024, 0, A, 0, 1024, 0, 0, C, 0, 1024, 0)]);

const rows = kernels.map(([name, f]) => {
  const best: Record<string, number> = { old: Infinity, new: Infinity };
  for (let r = 0; r < reps; r++) {
    for (const b of r % 2 ? ['new', 'old'] : ['old', 'new']) {
      const c = process.cpuUsage();
      f(builds[b]);
      const d = process.cpuUsage(c);
      best[b] = Math.min(best[b], (d.user + d.system) / 1000);
    }
  }
  return { kernel: name, old_ms: +best.old.toFixed(3), new_ms: +best.new.toFixed(3), new_over_old: +(best.new / best.old).toFixed(3) };
});
console.log(JSON.stringify({ bench: 'native-ab', threads: 1, statistic: 'best of reps, CPU time', reps, rows }));
