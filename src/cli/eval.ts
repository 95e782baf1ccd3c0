// frugal eval: perplexity over non-overlapping windows, by-position curves, zero-shot multiple choice.
import { ByteTokenizer, tokenizeDocuments, type Tokenizer } from '../data/index.ts';
import { evaluateMultipleChoice, loadMcTasks } from '../eval/multiple-choice.ts';
import { evaluatePerplexity, type TokenSource } from '../eval/perplexity.ts';
import { loadModelOn } from './model-spec.ts';
import { DEVICE_FLAGS, useDevice } from './device.ts';
import { type CommandSpec, type Flags, need, num, str } from './args.ts';
import { chooseTokenizer, loadSplit } from './common.ts';
import { streamTokens } from '../data/stream-tokens.ts';
import { Progress } from '../train/progress.ts';

export const spec: CommandSpec = {
  name: 'eval',
  summary: 'evaluate a model: perplexity (non-overlapping windows), perplexity by position, multiple-choice accuracy',
  usage: 'frugal eval --model DIR|FILE.gguf [--data FILE] [--window N] [--by-position] [--llama-cpp] [--tasks FILE.jsonl] [--json] [--device cpu|webgpu] [--threads N]',
  flags: {
    model: { type: 'string', arg: 'DIR|FILE.gguf', help: 'checkpoint folder, packed folder or GGUF file (LLaMA / Qwen3)' },
    data: { type: 'string', arg: 'PATH', help: 'text to score (.txt/.jsonl/folder; all of it, streamed); default: validation split of the embedded corpus' },
    window: { type: 'int', help: 'window length in tokens (default: the model context, at most 2048)' },
    'max-windows': { type: 'int', help: 'score at most this many windows' },
    'by-position': { type: 'bool', help: 'also report perplexity by position within the window' },
    buckets: { type: 'int', help: 'position buckets for --by-position', default: 8 },
    tasks: { type: 'string', arg: 'FILE', help: 'multiple-choice JSONL file of {context, choices, gold}' },
    tokenizer: { type: 'string', arg: 'bytes|PATH', help: "tokenizer when the model folder has none ('bytes' or a tokenizer.json)" },
    'llama-cpp': { type: 'bool', help: "score as llama.cpp's llama-perplexity does: BOS first (when the tokenizer adds one), no EOS, whole windows only, each window's first token replaced by BOS and its second half scored" },
    json: { type: 'bool', help: 'print one JSON object with all results' },
    ...DEVICE_FLAGS,
  },
};

export async function run(f: Flags): Promise<number> {
  const dir = need(f, 'model', 'eval');
  const { model, tokenizer } = await loadModelOn(dir, await useDevice(f));
  const tok: Tokenizer = tokenizer ?? (str(f, 'tokenizer') ? chooseTokenizer(str(f, 'tokenizer')) : new ByteTokenizer());
  const result: Record<string, unknown> = { model: dir };
  const window = f.window === undefined ? undefined : num(f, 'window', (v) => v >= 2, '>= 2');
  const maxWindows = f['max-windows'] === undefined ? undefined : num(f, 'max-windows', (v) => v >= 1, '>= 1');
  if (f.data !== undefined || f.tasks === undefined) {
    const path = str(f, 'data');
    const progress = new Progress(f.json ? 'none' : 'bar', 1, 'eval');
    const lc = f['llama-cpp'] ? { bos: tok.bosId } : undefined;
    // A --data path is streamed: its text is never held, nor its ids (only the window being scored).
    // llama-perplexity's token stream is BOS once (when the tokenizer adds one), then the text as is.
    let scored = 0;
    let shown = 0;
    let source: TokenSource;
    if (path) {
      const pieces = streamTokens(path, tok, {
        eos: !lc,
        onProgress: (read, size) => {
          // A line per tenth of a large input.
          const tenth = Math.floor((10 * read) / size);
          if (size < 8 << 20 || tenth === shown) return;
          shown = tenth;
          progress.note(`eval: read ${(read / 2 ** 20).toFixed(0)}/${(size / 2 ** 20).toFixed(0)} MiB, ${scored} windows scored`);
        },
      });
      source = lc ? withBos(tok.bosId, pieces) : pieces;
    } else {
      const docs = loadSplit(undefined).validationDocs;
      source = lc ? withBos(tok.bosId, docs.map((d) => Int32Array.from(tok.encode(d)))) : tokenizeDocuments(docs, tok);
    }
    const every = (done: number, total: number | undefined) => {
      scored = done;
      if (total !== undefined && total > 1 && (done === total || done % Math.ceil(total / 10) === 0)) progress.note(`eval: window ${done}/${total}`);
    };
    const buckets = f['by-position'] ? num(f, 'buckets', (v) => Number.isInteger(v) && v >= 1, 'an integer >= 1') : undefined;
    const { byPosition, ...ppl } = await evaluatePerplexity(model, source, { window, maxWindows, llamaCpp: lc, onWindow: every, buckets });
    result.perplexity = ppl;
    if (!f.json) console.log(`perplexity ${ppl.perplexity.toFixed(4)} (${ppl.nll.toFixed(4)} nats/token) over ${ppl.tokens} tokens in ${ppl.windows} windows of ${ppl.window}`);
    if (byPosition) {
      result.by_position = byPosition;
      if (!f.json) for (const x of byPosition) console.log(`  positions ${x.from}-${x.to - 1}: perplexity ${x.perplexity.toFixed(4)} (${x.tokens} tokens)`);
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

function* withBos(bos: number | undefined, pieces: Iterable<Int32Array>): Generator<Int32Array> {
  if (bos !== undefined) yield Int32Array.of(bos);
  yield* pieces;
}
