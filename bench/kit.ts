// What benchmark scripts share: flags when a script runs directly, the direct-run entry point, and
// best-of-N timing after a warm-up call.
import { pathToFileURL } from 'node:url';

/** `--key value` / `--flag` pairs of a benchmark script run directly (node --import tsx bench/X.ts ...). */
export function benchFlags(argv: string[]): Record<string, string | boolean> {
  const args: Record<string, string | boolean> = {};
  for (let i = 0; i < argv.length; i++) {
    if (!argv[i].startsWith('--')) throw new Error(`unexpected argument '${argv[i]}'; flags are --key value or --flag`);
    const next = argv[i + 1];
    args[argv[i].slice(2)] = next !== undefined && !next.startsWith('--') ? (i++, next) : true;
  }
  return args;
}

/** Runs a benchmark's run() and prints its JSON when the file is the process entry point. */
export async function runBenchIfMain(
  moduleUrl: string, run: (args: Record<string, string | boolean>) => Promise<unknown>,
): Promise<void> {
  if (!process.argv[1] || moduleUrl !== pathToFileURL(process.argv[1]).href) return;
  console.log(JSON.stringify(await run(benchFlags(process.argv.slice(2))), null, 2));
}

/** Fastest of `reps` timed calls, in ms, after one untimed warm-up call. */
export function bestOfMs(fn: () => void, reps: number): number {
  fn();
  let best = Infinity;
  for (let r = 0; r < reps; r++) {
    const t = performance.now();
    fn();
    best = Math.min(best, performance.now() - t);
  }
  return best;
}
