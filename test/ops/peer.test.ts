// PEER fused ops: retrieval against exhaustive scoring of all N keys, the expert mixture against a
// plain composition that materializes the gathered experts, finite-difference gradient checks of
// every fused op, BatchNorm1d semantics, the layer in a CausalLM, usage metrics, bad input.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import '../../src/models/index.ts';
import { CausalLM } from '../../src/models/index.ts';
import { PRESETS } from '../../src/models/presets.ts';
import { ExpertUsage, expertUsageFraction, PEER, usageUnevenness } from '../../src/nn/peer.ts';
import * as op from '../../src/ops/index.ts';
import { batchNorm1d, peerExperts, peerRetrieve, type PeerExpertsOpts } from '../../src/ops/peer.ts';
import { backward, fromArray, noGrad, Rng, type Tensor } from '../../src/tensor/index.ts';
import { assertClose, DEVICE, gradcheck, randArray, randTensor, relNorm } from '../helpers.ts';

function randIdx(rng: Rng, shape: number[], N: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.int(N);
  return fromArray(a, shape, DEVICE);
}

/** Exhaustive reference: every expert's full key [c_i ; c'_j] scored, sorted (stable) descending. */
function bruteForce(q: Float32Array, keys: Float32Array, T: number, H: number, Hk: number, n: number, dh: number, k: number) {
  const idx: number[] = [], score: number[] = [];
  for (let th = 0; th < T * H; th++) {
    const hk = Hk === 1 ? 0 : th % H;
    const all: [number, number][] = [];
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let d = 0; d < dh; d++) {
          s += q[th * 2 * dh + d] * keys[((hk * 2) * n + i) * dh + d] + q[th * 2 * dh + dh + d] * keys[((hk * 2 + 1) * n + j) * dh + d];
        }
        all.push([s, i * n + j]);
      }
    }
    all.sort((a, b) => b[0] - a[0]);
    for (let r = 0; r < k; r++) { score.push(all[r][0]); idx.push(all[r][1]); }
  }
  return { idx, score };
}

for (const Hk of [1, 3]) {
  test(`peerRetrieve: exact top-k over all N experts (${Hk === 1 ? 'shared' : 'per-head'} keys)`, async () => {
    const rng = new Rng(11 + Hk);
    const T = 7, H = 3, n = 12, dh = 5, k = 4;
    const q = randTensor([T, H, 2, dh], rng), keys = randTensor([Hk, 2, n, dh], rng);
    const { indices, scores } = peerRetrieve(q, keys, k);
    const ref = bruteForce((await q.data()) as Float32Array, (await keys.data()) as Float32Array, T, H, Hk, n, dh, k);
    // Random continuous data: no ties, so indices must match exactly.
    assert.deepEqual(Array.from(await indices.data()), ref.idx);
    assertClose(await scores.data(), ref.score, 1e-5, 'scores');
  });

  test(`peerRetrieve: finite-difference gradients of the scores (${Hk === 1 ? 'shared' : 'per-head'} keys)`, async () => {
    const rng = new Rng(5 + Hk);
    const q = randTensor([4, 3, 2, 4], rng), keys = randTensor([Hk, 2, 6, 4], rng);
    // eps small enough that no top-k membership changes under the perturbation.
    await gradcheck((a, b) => peerRetrieve(a, b, 3).scores, [q, keys], { eps: 1e-3, tol: 2e-3 });
  });
}

/** The plain formulation: gather [T, H, k, C] expert rows, then reduce (what the fused op avoids). */
function naiveExperts(x: Tensor, down: Tensor, up: Tensor, idx: Tensor, z: Tensor, o: PeerExpertsOpts): Tensor {
  const [T, H, k] = idx.shape;
  const C = x.shape[1];
  const u = op.embedding(down, idx), v = op.embedding(up, idx); // [T, H, k, C]
  const s = op.sum(op.mul(u, op.reshape(x, [T, 1, 1, C])), -1); // [T, H, k]
  const a = o.activation === 'relu' ? op.relu(s) : op.gelu(s);
  const g = o.score === 'sigmoid' ? op.sigmoid(z) : op.softmax(z);
  return op.sum(op.mul(op.reshape(op.mul(a, g), [T, H, k, 1]), v), [1, 2]);
}

