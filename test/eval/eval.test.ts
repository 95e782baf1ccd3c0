// Evaluation: windowed perplexity equals exp(mean CE) computed independently with the loss op,
// position buckets partition the same tokens, and multiple choice scores a constructed task.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { BatchIterator, ByteTokenizer, PackedDataset } from '../../src/data/index.ts';
import { CausalLM } from '../../src/models/index.ts';
import { fromArray, noGrad } from '../../src/tensor/index.ts';
import { perplexity, perplexityByPosition } from '../../src/eval/perplexity.ts';
import { evaluateMultipleChoice, loadMcTasks, splitContinuation } from '../../src/eval/multiple-choice.ts';
import { train } from '../../src/train/trainer.ts';

const tok = new ByteTokenizer();
const CFG = { vocabSize: 256, hiddenSize: 32, numLayers: 2, numHeads: 2, intermediateSize: 64, maxPositions: 32 };

test('perplexity over non-overlapping windows equals exp of the token-weighted mean loss-op CE', async () => {
  const model = new CausalLM(CFG, { seed: 2 });
  const ids = Int32Array.from(tok.encode('Whenever I find myself growing grim about the mouth; whenever it is a damp, drizzly November in my soul. '.repeat(2)));
  const W = 32;
  const r = await perplexity(model, ids, { window: W });
  let sum = 0, count = 0;
  for (let s = 0; s + 1 < ids.length; s += W) {
    const chunk = ids.subarray(s, Math.min(s + W, ids.length));
    const n = chunk.length - 1;
    const l = noGrad(() => model.loss(fromArray(Int32Array.from(chunk.subarray(0, n)), [1, n]), fromArray(Int32Array.from(chunk.subarray(1)), [n])));
    sum += l.itemSync() * n;
    count += n;
  }
  assert.equal(r.tokens, count);
  assert.equal(r.windows, Math.ceil((ids.length - 1) / W));
  // Float32 kernel vs float64 log-softmax over the same logits: 1e-5 relative (loss tolerance).
  assert.ok(Math.abs(r.nll - sum / count) / (sum / count) < 1e-5, `${r.nll} vs ${sum / count}`);
  const buckets = await perplexityByPosition(model, ids, { window: W, buckets: 4 });
  assert.equal(buckets.reduce((s, b) => s + b.tokens, 0), count);
  const mean = buckets.reduce((s, b) => s + b.nll * b.tokens, 0) / count;
  assert.ok(Math.abs(mean - r.nll) < 1e-9);
  assert.equal(buckets[0].from, 1);
  await assert.rejects(perplexity(model, ids, { window: 64 }), /exceeds the model context/);
});

test('multiple choice: a model trained on the answers scores acc 1; lm-eval style splitting', async () => {
  const facts = ['the sky is blue.', 'grass is green.', 'snow is white.', 'coal is black.'];
  const text = facts.join(' ').concat(' ').repeat(30);
  const model = new CausalLM(CFG, { seed: 1 });
  const tokens = Int32Array.from(tok.encode(text));
  await train({ model, data: new BatchIterator(new PackedDataset(tokens, 24), { batchSize: 8, seed: 1 }), steps: 150, lr: 1e-2, warmup: 10 });
  const dir = mkdtempSync(join(tmpdir(), 'frugal-mc-'));
  try {
    const file = join(dir, 'tasks.jsonl');
    const items = [
      { context: 'the sky is', choices: [' green.', ' blue.', ' black.'], gold: 1 },
      { context: 'grass is', choices: [' green.', ' white.'], gold: 0 },
      { context: 'snow is ', choices: ['black.', 'blue.', 'white.'], gold: 2 },
      { context: 'coal is', choices: [' white.', ' black.'], gold: 1 },
    ];
    writeFileSync(file, items.map((x) => JSON.stringify(x)).join('\n') + '\n');
    const r = await evaluateMultipleChoice(model, tok, loadMcTasks(file));
    assert.equal(r.acc, 1);
    assert.equal(r.acc_norm, 1);
    // Swapping the gold labels must break accuracy: the score depends on the model, not the order.
    const wrong = await evaluateMultipleChoice(model, tok, items.map((x) => ({ ...x, gold: (x.gold + 1) % x.choices.length })));
    assert.equal(wrong.acc, 0);
    writeFileSync(file, '{"context": "x", "choices": ["a"], "gold": 0}\n');
    assert.throws(() => loadMcTasks(file), /tasks.jsonl:1: expected/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const s = splitContinuation(tok, 'snow is ', 'white');
  assert.deepEqual(s.ctx, tok.encode('snow is'));
  assert.deepEqual(s.cont, tok.encode(' white'));
});
