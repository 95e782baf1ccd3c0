// frugal generate: streams a continuation of a prompt.
import { ByteTokenizer } from '../data/index.ts';
import { generate } from '../infer/generate.ts';
import { checkSampling } from '../infer/sampling.ts';
import { describeNonFinite, loadServingModel, nonFiniteWeights } from './model-spec.ts';
import { type CommandSpec, type Flags, need, num, str, UsageError } from './args.ts';
import { chooseTokenizer } from './common.ts';

export const spec: CommandSpec = {
  name: 'generate',
  summary: 'generate text from a prompt, streamed as it is decoded',
  usage: 'frugal generate --model DIR|FILE.gguf --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]',
  flags: {
    model: { type: 'string', arg: 'DIR|FILE.gguf', help: 'checkpoint folder, packed folder or GGUF file (LLaMA / Qwen3)' },
    prompt: { type: 'string', arg: 'TEXT', help: 'the prompt', default: '' },
    'max-new-tokens': { type: 'int', help: 'tokens to generate', default: 100 },
    temperature: { type: 'number', help: 'sampling temperature; 0 = greedy', default: 0.8 },
    'top-k': { type: 'int', help: 'sample among the k most likely tokens (0 = all)', default: 40 },
    'top-p': { type: 'number', help: 'nucleus sampling mass', default: 0.95 },
    seed: { type: 'int', help: 'sampling seed', default: 0 },
    tokenizer: { type: 'string', arg: 'bytes|PATH', help: 'tokenizer when the model folder has none' },
    stats: { type: 'bool', help: 'print decode speed on stderr' },
    'allow-nonfinite': { type: 'bool', help: 'generate even if the weights hold NaN or Inf values' },
  },
};

export async function run(f: Flags): Promise<number> {
  const dir = need(f, 'model', 'generate');
  const sampling = { temperature: num(f, 'temperature'), topK: num(f, 'top-k'), topP: num(f, 'top-p') };
  checkSampling(sampling);
  const { model, tokenizer } = loadServingModel(dir);
  const bad = nonFiniteWeights(model);
  if (bad.values && !f['allow-nonfinite']) {
    throw new UsageError(`${dir} has ${describeNonFinite(bad)}; its output would be garbage (pass --allow-nonfinite to generate anyway)`);
  }
  const tok = tokenizer ?? (str(f, 'tokenizer') ? chooseTokenizer(str(f, 'tokenizer')) : new ByteTokenizer());
  const prompt = str(f, 'prompt')!;
  process.stdout.write(prompt);
  const r = await generate(model, tok, prompt, {
    ...sampling, maxNewTokens: num(f, 'max-new-tokens', (v) => v >= 0, '>= 0'), seed: num(f, 'seed'), stream: (t) => process.stdout.write(t),
  });
  process.stdout.write('\n');
  if (f.stats) process.stderr.write(`${r.ids.length} tokens, ${r.tokensPerSecond.toFixed(1)} tokens/s decode, prefill ${(r.prefillSeconds * 1000).toFixed(1)} ms\n`);
  return 0;
}