const VARIANTS: PeerExpertsOpts[] = [
  { activation: 'gelu', score: 'softmax' }, { activation: 'relu', score: 'sigmoid' },
];

for (const o of VARIANTS) {
  test(`peerExperts (${o.activation}, ${o.score}) matches the gathered formulation, forward and backward`, async () => {
    const rng = new Rng(3);
    const T = 9, C = 37, N = 50, H = 3, k = 4; // C not a multiple of 16: vector tails
    const x = randTensor([T, C], rng), down = randTensor([N, C], rng, 0.3), up = randTensor([N, C], rng, 0.3);
    const idx = randIdx(rng, [T, H, k], N), z = randTensor([T, H, k], rng);
    const cot = randTensor([T, C], rng);
    const run = async (f: typeof naiveExperts) => {
      for (const t of [x, down, up, z]) { t.requiresGrad = true; t.zeroGrad(); }
      const y = f(x, down, up, idx, z, o);
      backward(y, cot);
      return Promise.all([y, x.grad!, down.grad!, up.grad!, z.grad!].map(async (t) => Float32Array.from(await t.data())));
    };
    const fused = await run(peerExperts), ref = await run(naiveExperts);
    const names = ['y', 'dx', 'ddown', 'dup', 'dscores'];
    fused.forEach((a, i) => assert.ok(relNorm(a, ref[i]) <= 1e-5, `${names[i]}: relative error ${relNorm(a, ref[i])}`));
  });

  test(`peerExperts (${o.activation}, ${o.score}): finite-difference gradients`, async () => {
    const rng = new Rng(8);
    const T = 3, C = 5, N = 7, H = 2, k = 2;
    const idx = randIdx(rng, [T, H, k], N);
    const inputs = [randTensor([T, C], rng), randTensor([N, C], rng), randTensor([N, C], rng), randTensor([T, H, k], rng)];
    await gradcheck((x, d, u, z) => peerExperts(x, d, u, idx, z, o), inputs, { eps: 1e-3, tol: 2e-3 });
  });
}

test('peerExperts: expert-table gradients are row-sparse over exactly the touched rows', async () => {
  const rng = new Rng(4);
  const T = 5, C = 8, N = 1000, H = 2, k = 3;
  const down = randTensor([N, C], rng), up = randTensor([N, C], rng);
  for (const t of [down, up]) { t.requiresGrad = true; t.sparseGrad = true; }
  const idx = randIdx(rng, [T, H, k], N);
  const y = peerExperts(randTensor([T, C], rng), down, up, idx, randTensor([T, H, k], rng));
  backward(y, randTensor([T, C], rng));
  const touched = [...new Set(await idx.data())].sort((a, b) => a - b);
  for (const t of [down, up]) {
    assert.equal(t.grad, null, 'no dense gradient');
    assert.equal(t.sparseGrads.length, 1);
    const rows = Array.from(await t.sparseGrads[0].indices.data()).sort((a, b) => a - b);
    assert.deepEqual(rows, touched, 'each touched row listed once, nothing else');
    assert.deepEqual(t.sparseGrads[0].values.shape, [touched.length, C]);
  }
});

