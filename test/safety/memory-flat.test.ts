// Memory stays flat over long runs: live ArrayBuffers (where CPU tensors live; the JS heap's own
// noise from compiled code is about 1 MB, too coarse for this) after a forced garbage collection,
// measured early and at the end of a 2000-token generation and of a 1000-step training run.
// Growth is bounded by what the run legitimately keeps (the KV cache).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { BatchIterator, ByteTokenizer, PackedDataset } from '../../src/data/index.ts';
import { generate } from '../../src/infer/generate.ts';
import { CausalLM } from '../../src/models/index.ts';
import { train } from '../../src/train/trainer.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
/** Bytes of live ArrayBuffers, where CPU tensors (weights, activations, caches, logits) live. */
function live(): number {
  gc();
  gc();
  return process.memoryUsage().arrayBuffers;
}
const MB = 1 << 20;
const base = { vocabSize: 256, hiddenSize: 32, numLayers: 2, numHeads: 2, intermediateSize: 64, maxPositions: 2048 };

async function generationGrowth(cfg: object): Promise<{ growth: number; tokens: number }> {
  const model = new CausalLM(cfg, { seed: 3 });
  const tok = new ByteTokenizer();
  let pieces = 0;
  let early = 0;
  const r = await generate(model, tok, 'hi', {
    maxNewTokens: 2000, temperature: 1, topK: 0, topP: 1, seed: 1, stopAtEos: false,
    stream: () => {
      if (++pieces === 200) early = live();
    },
  });
  return { growth: live() - early, tokens: r.ids.length };
}

test('a 2000-token generation keeps memory flat (TTT state is constant; attention grows by its KV cache only)', async (t) => {
  const ttt = await generationGrowth({ ...base, mixer: 'ttt-linear', ttt: { miniBatch: 16 } });
  assert.equal(ttt.tokens, 2000);
  // Retaining even one 256-entry f32 logits row per token would add 1.8 MB over these 1800 tokens.
  assert.ok(ttt.growth < MB / 2, `TTT generation grew by ${(ttt.growth / MB).toFixed(2)} MB`);
  const att = await generationGrowth(base);
  const kvBytes = 2 * base.numLayers * 2000 * base.hiddenSize * 4;
  t.diagnostic(`growth from token 200 to 2000: TTT ${(ttt.growth / 1024).toFixed(0)} KiB, attention ${(att.growth / 1024).toFixed(0)} KiB (KV cache ${(kvBytes / 1024).toFixed(0)} KiB)`);
  assert.ok(att.growth < kvBytes + MB / 2, `attention generation grew by ${(att.growth / MB).toFixed(2)} MB (KV cache ${(kvBytes / MB).toFixed(2)} MB)`);
});

test('a 1000-step training run keeps memory flat', async (t) => {
  const model = new CausalLM({ ...base, maxPositions: 64 }, { seed: 1 });
  const ids = Int32Array.from(new ByteTokenizer().encode('a stitch in time saves nine, and a penny saved is a penny earned. '.repeat(30)));
  const data = new BatchIterator(new PackedDataset(ids, 16), { batchSize: 2, seed: 1 });
  let early = 0;
  const r = await train({
    model, data, steps: 1000, lr: 1e-3, clip: 1,
    onStep: (rec) => {
      if (rec.step === 100) early = live();
    },
  });
  assert.equal(r.step, 1000);
  const growth = live() - early;
  t.diagnostic(`growth from step 100 to 1000: ${(growth / 1024).toFixed(0)} KiB`);
  // The only thing a run keeps per step is its loss (a JS number); one leaked gradient or activation would be kilobytes per step.
  assert.ok(growth < MB / 2, `training grew by ${(growth / MB).toFixed(2)} MB over 900 steps`);
});
