// frugal eval: perplexity over non-overlapping windows, by-position curves, zero-shot multiple choice.
import { ByteTokenizer, tokenizeDocuments } from '../data/index.ts';
import { evaluateMultipleChoice, loadMcTasks } from '../eval/multiple-choice.ts';
import { perplexity, perplexityByPosition } from '../eval/perplexity.ts';
import { loadModelTokenizer } from '../train/checkpoint.ts';
import { loadModelOn } from './model-spec.ts';
import { DEVICE_FLAGS, useDevice } from './device.ts';
import { type CommandSpec, type Flags, need, num, str } from './args.ts';
import { chooseTokenizer, loadSplit } from './common.ts';

export const spec: CommandSpec = {
  name: 'eval',
  summary: 'evaluate a model: perplexity (non-overlapping windows), perplexity by position, multiple-choice accuracy',
  usage: 'frugal eval --model DIR [--data FILE] [--window N] [--by-position] [--tasks FILE.jsonl] [--json] [--device cpu|webgpu] [--threads N]',
  flags: {
    model: { type: 'string', arg: 'DIR', help: 'checkpoint folder' },
    data: { type: 'string', arg: 'PATH', help: 'text to score (.txt/.jsonl/folder; whole file); default: validation split of the embedded corpus' },
    window: { type: 'int', help: 'window length in tokens (default: the model context, at most 2048)' },
    'max-windows': { type: 'int', help: 'score at most this many windows' },
    'by-position': { type: 'bool', help: 'also report perplexity by position within the window' },
    buckets: { type: 'int', help: 'position buckets for --by-position', default: 8 },
    tasks: { type: 'string', arg: 'FILE', help: 'multiple-choice JSONL file of {context, choices, gold}' },
    tokenizer: { type: 'string', arg: 'bytes|PATH', help: "tokenizer when the model folder has none ('bytes' or a tokenizer.json)" },
    json: { type: 'bool', help: 'print one JSON object with all results' },
    ...DEVICE_FLAGS,
  },
};

export async function run(f: Flags): Promise<number> {
  const dir = need(f, 'model', 'eval');
  const model = await loadModelOn(dir, await useDevice(f));
  const tok = loadModelTokenizer(dir) ?? (str(f, 'tokenizer') ? chooseTokenizer(str(f, 'tokenizer')) : new ByteTokenizer());
  const result: Record<string, unknown> = { model: dir };
  const window = f.window === undefined ? undefined : num(f, 'window', (v) => v >= 2, '>= 2');
  const maxWindows = f['max-windows'] === undefined ? undefined : num(f, 'max-windows', (v) => v >= 1, '>= 1');
  if (f.data !== undefined || f.tasks === undefined) {
    const path = str(f, 'data');
    const text = path ? (await import('../data/index.ts')).loadTextDataset(path).documents : loadSplit(undefined).validationDocs;
    const ids = tokenizeDocuments(text, tok);
    const ppl = await perplexity(model, ids, { window, maxWindows });
    result.perplexity = ppl;
    if (!f.json) console.log(`perplexity ${ppl.perplexity.toFixed(4)} (${ppl.nll.toFixed(4)} nats/token) over ${ppl.tokens} tokens in ${ppl.windows} windows of ${ppl.window}`);
    if (f['by-position']) {
      const b = await perplexityByPosition(model, ids, { window, maxWindows, buckets: num(f, 'buckets', (v) => v >= 1, '>= 1') });
      result.by_position = b;
      if (!f.json) for (const x of b) console.log(`  positions ${x.from}-${x.to - 1}: perplexity ${x.perplexity.toFixed(4)} (${x.tokens} tokens)`);
    }
  }
  if (f.tasks !== undefined) {
    const mc = await evaluateMultipleChoice(model, tok, loadMcTasks(str(f, 'tasks')!));
    result.multiple_choice = { acc: mc.acc, acc_norm: mc.acc_norm, items: mc.items };
    if (!f.json) console.log(`multiple choice: acc ${mc.acc.toFixed(4)}, acc_norm ${mc.acc_norm.toFixed(4)} over ${mc.items} items`);
  }
  if (f.json) console.log(JSON.stringify(result));
  return 0;
}