test('batchNorm1d: PyTorch semantics (biased normalization, unbiased running var, eval with running stats)', async () => {
  const rng = new Rng(2);
  const R = 11, F = 3;
  const xs = randArray(R * F, rng, 2);
  const x = fromArray(xs.slice(), [R, F], DEVICE), w = randTensor([F], rng), b = randTensor([F], rng);
  const rm = fromArray(Float32Array.from([0.5, -1, 2]), [F], DEVICE), rv = fromArray(Float32Array.from([1, 2, 0.5]), [F], DEVICE);
  // The step counter is host-side on every backend (BatchNorm1d keeps it on the cpu).
  const nbt = fromArray(new Int32Array([3]), [], 'cpu');
  const rm0 = Array.from(await rm.data()), rv0 = Array.from(await rv.data());
  const wv = await w.data(), bv = await b.data();
  const y = batchNorm1d(x, w, b, { mean: rm, var: rv, numBatchesTracked: nbt }, { training: true });
  const yv = await y.data(), rm1 = await rm.data(), rv1 = await rv.data();
  for (let f = 0; f < F; f++) {
    let m = 0;
    for (let r = 0; r < R; r++) m += xs[r * F + f];
    m /= R;
    let ss = 0;
    for (let r = 0; r < R; r++) ss += (xs[r * F + f] - m) ** 2;
    const expectY = Array.from({ length: R }, (_, r) => (xs[r * F + f] - m) / Math.sqrt(ss / R + 1e-5) * wv[f] + bv[f]);
    assertClose(Array.from({ length: R }, (_, r) => yv[r * F + f]), expectY, 1e-5, `y feature ${f}`);
    assert.ok(Math.abs(rm1[f] - (0.9 * rm0[f] + 0.1 * m)) < 1e-5, 'running mean');
    assert.ok(Math.abs(rv1[f] - (0.9 * rv0[f] + 0.1 * ss / (R - 1))) < 1e-5, 'running var (unbiased)');
  }
  assert.equal((await nbt.data())[0], 4);
  const ye = await batchNorm1d(x, w, b, { mean: rm, var: rv }, { training: false }).data();
  const f = 1, r = 4;
  const expect = (xs[r * F + f] - rm1[f]) / Math.sqrt(rv1[f] + 1e-5) * wv[f] + bv[f];
  assert.ok(Math.abs(ye[r * F + f] - expect) < 1e-5, 'eval uses running stats');
});

for (const training of [true, false]) {
  test(`batchNorm1d (${training ? 'train' : 'eval'}): finite-difference gradients`, async () => {
    const rng = new Rng(6);
    const F = 4;
    const run = { mean: randTensor([F], rng), var: fromArray(Float32Array.from([1, 2, 0.5, 3]), [F], DEVICE) };
    await gradcheck((x, w, b) => batchNorm1d(x, w, b, training ? null : run, { training }),
      [randTensor([6, F], rng), randTensor([F], rng), randTensor([F], rng)], { eps: 1e-3, tol: 2e-3 });
  });
}

for (const sharedKeys of [true, false]) {
  test(`PEER layer (${sharedKeys ? 'paper, BatchNorm' : 'PEER-pytorch, no norm'}): finite-difference gradients end to end`, async () => {
    const rng = new Rng(21);
    const m = new PEER(6, { numExperts: 25, heads: 2, topk: 3, dimKey: 4, queryNorm: sharedKeys ? 'batchnorm' : 'none', sharedKeys,
      activation: 'gelu', score: 'softmax' }, { rng, std: 0.5, device: DEVICE });
    // gradcheck perturbs the input; keep BatchNorm's running stats out of it by checking x only,
    // and the whole layer's parameters through the golden tests.
    await gradcheck((x) => m.forward(x), [randTensor([2, 4, 6], rng)], { eps: 1e-3, tol: 3e-3 });
  });
}

test('CausalLM with ffn peer in one layer: builds from a preset, trains a step, names follow the references', () => {
  const model = new CausalLM(PRESETS['peer-tiny'], { seed: 1, device: DEVICE });
  const names = model.namedParameters().map(([n]) => n);
  for (const n of ['model.layers.1.mlp.query.weight', 'model.layers.1.mlp.query_bn.weight', 'model.layers.1.mlp.sub_keys',
    'model.layers.1.mlp.down.weight', 'model.layers.1.mlp.up.weight', 'model.layers.0.mlp.gate_proj.weight']) {
    assert.ok(names.includes(n), `missing ${n}`);
  }
  assert.ok(model.namedBuffers().some(([n]) => n === 'model.layers.1.mlp.query_bn.running_var'));
  const ids = fromArray(Int32Array.from({ length: 16 }, (_, i) => (i * 7) % 256), [2, 8], DEVICE);
  const loss = model.loss(ids, ids);
  backward(loss);
  const down = model.namedParameters().find(([n]) => n.endsWith('mlp.down.weight'))![1];
  assert.ok(down.sparseGrads.length > 0 && !down.grad, 'expert table gradient stays row-sparse');
  model.eval();
  const logits = noGrad(() => model.forward(ids));
  assert.deepEqual(logits.shape, [2, 8, 256]);
});

