// Tokenizers from GGUF metadata: SentencePiece BPE by scores ('llama') and byte-level BPE ('gpt2').
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SentencePieceBpeTokenizer, spmTokenizerMetadata, tokenizerFromGguf } from '../../src/data/gguf-tokenizer.ts';
import { defaultCorpusDocuments, trainBpe } from '../../src/data/index.ts';

const BYTES = Array.from({ length: 256 }, (_, i) => `<0x${i.toString(16).toUpperCase().padStart(2, '0')}>`);
function spm(pieces: [string, number][]): SentencePieceBpeTokenizer {
  const tokens = ['<unk>', '<s>', '</s>', ...BYTES, ...pieces.map(([p]) => p)];
  const scores = [0, 0, 0, ...BYTES.map(() => 0), ...pieces.map(([, s]) => s)];
  const types = tokens.map((_, i) => (i === 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1));
  const tok = tokenizerFromGguf(new Map(Object.entries(spmTokenizerMetadata(tokens, scores, types, { bos: 1, eos: 2, unk: 0 }))));
  assert.ok(tok instanceof SentencePieceBpeTokenizer);
  return tok;
}
const S = '\u2581';

test("'llama' tokenizer merges the highest-scoring pair first and falls back to bytes", () => {
  const pieces: [string, number][] = [[S, -10], ['t', -10], ['h', -10], ['e', -10], [`${S}t`, -4], ['th', -2], ['he', -3], [`${S}th`, -5], [`${S}the`, -1], ['the', -6]];
  const tok = spm(pieces);
  const id = (p: string) => 259 + pieces.findIndex(([x]) => x === p);
  // ▁ t h e: th (-2) first, then ▁th (-5) beats the (-6), then ▁the.
  assert.deepEqual(tok.encode('the'), [id(`${S}the`)]);
  // Without ▁the the greedy order stops at ▁th + e.
  const noThe = spm(pieces.filter(([p]) => p !== `${S}the`));
  assert.deepEqual(noThe.encode('the'), [id(`${S}th`), id('e')]);
  // l and o are not pieces: bytes 0x6C 0x6C 0x6F.
  assert.deepEqual(tok.encode('hello'), [id(S), id('he'), 3 + 0x6c, 3 + 0x6c, 3 + 0x6f]);
  for (const text of ['the hello', 'héllo  the', 'a\nb', '日本']) assert.equal(tok.decode(tok.encode(text)), text);
  assert.equal(tok.bosId, 1);
  assert.equal(tok.eosId, 2);
  // Streaming decode gives the same text, holding back split UTF-8.
  const ids = tok.encode('é the');
  const d = tok.decodeStream();
  assert.equal(ids.map((i) => d.push(i)).join('') + d.flush(), 'é the');
});

test("'gpt2' tokenizer from GGUF metadata encodes like the same byte-level BPE", () => {
  const docs = defaultCorpusDocuments().slice(0, 3).map((d) => d.slice(0, 20000));
  const bpe = trainBpe(docs, { vocabSize: 600 });
  const json = bpe.toJSON() as { model: { vocab: Record<string, number>; merges: [string, string][] }; added_tokens: { id: number; content: string }[] };
  const tokens: string[] = [];
  for (const [t, i] of Object.entries(json.model.vocab)) tokens[i] = t;
  for (const t of json.added_tokens) tokens[t.id] = t.content;
  const special = new Set(json.added_tokens.map((t) => t.id));
  const meta = new Map<string, unknown>([
    ['tokenizer.ggml.model', 'gpt2'], ['tokenizer.ggml.pre', 'gpt-2'], ['tokenizer.ggml.tokens', tokens],
    ['tokenizer.ggml.token_type', Int32Array.from(tokens, (_, i) => (special.has(i) ? 3 : 1))],
    ['tokenizer.ggml.merges', json.model.merges.map(([a, b]) => `${a} ${b}`)], ['tokenizer.ggml.eos_token_id', 0],
  ]);
  const tok = tokenizerFromGguf(meta)!;
  const text = defaultCorpusDocuments()[5].slice(0, 5000);
  assert.deepEqual(tok.encode(text), bpe.encode(text));
  assert.equal(tok.decode(tok.encode(text)), text);
  assert.equal(tok.eosId, 0);
  // Qwen2's pre-tokenizer splits digits one by one (the GPT-2 one keeps runs of digits together).
  meta.set('tokenizer.ggml.pre', 'qwen2');
  const qwen = tokenizerFromGguf(meta)!;
  assert.equal(qwen.decode(qwen.encode('In 1776, 42 states')), 'In 1776, 42 states');
  const digitTokens = (t: typeof tok) => t.encode('1776').length;
  assert.equal(digitTokens(qwen), 4);
  meta.set('tokenizer.ggml.pre', 'mystery');
  assert.throws(() => tokenizerFromGguf(meta, 'x.gguf'), /x\.gguf: pre-tokenizer 'mystery' is not supported/);
  meta.set('tokenizer.ggml.model', 'bert');
  assert.throws(() => tokenizerFromGguf(meta, 'x.gguf'), /tokenizer model 'bert' is not supported \(supported: llama, gpt2\)/);
});
