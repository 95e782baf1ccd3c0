// Linear.stacked (several bias-free Linears on one input as one batched product) against the layers
// one by one, and attention's training path, which uses it for q, k and v, against finite differences
// of its inference path (which does not).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SelfAttention } from '../../src/nn/attention.ts';
import { Linear } from '../../src/nn/layers.ts';
import * as op from '../../src/ops/index.ts';
import { backward, fromArray, Rng, type Tensor } from '../../src/tensor/index.ts';
import { assertClose, DEVICE, gradcheck, randArray, randTensor } from '../helpers.ts';

test('Linear.stacked equals each layer, values and gradients', async () => {
  const rng = new Rng(5);
  const ls = [0, 1, 2].map(() => new Linear(6, 4, { rng, device: DEVICE }));
  const xs = randArray(2 * 3 * 6, rng);
  const cots = [0, 1, 2].map(() => fromArray(randArray(2 * 3 * 4, rng), [2, 3, 4], DEVICE));
  const run = async (stacked: boolean) => {
    for (const l of ls) for (const p of l.parameters()) p.zeroGrad();
    const x = fromArray(xs, [2, 3, 6], DEVICE);
    x.requiresGrad = true;
    const ys = stacked ? Linear.stacked(x, ls)! : ls.map((l) => l.forward(x));
    assert.deepEqual(ys.map((y) => y.shape), [[2, 3, 4], [2, 3, 4], [2, 3, 4]]);
    const loss = ys.map((y, i) => op.sum(op.mul(y, cots[i]))).reduce((a, b) => op.add(a, b));
    backward(loss);
    const vals = await Promise.all(ys.map((y) => y.data()));
    const grads = await Promise.all([x, ...ls.flatMap((l) => l.parameters())].map((t) => t.grad!.data()));
    return { vals, grads };
  };
  const one = await run(false), st = await run(true);
  one.vals.forEach((v, i) => assertClose(st.vals[i], v, 1e-6, `output ${i}`));
  one.grads.forEach((g, i) => assertClose(st.grads[i], g, 1e-6, `gradient ${i}`));
});

test('Linear.stacked declines layers it cannot stack', () => {
  const rng = new Rng(6);
  const x = randTensor([3, 6], rng);
  assert.equal(Linear.stacked(x, [new Linear(6, 4, { rng }), new Linear(6, 5, { rng })]), null);
  assert.equal(Linear.stacked(x, [new Linear(6, 4, { rng }), new Linear(6, 4, { rng }, true)]), null);
  assert.equal(Linear.stacked(x, [new Linear(6, 4, { rng })]), null);
});

test('attention with stacked q, k, v: gradients of input and projections match finite differences', async () => {
  const rng = new Rng(7);
  const att = new SelfAttention({ hiddenSize: 8, numHeads: 2, numKvHeads: 2, ropeTheta: 10000, ropeStyle: 'half' },
    (i, o) => new Linear(i, o, { rng, device: DEVICE }));
  const p = new Map(att.namedParameters());
  const w = ['q_proj', 'k_proj', 'v_proj'].map((n) => p.get(`${n}.weight`)!);
  // The finite differences run without gradients (the three products one by one), backward() through
  // the stacked product.
  await gradcheck((x: Tensor) => att.forward(x), [randTensor([2, 5, 8], rng), ...w], { eps: 1e-3 });
});
