// Every mixer is causal: changing the token at position p leaves the logits before p unchanged.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CausalLM, type ModelConfig } from '../../src/models/index.ts';
import { fromArray, noGrad } from '../../src/tensor/index.ts';
import { DEVICE } from '../helpers.ts';

const base: Partial<ModelConfig> = { vocabSize: 40, hiddenSize: 32, numLayers: 2, numHeads: 2, intermediateSize: 48 };
const variants: [string, Partial<ModelConfig>][] = [
  ['attention', { mixer: 'attention' }],
  ['ttt-linear mamba', { mixer: 'ttt-linear', tieEmbeddings: true, ttt: { backbone: 'mamba', miniBatch: 16, baseLr: 1, convKernel: 4 } }],
  ['ttt-linear transformer', { mixer: 'ttt-linear', ttt: { backbone: 'transformer', miniBatch: 16, baseLr: 1, convKernel: 4 } }],
  ['ttt-mlp mamba', { mixer: 'ttt-mlp', ttt: { backbone: 'mamba', miniBatch: 16, baseLr: 0.1, convKernel: 4 } }],
  ['peer (eval mode)', { ffn: ['swiglu', 'peer'], peer: { numExperts: 64, heads: 2, topk: 4, dimKey: 8, queryNorm: 'batchnorm', sharedKeys: true, activation: 'gelu', score: 'softmax' } }],
];

for (const [name, cfg] of variants) {
  test(`causality: ${name}`, async () => {
    const model = new CausalLM({ ...base, ...cfg }, { seed: 4, device: DEVICE }).eval();
    const L = 40, V = 40;
    const ids = Int32Array.from({ length: L }, (_, i) => (i * 13 + 5) % V);
    const ref = await noGrad(() => model.forward(fromArray(ids, [1, L], DEVICE))).data();
    for (const p of [3, 17, 33]) {
      const alt = ids.slice();
      alt[p] = (alt[p] + 7) % V;
      const out = await noGrad(() => model.forward(fromArray(alt, [1, L], DEVICE))).data();
      let before = 0, after = 0;
      for (let i = 0; i < L * V; i++) {
        const d = Math.abs(out[i] - ref[i]);
        if (i < p * V) before = Math.max(before, d);
        else after = Math.max(after, d);
      }
      assert.equal(before, 0, `${name}: changing token ${p} changed earlier logits by ${before}`);
      assert.ok(after > 0, `${name}: changing token ${p} changed nothing after it`);
    }
  });
}
