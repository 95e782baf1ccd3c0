// Streaming evaluation: a text file is tokenized chunk by chunk (never held whole) with the same ids
// as the whole text, and perplexity scores window after window without keeping per-window losses.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { ByteTokenizer, tokenizeDocuments, trainBpe } from '../../src/data/index.ts';
import { tokenizeFileStreamed } from '../../src/data/stream-tokens.ts';
import { perplexity, perplexityByPosition, windowNlls } from '../../src/eval/perplexity.ts';
import { CausalLM } from '../../src/models/index.ts';
import { saveCheckpoint } from '../../src/train/checkpoint.ts';

const tmp = mkdtempSync(join(tmpdir(), 'frugal-stream-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const lines = Array.from({ length: 3000 }, (_, i) => `line ${i}: the naïve café serves crème brûlée — ${'ok '.repeat(i % 7)}`);
const text = `${lines.join('\n')}\n`;
const file = join(tmp, 'big.txt');
writeFileSync(file, text);

test('chunked tokenization of a file equals tokenizing it whole (bytes and byte-level BPE, multi-byte characters across chunk edges)', () => {
  const bpe = trainBpe(text.slice(0, 20000), { vocabSize: 400 });
  for (const tok of [new ByteTokenizer(), bpe]) {
    const whole = tokenizeDocuments([text], tok);
    let calls = 0;
    // 1000-byte chunks: about 190 chunks, many cutting a UTF-8 sequence.
    const streamed = tokenizeFileStreamed(file, tok, () => void calls++, 1000);
    assert.ok(calls > 100);
    assert.deepEqual(streamed, whole);
  }
});

test('perplexity from streamed window scores equals the per-window losses', async () => {
  const model = new CausalLM({ vocabSize: 256, hiddenSize: 32, numLayers: 1, numHeads: 2, intermediateSize: 64, maxPositions: 64 }, { seed: 1 });
  const ids = tokenizeDocuments([text.slice(0, 5000)], new ByteTokenizer());
  const nlls = await windowNlls(model, ids, { window: 64 });
  const sum = nlls.reduce((s, w) => s + w.reduce((a, b) => a + b, 0), 0);
  const count = nlls.reduce((s, w) => s + w.length, 0);
  let seen = 0;
  const p = await perplexity(model, ids, { window: 64, onWindow: (d, t) => { seen = d; assert.equal(t, nlls.length); } });
  assert.equal(seen, nlls.length);
  assert.equal(p.tokens, count);
  assert.ok(Math.abs(p.nll - sum / count) < 1e-12);
  const b = await perplexityByPosition(model, ids, { window: 64, buckets: 4 });
  assert.equal(b.reduce((s, x) => s + x.tokens, 0), count);
  // The CLI prints progress on stderr.
  const dir = join(tmp, 'm');
  saveCheckpoint(dir, model);
  const r = spawnSync(process.execPath, [join(resolve(import.meta.dirname, '..', '..'), 'bin', 'frugal.js'), 'eval', '--model', dir, '--data', file, '--window', '64', '--max-windows', '20'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /eval: window 20\/20/);
  assert.match(r.stdout, /perplexity [\d.]+ .* in 20 windows of 64/);
});