test('expert usage: fraction and unevenness', async () => {
  const N = 16;
  const uniform = new Float64Array(N).fill(3);
  assert.equal(expertUsageFraction(uniform), 1);
  assert.ok(Math.abs(usageUnevenness(uniform)) < 1e-12, 'uniform usage has zero KL to uniform');
  const one = new Float64Array(N); one[5] = 10;
  assert.equal(expertUsageFraction(one), 1 / N);
  assert.ok(Math.abs(usageUnevenness(one) - Math.log(N)) < 1e-12, 'a single expert gives log N');
  const u = new ExpertUsage(N);
  u.add(Int32Array.from([1, 1, 2, 3]));
  assert.equal(u.fraction(), 3 / N);
  const z = [0.5, 0.25, 0.25];
  assert.ok(Math.abs(u.unevenness() - (Math.log(N) + z.reduce((s, p) => s + p * Math.log(p), 0))) < 1e-12);
  const m = new PEER(8, { numExperts: 64, heads: 2, topk: 2, dimKey: 4, queryNorm: 'none', sharedKeys: true, activation: 'relu', score: 'softmax' },
    { rng: new Rng(1), device: DEVICE });
  const usage = m.trackUsage()!;
  noGrad(() => m.forward(randTensor([5, 8], new Rng(2))));
  await usage.flush();
  const counted = usage.counts.reduce((s, c) => s + c, 0);
  assert.equal(counted, 5 * 2 * 2, 'every retrieval counted');
});

test('PEER: bad input gives one clear error', () => {
  const rng = new Rng(1);
  const base = { numExperts: 64, heads: 2, topk: 2, dimKey: 4, queryNorm: 'none' as const, sharedKeys: true, activation: 'gelu' as const, score: 'softmax' as const };
  assert.throws(() => new PEER(8, { ...base, numExperts: 60 }, { rng }), /perfect square/);
  assert.throws(() => new PEER(8, { ...base, topk: 9 }, { rng }), /exceeds/);
  assert.throws(() => new PEER(8, { ...base, dimKey: 5 }, { rng }), /even/);
  const m = new PEER(8, base, { rng, device: DEVICE });
  assert.throws(() => m.forward(randTensor([3, 7], rng)), /does not end in 8/);
  assert.throws(() => peerRetrieve(randTensor([2, 2, 2, 3], rng), randTensor([1, 2, 4, 3], rng), 5), /k = 5/);
  assert.throws(() => peerExperts(randTensor([2, 4], rng), randTensor([6, 4], rng), randTensor([6, 4], rng),
    randIdx(rng, [2, 1, 2], 6), randTensor([2, 1, 3], rng)), /indices and scores/);
  assert.throws(() => batchNorm1d(randTensor([1, 4], rng), null, null, null, { training: true }), /more than one/);
});

// Index checks run on every backend: at once on the cpu, at the next readback on a device.
test('peerExperts: an expert id out of range raises a clear error', async () => {
  const rng = new Rng(1);
  const bad = fromArray(Int32Array.from([0, 99]), [1, 1, 2], DEVICE);
  await assert.rejects(async () => {
    const y = peerExperts(randTensor([1, 4], rng), randTensor([6, 4], rng), randTensor([6, 4], rng), bad, randTensor([1, 1, 2], rng));
    await y.data();
  }, /peerExperts: expert id 99 out of range for 6 experts/);
});
