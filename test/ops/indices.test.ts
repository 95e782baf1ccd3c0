// Index validation is the same on every backend (FRUGAL_DEVICE): an out-of-range token id or target
// raises one clear error, at once where the backend reads synchronously, at the next readback on a
// device; valid indices (and the ignore index) pass.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { initWebGPU } from '../../src/backend/webgpu/index.ts';
import { crossEntropy, embedding } from '../../src/ops/index.ts';
import { fromArray, Rng } from '../../src/tensor/index.ts';
import { DEVICE, randTensor } from '../helpers.ts';

if (DEVICE === 'webgpu') await initWebGPU();
const ids = (a: number[], shape = [a.length]) => fromArray(Int32Array.from(a), shape, DEVICE);

test(`${DEVICE}: embedding refuses a token id outside the table, names the first one`, async () => {
  const table = randTensor([5, 3], new Rng(1));
  assert.equal((await embedding(table, ids([0, 4, 2])).data()).length, 9);
  await assert.rejects(async () => { await embedding(table, ids([1, 7, -2])).data(); },
    /^Error: embedding: token id 7 out of range for a vocabulary of 5$/);
  // The failed check does not linger: the next lookup reads back normally.
  assert.equal((await embedding(table, ids([3])).data()).length, 3);
});

test(`${DEVICE}: cross-entropy refuses a target outside the vocabulary, allows the ignore index`, async () => {
  const logits = randTensor([4, 6], new Rng(2));
  const ok = await crossEntropy(logits, ids([0, 5, -100, 2])).item();
  assert.ok(Number.isFinite(ok));
  await assert.rejects(async () => { await crossEntropy(logits, ids([0, 6, -100, 2])).item(); },
    /crossEntropy: target 6 out of range for vocabulary 6/);
  await assert.rejects(async () => { await crossEntropy(logits, ids([0, 1, -3, 2])).item(); },
    /crossEntropy: target -3 out of range for vocabulary 6/);
});
