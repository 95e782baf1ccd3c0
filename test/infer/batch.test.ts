// Batched decoding (CausalLM.forwardRows): sequences at different positions decoded in one forward
// give the logits each gets alone, for attention (KV caches) and TTT (fixed state) models; the
// sampling extensions (min-p, repetition penalty) and stop strings.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CausalLM } from '../../src/models/index.ts';
import { step, stepRows } from '../../src/infer/generate.ts';
import { argmax, penalizeRepeats, sampleToken } from '../../src/infer/sampling.ts';
import { StopMatcher } from '../../src/infer/stop.ts';
import { Rng } from '../../src/tensor/index.ts';
import { relMaxAbs } from '../helpers.ts';

const base = { vocabSize: 64, hiddenSize: 32, numLayers: 2, numHeads: 4, intermediateSize: 64, maxPositions: 64 };
const models: [string, CausalLM][] = [
  ['attention', new CausalLM({ ...base, numKvHeads: 2 }, { seed: 1 })],
  ['ttt-linear', new CausalLM({ ...base, mixer: 'ttt-linear' }, { seed: 2 })],
];

for (const [name, model] of models) {
  test(`${name}: rows decoded together match each sequence decoded alone`, async () => {
    model.eval();
    const prompts = [[1, 2, 3], [5, 6, 7, 8, 9, 10, 11], [4]];
    const alone = prompts.map(() => model.createState(1, 40));
    const together = prompts.map(() => model.createState(1, 40));
    for (let i = 0; i < prompts.length; i++) {
      await step(model, prompts[i], alone[i]);
      await step(model, prompts[i], together[i]);
    }
    for (let t = 0; t < 6; t++) {
      const ids = prompts.map((_, i) => (t * 7 + i * 13) % 64);
      const rows = await stepRows(model, ids, together);
      for (let i = 0; i < prompts.length; i++) {
        const ref = await step(model, [ids[i]], alone[i]);
        // Tolerance: 1e-4 relative (golden README); only the matmul row count differs.
        const e = relMaxAbs(rows[i], ref);
        assert.ok(e < 1e-4, `step ${t} row ${i}: ${e}`);
      }
    }
    // Each state advanced by its own tokens only.
    assert.deepEqual(together.map((s) => s.position), prompts.map((p) => p.length + 6));
  });
}

test('min-p keeps only tokens at least min-p times as likely as the best; repetition penalty lowers seen tokens', () => {
  const logits = Float32Array.from([3, 2.9, 0, -1, 2.5]);
  const rng = new Rng(3);
  const seen = new Set<number>();
  for (let i = 0; i < 300; i++) seen.add(sampleToken(logits, { temperature: 1, minP: 0.5 }, rng));
  // p_i / p_max = exp(l_i - 3): 1, 0.905, 0.05, 0.018, 0.61 -> {0, 1, 4}.
  assert.deepEqual([...seen].sort(), [0, 1, 4]);
  const pen = penalizeRepeats(logits, [0, 0, 3], 2);
  assert.deepEqual([...pen], [...Float32Array.from([1.5, 2.9, 0, -2, 2.5])]);
  assert.equal(argmax(pen), 1);
  assert.equal(penalizeRepeats(logits, [0], 1), logits);
});

test('stop strings: matched across pieces, never shown, held-back text released when it cannot match', () => {
  const m = new StopMatcher(['END', '\n\n']);
  const out = ['abc', 'E', 'x', 'yE', 'N', 'Dzz'].map((p) => m.push(p));
  assert.deepEqual(out, ['abc', '', 'Ex', 'y', '', '']);
  assert.equal(m.stopped, true);
  const n = new StopMatcher(['\n\n']);
  assert.equal(n.push('one\n'), 'one');
  assert.equal(n.push('two'), '\ntwo');
  assert.equal(n.push('\n'), '');
  assert.equal(n.flush(), '\n');
  assert.throws(() => new StopMatcher(['']), /non-empty/);
});
