// Decoding with the KV cache (prefill, then one token at a time) equals the full forward pass.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CausalLM } from '../../src/models/index.ts';
import { fromArray, noGrad } from '../../src/tensor/index.ts';
import { DEVICE, relMaxAbs } from '../helpers.ts';

for (const capacity of [64, 0]) {
  test(`KV cache decode equals full forward (GQA, ${capacity ? 'preallocated' : 'growing'} cache)`, async () => {
    const V = 50;
    const m = new CausalLM({ vocabSize: V, hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, intermediateSize: 64 }, { seed: 3, device: DEVICE });
    const ids = Int32Array.from({ length: 12 }, (_, i) => (i * 7 + 3) % V);
    const full = await noGrad(() => m.forward(fromArray(ids, [1, 12], DEVICE))).data();
    const st = m.createState(1, capacity);
    const got: number[] = Array.from(await noGrad(() => m.forward(fromArray(ids.slice(0, 5), [1, 5], DEVICE), st)).data());
    for (let t = 5; t < 12; t++) got.push(...(await noGrad(() => m.forward(fromArray(ids.slice(t, t + 1), [1, 1], DEVICE), st)).data()));
    assert.equal(st.position, 12);
    const err = relMaxAbs(got, full);
    assert.ok(err < 1e-5, `cached decode differs from the full forward by ${err}`);
  });
}
