// Finite-difference gradient checks for every differentiable op, on the backend under test.
import { test } from 'node:test';
import * as op from '../../src/ops/index.ts';
import { fromArray, Rng, type Tensor } from '../../src/tensor/index.ts';
import { DEVICE, gradcheck, randTensor } from '../helpers.ts';

const rng = new Rng(1234);
const r = (...shape: number[]) => randTensor(shape, rng);
// Strictly positive inputs (for log, sqrt, division): |x| + 0.5.
const pos = (...shape: number[]) => {
  const n = shape.reduce((p, x) => p * x, 1);
  return fromArray(Float32Array.from({ length: n }, () => Math.abs(rng.normal()) + 0.5), shape, DEVICE);
};
const ids = (vals: number[]) => fromArray(Int32Array.from(vals), [vals.length], DEVICE);

console.log(`# backend: ${DEVICE}`);

const binaryCases: [string, (a: Tensor, b: Tensor) => Tensor][] = [
  ['add', op.add], ['sub', op.sub], ['mul', op.mul], ['div', op.div], ['maximum', op.maximum], ['minimum', op.minimum],
];
for (const [name, f] of binaryCases) {
  test(`grad ${name} with broadcasting`, async () => {
    const b = name === 'div' ? pos(1, 4) : r(1, 4);
    await gradcheck(f, [r(3, 4), b]);
    await gradcheck(f, [r(2, 3, 4), r(3, 1)]);
  });
}
test('grad pow', async () => gradcheck(op.pow, [pos(2, 3), r(2, 3)]));

const unaryCases: [string, (x: Tensor) => Tensor, boolean][] = [
  ['neg', op.neg, false], ['exp', op.exp, false], ['log', op.log, true], ['sqrt', op.sqrt, true], ['rsqrt', op.rsqrt, true],
  ['tanh', op.tanh, false], ['sigmoid', op.sigmoid, false], ['relu', op.relu, false], ['silu', op.silu, false],
  ['gelu', (x) => op.gelu(x), false], ['gelu tanh', (x) => op.gelu(x, 'tanh'), false], ['abs', op.abs, false],
  ['square', op.square, false], ['affine', (x) => op.affine(x, 1.5, -0.25), false],
];
for (const [name, f, positive] of unaryCases) {
  test(`grad ${name}`, async () => gradcheck(f, [positive ? pos(3, 5) : r(3, 5)], { eps: 1e-3 }));
}

test('grad swiglu (fused silu(gate) * up) and its match with the unfused ops', async () => {
  await gradcheck(op.swiglu, [r(3, 5), r(3, 5)], { eps: 1e-3 });
  const a = r(4, 6), b = r(4, 6);
  const [fused, plain] = await Promise.all([op.swiglu(a, b).data(), op.mul(op.silu(a), b).data()]);
  for (let i = 0; i < fused.length; i++) {
    if (Math.abs(fused[i] - plain[i]) > 1e-6 * (1 + Math.abs(plain[i]))) throw new Error(`swiglu ${i}: ${fused[i]} vs ${plain[i]}`);
  }
});

test('grad sum / mean / max over axes', async () => {
  await gradcheck((x) => op.sum(x), [r(3, 4)]);
  await gradcheck((x) => op.sum(x, 1), [r(2, 3, 4)]);
  await gradcheck((x) => op.mean(x, [0, 2], true), [r(2, 3, 4)]);
  await gradcheck((x) => op.max(x, -1), [r(3, 5)], { eps: 1e-3 });
  await gradcheck((x) => op.min(x, 0), [r(3, 5)], { eps: 1e-3 });
});

test('grad matmul (plain, transposed, batched, broadcast)', async () => {
  await gradcheck((a, b) => op.matmul(a, b), [r(3, 4), r(4, 5)]);
  await gradcheck((a, b) => op.matmul(a, b, { transA: true }), [r(4, 3), r(4, 5)]);
  await gradcheck((a, b) => op.matmul(a, b, { transB: true }), [r(3, 4), r(5, 4)]);
  await gradcheck((a, b) => op.matmul(a, b, { transA: true, transB: true }), [r(4, 3), r(5, 4)]);
  await gradcheck((a, b) => op.matmul(a, b), [r(2, 3, 4), r(2, 4, 5)]);
  await gradcheck((a, b) => op.matmul(a, b, { transB: true }), [r(2, 3, 4), r(5, 4)]);
});

