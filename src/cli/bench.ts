// frugal bench NAME: runs bench/NAME.ts; with --json the result object is the last line on stdout.
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { type CommandSpec, type Flags, UsageError } from './args.ts';

const BENCH_DIR = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', 'bench');

export const spec: CommandSpec = {
  name: 'bench',
  summary: 'run a benchmark from bench/ (each compares against a peer measured in the same run)',
  usage: 'frugal bench NAME [--json] [-- benchmark options as --key value]',
  positionals: ['NAME'],
  flags: { json: { type: 'bool', help: 'print the result as one JSON line (last on stdout)' } },
};

/** bench/kit.ts is what the benchmarks share; probes live in bench/probes/ and are not listed. */
const NOT_BENCHMARKS = new Set(['kit']);

function benchNames(): string[] {
  if (!existsSync(BENCH_DIR)) return [];
  return readdirSync(BENCH_DIR).filter((f) => f.endsWith('.ts')).map((f) => f.slice(0, -3)).filter((n) => !NOT_BENCHMARKS.has(n)).sort();
}

/** Benchmark options pass through untouched: --key value pairs, strings (each benchmark parses them). */
export function splitBenchArgs(argv: string[]): { own: string[]; extra: Record<string, string | boolean> } {
  const own: string[] = [];
  const extra: Record<string, string | boolean> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json' || a === '--help' || a === '-h' || !a.startsWith('--')) {
      own.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    if (eq >= 0) extra[a.slice(2, eq)] = a.slice(eq + 1);
    else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) extra[a.slice(2)] = argv[++i];
    else extra[a.slice(2)] = true;
  }
  return { own, extra };
}

/** Every --key given to a benchmark must be one it reads; a typo is an error, not a silent default. */
export function checkBenchOptions(name: string, extra: Record<string, string | boolean>, known: readonly string[]): void {
  const unknown = Object.keys(extra).filter((k) => !known.includes(k));
  if (unknown.length) {
    throw new UsageError(`benchmark ${name} has no option ${unknown.map((k) => `--${k}`).join(', ')}; its options: ${known.map((k) => `--${k}`).join(' ') || 'none'}`);
  }
}

/** The benchmarks are the repository's TypeScript scripts (bench/*.ts): the CLI, compiled, loads them through tsx. */
async function loadTypeScript(): Promise<void> {
  if (import.meta.url.endsWith('.ts')) return; // already running from the sources under tsx
  try {
    const { register } = await import('tsx/esm/api');
    register();
  } catch {
    throw new UsageError('frugal bench runs the TypeScript benchmarks in bench/ and needs the dev dependency tsx: run it in a clone of the repository after npm install');
  }
}

export async function run(f: Flags, positional: string[], extra: Record<string, string | boolean> = {}): Promise<number> {
  const name = positional[0];
  const names = benchNames();
  if (!name) throw new UsageError(`frugal bench needs a benchmark name; available: ${names.join(', ') || 'none'}`);
  if (!names.includes(name)) throw new UsageError(`unknown benchmark '${name}'; available: ${names.join(', ') || 'none'}`);
  await loadTypeScript();
  const mod = (await import(pathToFileURL(join(BENCH_DIR, `${name}.ts`)).href)) as {
    run?: (a: Record<string, string | boolean>) => Promise<unknown>;
    options?: readonly string[];
  };
  if (typeof mod.run !== 'function') throw new UsageError(`bench/${name}.ts is a standalone script, not a benchmark of \`frugal bench\`; run it with node --import tsx bench/${name}.ts`);
  if (!Array.isArray(mod.options)) throw new Error(`internal: bench/${name}.ts exports no options list`);
  checkBenchOptions(name, extra, mod.options);
  const result = await mod.run(extra);
  console.log(f.json ? JSON.stringify(result) : JSON.stringify(result, null, 2));
  return 0;
}
