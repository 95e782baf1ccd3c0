// TTT scan op: finite-difference gradients (linear and MLP, with a remainder mini-batch), and the dual
// form over whole sequences against token-by-token decoding through the state (primal form).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { tttScan, type TttKind, TttScanState } from '../../src/ops/ttt.ts';
import { fromArray, noGrad, Rng, type Tensor } from '../../src/tensor/index.ts';
import { DEVICE, gradcheck, randTensor, relMaxAbs } from '../helpers.ts';
import * as op from '../../src/ops/index.ts';

interface Case { kind: TttKind; b: number; nh: number; l: number; f: number; k: number }

function inputs(c: Case, seed: number): Tensor[] {
  const rng = new Rng(seed);
  const h = c.kind === 'mlp' ? 4 * c.f : c.f;
  const pos = (shape: number[], lo: number, hi: number) =>
    fromArray(Float32Array.from({ length: shape.reduce((a, s) => a * s, 1) }, () => lo + (hi - lo) * rng.uniform()), shape, DEVICE);
  const xs = [
    randTensor([c.b, c.nh, c.l, c.f], rng), randTensor([c.b, c.nh, c.l, c.f], rng), randTensor([c.b, c.nh, c.l, c.f], rng),
    pos([c.b, c.nh, c.l], 0.2, 0.6),
    fromArray(Float32Array.from({ length: c.k }, (_, i) => 1 / (i + 1) + 0.1 * rng.uniform()), [c.k], DEVICE),
    randTensor([c.nh, c.f, h], rng, 0.4), randTensor([c.nh, 1, h], rng, 0.2),
  ];
  if (c.kind === 'mlp') xs.push(randTensor([c.nh, h, c.f], rng, 0.3), randTensor([c.nh, 1, c.f], rng, 0.2));
  xs.push(pos([c.nh, c.f], 0.5, 1.5), randTensor([c.nh, c.f], rng, 0.2));
  return xs;
}

function apply(c: Case, xs: Tensor[], state?: TttScanState): Tensor {
  const [xq, xk, xv, lr, te, w1, b1] = xs;
  const mlp = c.kind === 'mlp';
  const inner = mlp ? { w1, b1, w2: xs[7], b2: xs[8] } : { w1, b1 };
  return tttScan(c.kind, xq, xk, xv, lr, te, inner, xs.at(-2)!, xs.at(-1)!, { miniBatch: c.k, state });
}

for (const kind of ['linear', 'mlp'] as const) {
  test(`tttScan ${kind}: gradients match finite differences (2 full mini-batches + remainder)`, async () => {
    const c: Case = { kind, b: 2, nh: 2, l: 11, f: 4, k: 4 };
    const xs = inputs(c, 3);
    // eps 3e-3: at 1e-2 the truncation error of central differences through the MLP nears the tolerance.
    await gradcheck((...t) => apply(c, t), xs, { eps: 3e-3, tol: 1e-2 });
  });

  test(`tttScan ${kind}: dual form over the sequence equals token-by-token decoding`, async () => {
    const c: Case = { kind, b: 2, nh: 3, l: 37, f: 8, k: 16 };
    const xs = inputs(c, 5);
    const full = await noGrad(() => apply(c, xs)).data();
    // Prefill 20 tokens (one dual mini-batch + 4 primal tokens), then decode one token at a time.
    const state = new TttScanState(kind, c.b, c.nh, c.f, DEVICE);
    const parts: Float32Array[] = [];
    const step = async (t0: number, t1: number) => {
      const sub = xs.slice();
      for (const i of [0, 1, 2]) sub[i] = op.slice(xs[i], 2, t0, t1);
      sub[3] = op.slice(xs[3], 2, t0, t1);
      const cc = { ...c, l: t1 - t0 };
      parts.push(await noGrad(() => apply(cc, sub, state)).data() as Float32Array);
    };
    await step(0, 20);
    for (let t = 20; t < c.l; t++) await step(t, t + 1);
    // Reassemble [B, L, C] from chunks that are [B, l_i, C].
    const width = c.nh * c.f;
    const got = new Float32Array(full.length);
    let t0 = 0;
    for (const p of parts) {
      const li = p.length / (c.b * width);
      for (let bi = 0; bi < c.b; bi++) got.set(p.subarray(bi * li * width, (bi + 1) * li * width), (bi * c.l + t0) * width);
      t0 += li;
    }
    assert.equal(state.position, c.l);
    const err = relMaxAbs(got, full);
    assert.ok(err < 1e-5, `decode vs dual: ${err}`);
  });
}

test('tttScan: bad shapes raise one clear error', () => {
  const c: Case = { kind: 'linear', b: 1, nh: 2, l: 5, f: 4, k: 4 };
  const xs = inputs(c, 1);
  xs[1] = randTensor([1, 2, 6, 4], new Rng(1));
  assert.throws(() => apply(c, xs), /XK \[1, 2, 6, 4\] must match XQ/);
  const ys = inputs(c, 1);
  assert.throws(() => tttScan('mlp', ys[0], ys[1], ys[2], ys[3], ys[4], { w1: ys[5], b1: ys[6] }, ys[7], ys[8]), /W1/);
});
