// metrics.jsonl survives crashes: a last line cut mid-append is removed before the next record (it
// would otherwise glue onto that record and lose it), a resume drops it with the redone steps, and a
// failing write reports one clear line.
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { BatchIterator, ByteTokenizer, PackedDataset } from '../../src/data/index.ts';
import { CausalLM } from '../../src/models/index.ts';
import { cutTornLine, MetricsLog, readMetrics, type StepRecord } from '../../src/train/metrics.ts';
import { train } from '../../src/train/trainer.ts';

const tmp = mkdtempSync(join(tmpdir(), 'frugal-metrics-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const rec = (step: number): StepRecord => ({ type: 'step', step, loss: 5 - step / 10, lr: 1e-3, grad_norm: 1, tokens_per_s: 100 });
/** Every line of the file, each of which must be one complete JSON record. */
const lines = (path: string) => readFileSync(path, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as StepRecord);

test('a torn last line is cut before the next record is appended', () => {
  const path = join(tmp, 'a.jsonl');
  const log = new MetricsLog(path);
  for (let s = 1; s <= 3; s++) log.append(rec(s));
  // A crash in the middle of writing record 4 (bigger than one read-back block, to look back far).
  appendFileSync(path, `{"type":"step","step":4,"loss":4.6,"pad":"${'x'.repeat(70000)}`);
  const again = new MetricsLog(path);
  again.append(rec(4));
  again.append(rec(5));
  assert.deepEqual(lines(path).map((r) => r.step), [1, 2, 3, 4, 5]);
  assert.deepEqual(readMetrics(path), [1, 2, 3, 4, 5].map(rec));
  // A file that is nothing but a torn line becomes empty; a clean file is left as it is.
  const only = join(tmp, 'b.jsonl');
  writeFileSync(only, '{"type":"st');
  cutTornLine(only);
  assert.equal(readFileSync(only, 'utf8'), '');
  const before = readFileSync(path, 'utf8');
  cutTornLine(path);
  assert.equal(readFileSync(path, 'utf8'), before);
  cutTornLine(join(tmp, 'missing.jsonl'));
  assert.equal(existsSync(join(tmp, 'missing.jsonl')), false);
  // sync flushes without changing anything.
  again.sync();
  assert.equal(readFileSync(path, 'utf8'), before);
});

test('a write that fails (full disk) gives one clear error', { skip: !existsSync('/dev/full') && 'no /dev/full here' }, () => {
  assert.throws(() => new MetricsLog('/dev/full').append(rec(1)), /^Error: cannot append to \/dev\/full: ENOSPC$/);
});

test('a resumed run drops a torn line and the steps after its checkpoint', async () => {
  const tokens = Int32Array.from(new ByteTokenizer().encode('one two three four five six seven eight nine ten '.repeat(20)));
  const setup = () => ({
    model: new CausalLM({ vocabSize: 256, hiddenSize: 16, numLayers: 1, numHeads: 2, intermediateSize: 32, maxPositions: 32 }, { seed: 1 }),
    data: new BatchIterator(new PackedDataset(tokens, 16), { batchSize: 2, seed: 2 }), lr: 1e-3, tokenizer: new ByteTokenizer(),
  });
  const full = await train({ ...setup(), steps: 6, outDir: join(tmp, 'full') });
  const dir = join(tmp, 'run');
  await train({ ...setup(), steps: 6, stopAfter: 4, saveEvery: 2, outDir: dir });
  const path = join(dir, 'metrics.jsonl');
  // The killed run had written step 5 after its last checkpoint (step 4) and was cut inside step 6.
  appendFileSync(path, `${JSON.stringify(rec(5))}\n{"type":"step","step":6,"lo`);
  const r = await train({ ...setup(), steps: 6, saveEvery: 2, outDir: dir, resume: true });
  assert.equal(r.losses.length, 2);
  const got = lines(path);
  assert.deepEqual(got.map((x) => x.step), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(got.map((x) => x.loss), full.losses);
});
