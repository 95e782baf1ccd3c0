// Proof the engine trains: a small LLaMA-style model at byte level on English prose (the
// embedded corpus: State of the Union addresses and Moby Dick), AdamW with
// gradient clipping, a few hundred steps; the loss must fall well below the byte unigram entropy.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CausalLM } from '../../src/models/index.ts';
import { backward, fromArray, Rng, tidy } from '../../src/tensor/index.ts';
import { AdamW, clipFactor, gradNorm } from '../../src/train/optim.ts';
import { defaultCorpusDocuments } from '../../src/data/corpus.ts';
import { DEVICE } from '../helpers.ts';

test('tiny LLaMA learns English prose bytes', async () => {
  const bytes = new TextEncoder().encode(defaultCorpusDocuments().join('\n').slice(0, 1_000_000));
  // Unigram entropy in nats: the loss of the best context-free predictor.
  const counts = new Float64Array(256);
  for (const b of bytes) counts[b]++;
  let entropy = 0;
  for (const c of counts) if (c > 0) entropy -= (c / bytes.length) * Math.log(c / bytes.length);

  const model = new CausalLM({ vocabSize: 256, hiddenSize: 64, numLayers: 2, numHeads: 4, intermediateSize: 172 }, { seed: 1, device: DEVICE });
  const params = model.namedParameters();
  const opt = new AdamW(params, { lr: 3e-3, weightDecay: 0.01 });
  const rng = new Rng(5);
  const B = 16, T = 64, steps = 300;
  const losses: number[] = [];
  for (let step = 0; step < steps; step++) {
    const inp = new Int32Array(B * T), tgt = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      const s = rng.int(bytes.length - T - 1);
      for (let t = 0; t < T; t++) { inp[b * T + t] = bytes[s + t]; tgt[b * T + t] = bytes[s + t + 1]; }
    }
    opt.lr = 3e-3 * Math.min(1, (step + 1) / 30);
    const loss = tidy(() => {
      const l = model.loss(fromArray(inp, [B, T], DEVICE), fromArray(tgt, [B * T], DEVICE));
      backward(l);
      return l;
    });
    losses.push(await loss.item());
    opt.update(clipFactor(await gradNorm(model.parameters()), 1.0));
    opt.zeroGrad();
  }
  const last = losses.slice(-20).reduce((a, b) => a + b, 0) / 20;
  console.log(`# unigram entropy ${entropy.toFixed(3)} nats, first loss ${losses[0].toFixed(3)}, last-20 mean ${last.toFixed(3)}`);
  assert.ok(Math.abs(losses[0] - Math.log(256)) < 0.3, `initial loss ${losses[0]} should be near log(256)`);
  assert.ok(last < entropy - 0.6, `final loss ${last.toFixed(3)} is not well below the unigram entropy ${entropy.toFixed(3)}`);
});
