// frugal generate: streams a continuation of a prompt (given inline, from a file, or from stdin).
import { readFileSync } from 'node:fs';
import { ByteTokenizer } from '../data/index.ts';
import { generate } from '../infer/generate.ts';
import { checkSampling } from '../infer/sampling.ts';
import { describeNonFinite, loadServingModel, nonFiniteWeights } from './model-spec.ts';
import { type CommandSpec, type Flags, need, num, str, UsageError } from './args.ts';
import { chooseTokenizer } from './common.ts';
import { DEVICE_FLAGS, useDevice } from './device.ts';

export const spec: CommandSpec = {
  name: 'generate',
  summary: 'generate text from a prompt, streamed as it is decoded',
  usage: 'frugal generate --model DIR|FILE.gguf (--prompt TEXT | --prompt-file PATH|-) [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R] [--stop TEXT] [--seed S] [--device cpu|webgpu] [--threads N] [--allow-nonfinite]',
  flags: {
    model: { type: 'string', arg: 'DIR|FILE.gguf', help: 'checkpoint folder, packed folder or GGUF file (LLaMA / Qwen3)' },
    prompt: { type: 'string', arg: 'TEXT', help: 'the prompt', default: '' },
    'prompt-file': { type: 'string', arg: 'PATH|-', help: "read the prompt from a file ('-' = stdin) instead of --prompt" },
    'max-new-tokens': { type: 'int', help: 'tokens to generate', default: 100 },
    temperature: { type: 'number', help: 'sampling temperature; 0 = greedy', default: 0.8 },
    'top-k': { type: 'int', help: 'sample among the k most likely tokens (0 = all)', default: 40 },
    'top-p': { type: 'number', help: 'nucleus sampling mass', default: 0.95 },
    'min-p': { type: 'number', help: 'drop tokens less likely than this fraction of the most likely one (0 = off)', default: 0 },
    'repeat-penalty': { type: 'number', help: 'penalty on tokens among the last 64 (1 = off)', default: 1 },
    stop: { type: 'string', arg: 'TEXT', help: 'end the continuation before this text (\\n and \\t are understood)' },
    seed: { type: 'int', help: 'sampling seed', default: 0 },
    tokenizer: { type: 'string', arg: 'bytes|PATH', help: 'tokenizer when the model folder has none' },
    stats: { type: 'bool', help: 'print decode speed on stderr' },
    'allow-nonfinite': { type: 'bool', help: 'generate even if the weights hold NaN or Inf values' },
    ...DEVICE_FLAGS,
  },
};

/** `\n`, `\t` and `\\` in a flag value, so a stop string can be a newline. */
function unescapeFlag(s: string): string {
  return s.replace(/\\([nt\\])/g, (_, c: string) => (c === 'n' ? '\n' : c === 't' ? '\t' : '\\'));
}

/** --prompt, or the contents of --prompt-file ('-' reads stdin to its end). */
function readPrompt(f: Flags): string {
  const file = str(f, 'prompt-file');
  if (file === undefined) return str(f, 'prompt') ?? '';
  if (str(f, 'prompt')) throw new UsageError('give either --prompt or --prompt-file, not both');
  try {
    return readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read the prompt from ${file === '-' ? 'stdin' : file}: ${(e as Error).message}`);
  }
}

/** The sampling flags shared by generate and serve (its defaults). */
function samplingFlags(f: Flags) {
  const s = {
    temperature: num(f, 'temperature'), topK: num(f, 'top-k'), topP: num(f, 'top-p'), minP: num(f, 'min-p'), repeatPenalty: num(f, 'repeat-penalty'),
  };
  try {
    checkSampling(s);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  return s;
}

export async function run(f: Flags): Promise<number> {
  const dir = need(f, 'model', 'generate');
  const sampling = samplingFlags(f);
  const prompt = readPrompt(f);
  const stop = str(f, 'stop');
  if (stop === '') throw new UsageError('--stop needs a non-empty text');
  const device = await useDevice(f);
  const { model: loaded, tokenizer } = loadServingModel(dir);
  const bad = nonFiniteWeights(loaded);
  if (bad.values && !f['allow-nonfinite']) {
    throw new UsageError(`${dir} has ${describeNonFinite(bad)}; its output would be garbage (pass --allow-nonfinite to generate anyway)`);
  }
  const model = await loaded.moveTo(device);
  const tok = tokenizer ?? (str(f, 'tokenizer') ? chooseTokenizer(str(f, 'tokenizer')) : new ByteTokenizer());
  process.stdout.write(prompt);
  const r = await generate(model, tok, prompt, {
    ...sampling, maxNewTokens: num(f, 'max-new-tokens', (v) => v >= 0, '>= 0'), seed: num(f, 'seed'), stream: (t) => process.stdout.write(t),
    stop: stop === undefined ? undefined : [unescapeFlag(stop)],
  });
  process.stdout.write('\n');
  if (f.stats) process.stderr.write(`${r.ids.length} tokens, ${r.tokensPerSecond.toFixed(1)} tokens/s decode, prefill ${(r.prefillSeconds * 1000).toFixed(1)} ms\n`);
  return 0;
}
