// Seeded training is bitwise reproducible: two runs of the same steps give identical losses and
// parameters, with shapes large enough that every threaded kernel (GEMM, attention backward,
// cross-entropy, AdamW) splits its work across threads.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CausalLM } from '../../src/models/index.ts';
import { backward, fromArray, Rng, tidy } from '../../src/tensor/index.ts';
import { AdamW, clipFactor, gradNorm } from '../../src/train/optim.ts';
import { DEVICE } from '../helpers.ts';

async function run(): Promise<{ losses: number[]; params: Float32Array[] }> {
  const model = new CausalLM({ vocabSize: 256, hiddenSize: 64, numLayers: 2, numHeads: 4, intermediateSize: 128, linear: 'fbi' }, { seed: 9, device: DEVICE });
  const opt = new AdamW(model.namedParameters(), { lr: 3e-3 });
  const rng = new Rng(4);
  const B = 4, T = 128;
  const losses: number[] = [];
  for (let step = 0; step < 3; step++) {
    const inp = Int32Array.from({ length: B * T }, () => rng.int(256));
    const tgt = Int32Array.from({ length: B * T }, () => rng.int(256));
    const loss = tidy(() => {
      const l = model.loss(fromArray(inp, [B, T], DEVICE), fromArray(tgt, [B * T], DEVICE));
      backward(l);
      return l;
    });
    losses.push(await loss.item());
    opt.update(clipFactor(await gradNorm(model.parameters()), 1));
    opt.zeroGrad();
  }
  return { losses, params: await Promise.all(model.parameters().map(async (p) => (await p.data()).slice() as Float32Array)) };
}

test('two seeded training runs are bitwise identical', async () => {
  const a = await run(), b = await run();
  assert.deepEqual(b.losses, a.losses);
  a.params.forEach((p, i) => assert.ok(p.every((v, j) => Object.is(v, b.params[i][j])), `parameter ${i} differs between runs`));
});