test('grad shape ops', async () => {
  await gradcheck((x) => op.reshape(x, [4, 3]), [r(3, 4)]);
  await gradcheck((x) => op.permute(x, [2, 0, 1]), [r(2, 3, 4)]);
  await gradcheck((x) => op.transpose(x), [r(2, 3, 4)]);
  await gradcheck((x) => op.slice(x, 1, 1, 3), [r(2, 4, 3)]);
  // Several slices of one tensor: their gradients are assembled once (disjoint, with gaps, overlapping,
  // along two axes, the same range twice, and beside an ordinary gradient of the same tensor).
  const sl = op.slice;
  await gradcheck((x) => op.add(op.mul(sl(x, 0, 0, 2), sl(x, 0, 2, 4)), sl(x, 0, 4, 6)), [r(6, 3)]);
  await gradcheck((x) => op.mul(sl(x, 1, 0, 2), sl(x, 1, 4, 6)), [r(3, 7)]);
  await gradcheck((x) => op.mul(sl(x, 0, 0, 3), sl(x, 0, 1, 4)), [r(5, 2)]);
  await gradcheck((x) => op.mul(sl(x, 0, 0, 2), op.transpose(sl(x, 1, 1, 3))), [r(4, 4)]);
  await gradcheck((x) => op.add(op.mul(sl(x, 0, 1, 3), sl(x, 0, 1, 3)), sl(x, 0, 1, 3)), [r(4, 3)]);
  await gradcheck((x) => op.add(op.mul(sl(x, 0, 0, 3), sl(x, 0, 3, 6)), sl(op.exp(x), 0, 1, 4)), [r(6, 2)], { eps: 1e-3 });
  await gradcheck((a, b) => op.concat([a, b], 1), [r(2, 2, 3), r(2, 3, 3)]);
  await gradcheck((x) => op.expand(x, [2, 3, 4]), [r(3, 1)]);
  await gradcheck((x) => op.indexSelect(x, ids([2, 0, 2, 1])), [r(3, 4)]);
});

test('grad softmax / logSoftmax', async () => {
  await gradcheck(op.softmax, [r(3, 6)], { eps: 1e-3 });
  await gradcheck(op.logSoftmax, [r(3, 6)], { eps: 1e-3 });
});

test('grad cross-entropy (hard with ignore index, soft)', async () => {
  await gradcheck((x) => op.crossEntropy(x, ids([1, -100, 4, 0])), [r(4, 6)], { eps: 1e-3 });
  const teacher = r(4, 6);
  await gradcheck((x) => op.softCrossEntropy(x, teacher), [r(4, 6)], { eps: 1e-3, check: [0] });
});

test('grad rmsNorm / layerNorm', async () => {
  await gradcheck((x, w) => op.rmsNorm(x, w, 1e-5), [r(3, 8), r(8)], { eps: 1e-3 });
  await gradcheck((x, w, b) => op.layerNorm(x, w, b, 1e-5), [r(3, 8), r(8), r(8)], { eps: 1e-3 });
});

test('grad rope (half-split and interleaved)', async () => {
  const p = ids([0, 3, 7]);
  await gradcheck((x) => op.rope(x, p), [r(2, 3, 2, 8)]);
  await gradcheck((x) => op.rope(x, p, { style: 'interleaved', theta: 500 }), [r(2, 3, 2, 8)]);
});

test('grad embedding (row-sparse)', async () => {
  await gradcheck((t) => op.embedding(t, fromArray(Int32Array.from([1, 3, 1, 0, 2, 1]), [2, 3], DEVICE)), [r(5, 4)]);
});

test('grad causal depthwise conv1d', async () => {
  await gradcheck((x, w, b) => op.causalConv1d(x, w, b), [r(2, 6, 3), r(3, 4), r(3)]);
});

test('grad topk values', async () => {
  await gradcheck((x) => op.topk(x, 3).values, [r(4, 7)], { eps: 1e-3 });
});

test('grad fused attention (causal, GQA, cache offset, non-causal)', async () => {
  await gradcheck((q, k, v) => op.attention(q, k, v), [r(1, 5, 2, 4), r(1, 5, 2, 4), r(1, 5, 2, 4)], { eps: 1e-3 });
  await gradcheck((q, k, v) => op.attention(q, k, v), [r(2, 4, 4, 8), r(2, 4, 2, 8), r(2, 4, 2, 8)], { eps: 1e-3 });
  await gradcheck((q, k, v) => op.attention(q, k, v), [r(1, 3, 2, 4), r(1, 6, 1, 4), r(1, 6, 1, 4)], { eps: 1e-3 });
  await gradcheck((q, k, v) => op.attention(q, k, v, { causal: false, scale: 0.3 }), [r(1, 3, 2, 4), r(1, 5, 2, 4), r(1, 5, 2, 4)], { eps: 1e-3 });
});
