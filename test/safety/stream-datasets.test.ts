// .jsonl files and folders are streamed like .txt: the streamed ids equal tokenizing the loaded
// documents (empty documents left out, EOS after each, chunk edges inside records, lines and
// multi-byte characters), perplexity over the stream equals perplexity over the array, a stream is
// read only as far as --max-windows needs, and a FIFO given as data is refused instead of blocking.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ByteTokenizer, loadTextDataset, tokenizeDocuments, trainBpe, type Tokenizer } from '../../src/data/index.ts';
import { streamTokens } from '../../src/data/stream-tokens.ts';
import { evaluatePerplexity, perplexity } from '../../src/eval/perplexity.ts';
import { CausalLM } from '../../src/models/index.ts';
import { saveCheckpoint } from '../../src/train/checkpoint.ts';
import { assertUserError, frugalIn } from '../cli-helpers.ts';

const tmp = mkdtempSync(join(tmpdir(), 'frugal-streamdata-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const frugal = frugalIn(tmp);

const dir = join(tmp, 'data');
mkdirSync(join(dir, 'sub', 'deeper'), { recursive: true });
const records = Array.from({ length: 120 }, (_, i) => (i % 17 === 5 ? '   ' : `record ${i}: crème brûlée — ${'naïve '.repeat(i % 5)}\nsecond line ${i}`));
writeFileSync(join(dir, 'a.jsonl'), records.map((text, i) => JSON.stringify({ text, id: i }) + (i % 9 === 0 ? '\n\n' : '\n')).join(''));
writeFileSync(join(dir, 'b.txt'), `\n\n  ${Array.from({ length: 200 }, (_, i) => `prose line ${i} über straße`).join('\n')}`);
writeFileSync(join(dir, 'sub', 'blank.txt'), ' \n\t\n');
writeFileSync(join(dir, 'sub', 'deeper', 'c.jsonl'), '{"text":"last record"}');
writeFileSync(join(dir, 'sub', 'skip.csv'), 'not,text');

/** Byte tokens with an EOS id, to check where EOS goes. */
const bytesEos: Tokenizer = Object.assign(Object.create(new ByteTokenizer()) as Tokenizer, { eosId: 0 });
const concat = (pieces: Iterable<Int32Array>) => {
  const parts = [...pieces];
  const out = new Int32Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};

test('streamed ids of .jsonl files and folders equal tokenizing the loaded documents', () => {
  const docs = loadTextDataset(dir).documents;
  // 120 records less 7 blank ones, b.txt, the final record without a newline; blank.txt is left out.
  assert.equal(docs.length, 120 - 7 + 2);
  assert.equal(docs.at(-1), 'last record');
  const bpe = trainBpe(docs.join('\n'), { vocabSize: 300 });
  for (const tok of [new ByteTokenizer(), bytesEos, bpe]) {
    const whole = tokenizeDocuments(docs, tok);
    for (const chunkBytes of [5, 64, 1 << 16]) {
      assert.deepEqual(concat(streamTokens(dir, tok, { chunkBytes })), whole, `chunks of ${chunkBytes}`);
    }
    assert.deepEqual(concat(streamTokens(join(dir, 'a.jsonl'), tok, { chunkBytes: 7 })), tokenizeDocuments(loadTextDataset(join(dir, 'a.jsonl')).documents, tok));
  }
  // Without EOS (llama.cpp scoring): the documents' ids back to back.
  assert.deepEqual(concat(streamTokens(dir, bytesEos, { eos: false, chunkBytes: 9 })), Int32Array.from(docs.flatMap((d) => bytesEos.encode(d))));
  // Errors keep their line numbers when lines straddle chunks.
  writeFileSync(join(tmp, 'bad.jsonl'), `${'{"text":"fine"}\n'.repeat(40)}{"text": oops}\n`);
  assert.throws(() => concat(streamTokens(join(tmp, 'bad.jsonl'), bytesEos, { chunkBytes: 6 })), /bad\.jsonl:41: invalid JSON/);
  writeFileSync(join(tmp, 'blank.jsonl'), '{"text":"  "}\n\n');
  assert.throws(() => concat(streamTokens(join(tmp, 'blank.jsonl'), bytesEos)), /contains no text/);
});

test('chunk edges never change ids: blank lines, trailing spaces, CRLF; non-chunk-safe tokenizers get whole documents', () => {
  const lines = Array.from({ length: 300 }, (_, i) => `${i % 3 ? 'word' : 'said'} ${i}${' '.repeat(i % 3)}${i % 4 ? '\n' : '\r\n'}${i % 5 ? '' : '\n\n'}`);
  const file = join(tmp, 'edges.txt');
  writeFileSync(file, lines.join(''));
  const docs = loadTextDataset(file).documents;
  const bpe = trainBpe(docs[0], { vocabSize: 420 });
  // Marks the start of every encode call, as SentencePiece's Metaspace pre-tokenizer does.
  const marking: Tokenizer = Object.assign(Object.create(new ByteTokenizer()) as Tokenizer, { encode: (t: string) => [1, ...new ByteTokenizer().encode(t)], chunkSafe: false });
  for (const tok of [bpe, new ByteTokenizer(), marking]) {
    for (const chunkBytes of [3, 17, 100]) assert.deepEqual(concat(streamTokens(file, tok, { chunkBytes })), tokenizeDocuments(docs, tok), `chunks of ${chunkBytes}`);
  }
});

test('perplexity over a stream equals perplexity over the array; --max-windows stops reading', async () => {
  const model = new CausalLM({ vocabSize: 256, hiddenSize: 16, numLayers: 1, numHeads: 2, intermediateSize: 32, maxPositions: 64 }, { seed: 2 });
  const tok = bytesEos;
  const ids = tokenizeDocuments(loadTextDataset(dir).documents, tok);
  for (const window of [64, 37]) {
    const a = await evaluatePerplexity(model, ids, { window, buckets: 5 });
    const s = await evaluatePerplexity(model, streamTokens(dir, tok, { chunkBytes: 100 }), { window, buckets: 5 });
    assert.deepEqual(s, a);
    const lc = { bos: 1 };
    assert.deepEqual(await perplexity(model, streamTokens(dir, tok, { chunkBytes: 50 }), { window, llamaCpp: lc }), await perplexity(model, ids, { window, llamaCpp: lc }));
  }
  let pieces = 0;
  const counted = function* () {
    for (const p of streamTokens(dir, tok, { chunkBytes: 64 })) {
      pieces++;
      yield p;
    }
  };
  const few = await perplexity(model, counted(), { window: 64, maxWindows: 3 });
  assert.equal(few.windows, 3);
  assert.deepEqual(few, await perplexity(model, ids, { window: 64, maxWindows: 3 }));
  assert.ok(pieces < 10, `read ${pieces} pieces for 3 windows`);
  await assert.rejects(perplexity(model, [Int32Array.of(5)], { window: 64 }), /has 1 token\(s\); perplexity needs at least 2/);
  await assert.rejects(perplexity(model, [Int32Array.of(5, 6), Int32Array.of(7)], { window: 64, llamaCpp: {} }), /has 3 tokens, fewer than one window of 64/);
  await assert.rejects(perplexity(model, [Int32Array.of(5, 6), Int32Array.of(700)], { window: 64 }), /token id 700 is outside the model's vocabulary of 256/);
});

test('frugal eval over a folder streams it; a FIFO as data or inside a folder is refused at once', () => {
  const model = join(tmp, 'm');
  saveCheckpoint(model, new CausalLM({ vocabSize: 256, hiddenSize: 16, numLayers: 1, numHeads: 2, intermediateSize: 32, maxPositions: 64 }, { seed: 2 }));
  const r = frugal('eval', '--model', model, '--data', dir, '--by-position', '--buckets', '3', '--json');
  assert.equal(r.code, 0, r.err);
  const out = JSON.parse(r.out) as { perplexity: { tokens: number }; by_position: { tokens: number }[] };
  assert.equal(out.by_position.length, 3);
  assert.equal(out.by_position.reduce((s, b) => s + b.tokens, 0), out.perplexity.tokens);
  const fifo = join(tmp, 'pipe.txt');
  execFileSync('mkfifo', [fifo]);
  const t0 = performance.now();
  assertUserError(frugal('eval', '--model', model, '--data', fifo), /pipe\.txt is a named pipe \(FIFO\), not a file/);
  const fifoDir = join(tmp, 'withfifo');
  mkdirSync(fifoDir);
  writeFileSync(join(fifoDir, 'a.txt'), 'some text here');
  execFileSync('mkfifo', [join(fifoDir, 'b.jsonl')]);
  assertUserError(frugal('eval', '--model', model, '--data', fifoDir), /b\.jsonl is a named pipe \(FIFO\), not a file/);
  // Training data goes through the same reader.
  assertUserError(frugal('train', '--preset', 'micro-dense', '--data', fifo, '--steps', '1', '--ctx', '16', '--batch', '2', '--out', join(tmp, 'run'), '--quiet'), /named pipe/);
  assert.ok(performance.now() - t0 < 15_000);
});
