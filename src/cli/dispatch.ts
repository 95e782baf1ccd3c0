// The `frugal` command: dispatches to one module per subcommand. A user mistake prints one line
// `frugal: <message>` and exits with code 2; FRUGAL_DEBUG=1 adds the stack trace.
import { helpText, parseArgs, type CommandSpec, type Flags, UsageError } from './args.ts';
import { splitBenchArgs } from './bench.ts';

interface Command {
  spec: CommandSpec;
  run(flags: Flags, positional: string[], extra?: Record<string, string | boolean>): Promise<number>;
}

const COMMANDS: Record<string, () => Promise<Command>> = {
  train: () => import('./train.ts'),
  distill: () => import('./distill.ts'),
  eval: () => import('./eval.ts'),
  generate: () => import('./generate.ts'),
  serve: () => import('./serve.ts'),
  pack: () => import('./pack.ts'),
  bench: () => import('./bench.ts'),
  info: () => import('./info.ts'),
  main: () => import('./main-job.ts'),
  experiment: () => import('./experiment.ts'),
};

const USAGE = `usage: frugal <command> [options]   (frugal <command> --help for details)

commands:
  train      train a model (dense, FBI, TTT, PEER presets) on a text corpus
  distill    distill a student (e.g. 1-bit FBI) from a full-precision teacher
  eval       perplexity, perplexity by position, multiple-choice accuracy
  generate   stream text from a prompt
  serve      OpenAI-compatible HTTP server (completions, chat, streaming, batched decoding)
  pack       pack an FBI model into 1-bit serving format
  bench      run a benchmark from bench/
  info       describe a checkpoint (architecture, parameters, bits/param, size)
  main       the demo pipeline: train, distill, evaluate and compare tiny models
  experiment small fixed comparisons: long-context (attention vs TTT by position), peer-isoflop (dense vs PEER)`;

/** Errors thrown by our own checks are user-facing; JS engine errors mean a bug in frugal. */
function isInternal(e: unknown): boolean {
  if (!(e instanceof Error)) return true;
  if (e instanceof UsageError) return false;
  return e instanceof TypeError || e instanceof ReferenceError || e instanceof SyntaxError || e.message.startsWith('internal');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(USAGE);
    return name ? 0 : 2;
  }
  const load = COMMANDS[name];
  if (!load) throw new UsageError(`unknown command '${name}'; commands: ${Object.keys(COMMANDS).join(', ')}`);
  const cmd = await load();
  const { own, extra } = name === 'bench' ? splitBenchArgs(rest) : { own: rest, extra: {} };
  const { flags, positional, help } = parseArgs(cmd.spec, own);
  if (help) {
    console.log(helpText(cmd.spec));
    return 0;
  }
  return cmd.run(flags, positional, extra);
}

// `frugal info ... | head -1`: the reader went away; stop quietly as other Unix tools do.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    const internal = isInternal(e);
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`frugal: ${internal ? 'internal error: ' : ''}${msg.split('\n')[0]}\n`);
    if (process.env.FRUGAL_DEBUG === '1' && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    else if (internal) process.stderr.write('frugal: this is a bug; rerun with FRUGAL_DEBUG=1 for the stack trace and report it\n');
    process.exitCode = internal ? 1 : 2;
  },
);
