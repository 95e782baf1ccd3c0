// SGEMM GFLOP/s against numpy (OpenBLAS) on the same shapes, in the same run, on all cores.
// Usage: node --import tsx bench/matmul.ts [--size N] [--reps R]; or `frugal bench matmul`.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { sgemm, sgemmIsa } from '../src/backend/cpu/gemm.ts';
import { nativeAddon } from '../src/backend/cpu/native.ts';

type Shape = [number, number, number];

function ours(m: number, n: number, k: number, reps: number): number {
  const A = Float32Array.from({ length: m * k }, () => Math.random() - 0.5);
  const B = Float32Array.from({ length: k * n }, () => Math.random() - 0.5);
  const C = new Float32Array(m * n);
  sgemm(false, false, m, n, k, 1, A, 0, k, B, 0, n, 0, C, 0, n);
  let best = Infinity;
  for (let r = 0; r < reps; r++) {
    const t = performance.now();
    sgemm(false, false, m, n, k, 1, A, 0, k, B, 0, n, 0, C, 0, n);
    best = Math.min(best, performance.now() - t);
  }
  return (2 * m * n * k) / (best * 1e6);
}

function numpy(shapes: Shape[], reps: number): Array<number | null> {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'numpy_matmul.py');
  const r = spawnSync('python3', [script, String(reps), ...shapes.map((s) => s.join('x'))], { encoding: 'utf8' });
  if (r.status !== 0) return shapes.map(() => null);  // numpy missing: report ours alone
  const rows = JSON.parse(r.stdout).rows as Array<{ gflops: number }>;
  return rows.map((x) => x.gflops);
}

export async function run(args: Record<string, string | boolean>): Promise<Record<string, unknown>> {
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
