// PEER against the reference PyTorch implementations (PEER-pytorch and a paper-faithful PEER):
// outputs, retrieved indices (exact, except ties within 1e-6), gradients and BatchNorm running stats.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { readSafetensors } from '../../src/io/safetensors.ts';
import type { RawTensor } from '../../src/io/raw.ts';
import { PEER, type PeerLayerOptions } from '../../src/nn/peer.ts';
import { batchNorm1d } from '../../src/ops/peer.ts';
import * as op from '../../src/ops/index.ts';
import { backward, densify, fromArray, noGrad, Rng, type Tensor } from '../../src/tensor/index.ts';
import { assertClose, DEVICE, GOLDEN_DIR, relNorm } from '../helpers.ts';

// Tolerances from the golden README: outputs max-abs 1e-4 relative, gradients 1e-3 relative norm.
const OUT_TOL = 1e-4;
const GRAD_TOL = 1e-3;
const TIE = 1e-6;

function load(name: string) {
  const path = join(GOLDEN_DIR, `${name}.safetensors`);
  assert.ok(existsSync(path), `golden file ${path} is missing (set FRUGAL_GOLDEN_DIR)`);
  const { tensors, metadata } = readSafetensors(path);
  const meta = JSON.parse(metadata.meta);
  const get = (n: string): RawTensor => {
    const t = tensors.get(n);
    assert.ok(t, `${name}: no tensor ${n}`);
    return t;
  };
  const toTensor = (n: string): Tensor => { const t = get(n); return fromArray(t.data.slice(), t.shape, DEVICE); };
  return { tensors, config: meta.config, get, toTensor };
}

const norm = (a: ArrayLike<number>) => { let s = 0; for (let i = 0; i < a.length; i++) s += a[i] * a[i]; return Math.sqrt(s); };

async function denseGrad(p: Tensor): Promise<Float32Array> {
  if (p.grad) return (await p.grad.data()) as Float32Array;
  assert.ok(p.sparseGrads.length > 0, `no gradient for ${p.name || p.shape}`);
  const acc = new Float32Array(p.size);
  for (const s of p.sparseGrads) {
    const d = await densify(s, p.shape).data();
    for (let i = 0; i < acc.length; i++) acc[i] += d[i];
  }
  return acc;
}

/**
 * Indices must match exactly, except where the two picks' scores (from our queries and keys) tie
 * within 1e-6. q4 [T, H, 2, dh], keys [Hk, 2, n, dh].
 */
function assertIndices(ours: Int32Array, ref: Int32Array, q4: Float32Array, keys: Float32Array,
  H: number, Hk: number, n: number, dh: number, k: number, what: string): void {
  assert.equal(ours.length, ref.length);
  const score = (th: number, e: number) => {
    const hk = Hk === 1 ? 0 : th % H;
    const i = Math.floor(e / n), j = e % n;
    let s = 0;
    for (let d = 0; d < dh; d++) {
      s += q4[th * 2 * dh + d] * keys[(hk * 2 * n + i) * dh + d];
      s += q4[th * 2 * dh + dh + d] * keys[((hk * 2 + 1) * n + j) * dh + d];
    }
    return s;
  };
  let ties = 0;
  for (let o = 0; o < ours.length; o++) {
    if (ours[o] === ref[o]) continue;
    const th = Math.floor(o / k);
    const gap = Math.abs(score(th, ours[o]) - score(th, ref[o]));
    assert.ok(gap <= TIE, `${what}: index ${o} is ${ours[o]}, reference ${ref[o]} (score gap ${gap.toExponential(2)} > ${TIE})`);
    ties++;
  }
  assert.ok(ties <= ours.length / 100, `${what}: ${ties} tie swaps is implausibly many`);
}

function loadParams(m: PEER, g: ReturnType<typeof load>, prefix: string): void {
  for (const name of g.tensors.keys()) if (name.startsWith(prefix)) m.setTensor(name.slice(prefix.length), g.toTensor(name));
}

async function checkGrads(m: PEER, g: ReturnType<typeof load>, x: Tensor, file: string): Promise<number> {
  const params = new Map(m.namedParameters());
  let checked = 0;
  for (const name of g.tensors.keys()) {
    if (!name.startsWith('grad.')) continue;
    const ref = g.get(name).data as Float32Array;
    const key = name.slice(5);
    const ours = key === 'x' ? ((await x.grad!.data()) as Float32Array) : await denseGrad(params.get(key) ?? assert.fail(`${file}: no parameter ${key}`));
    checked++;
    if (key === 'query.bias' && m.queryBn?.training) {
      // Training-mode BatchNorm subtracts the batch mean, so the query bias gets exactly zero
      // gradient; the reference holds float rounding noise, where a relative error means nothing.
      // Both must be negligible next to the query weight's gradient.
      const scale = norm(g.get('grad.query.weight').data);
      assert.ok(norm(ours) <= 1e-6 * scale && norm(ref) <= 1e-6 * scale, `${file}: query bias gradient is not ~0 (${norm(ours)}, reference ${norm(ref)})`);
      continue;
    }
    const e = relNorm(ours, ref);
    assert.ok(e <= GRAD_TOL, `${file}: ${name} relative error ${e.toExponential(2)} > ${GRAD_TOL}`);
  }
  return checked;
}

test('golden: PEER-pytorch layout (per-head keys, (p h d) queries, softmax over k)', async () => {
  const g = load('peer_lucidrains_tiny');
  const c = g.config;
  assert.equal(c.product_key_topk, c.num_experts_per_head, 'this layer uses one k for both top-k stages');
  assert.equal(c.non_competing_scores, false);
  const opts: PeerLayerOptions = {
    numExperts: c.num_experts, heads: c.heads, topk: c.num_experts_per_head, dimKey: 2 * c.dim_key,
    queryNorm: 'none', sharedKeys: false, activation: 'gelu', score: 'softmax',
  };
  const m = new PEER(c.dim, opts, { rng: new Rng(1), device: DEVICE });
  loadParams(m, g, 'param.');
  const x = g.toTensor('input.x');
  x.requiresGrad = true;
  const y = m.forward(x);
  assertClose(await y.data(), g.get('output.y').data, OUT_TOL, 'output.y');
  backward(y, g.toTensor('input.cotangent'));
  await checkGrads(m, g, x, 'peer_lucidrains_tiny');
});

test('golden: paper PEER (query BatchNorm, shared sub-keys), train and eval', async () => {
  const g = load('peer_paper_tiny');
  const c = g.config;
  const opts: PeerLayerOptions = {
    numExperts: c.num_experts, heads: c.heads, topk: c.k, dimKey: c.dk,
    queryNorm: 'batchnorm', sharedKeys: true, activation: 'gelu', score: 'softmax',
  };
  const H = c.heads, dh = c.dk / 2, n = c.n_sub_keys, k = c.k;
  const m = new PEER(c.dim, opts, { rng: new Rng(1), device: DEVICE });
  loadParams(m, g, 'param.');
  const x = g.toTensor('input.x');
  x.requiresGrad = true;
  m.train();
  const y = m.forward(x);
  assertClose(await y.data(), g.get('output.y_train').data, OUT_TOL, 'output.y_train');
  // Training-mode queries (batch statistics, no running update) to arbitrate index ties.
  const T = x.size / c.dim;
  const bnW = m.namedParameters().find(([nm]) => nm === 'query_bn.weight')![1];
  const bnB = m.namedParameters().find(([nm]) => nm === 'query_bn.bias')![1];
  const qTrain = noGrad(() => batchNorm1d(m.query.forward(op.reshape(x, [T, c.dim])), bnW, bnB, null, { training: true }));
  const keys = (await m.keys.data()) as Float32Array;
  assertIndices((await m.lastIndices!.data()) as Int32Array, g.get('output.indices_train').data as Int32Array,
    (await qTrain.data()) as Float32Array, keys, H, 1, n, dh, k, 'indices_train');
  backward(y, g.toTensor('input.cotangent'));
  await checkGrads(m, g, x, 'peer_paper_tiny');

  // Running statistics after the one training step equal the reference buffers.
  const buffers = new Map(m.namedBuffers());
  for (const name of g.tensors.keys()) {
    if (!name.startsWith('buffer.')) continue;
    const ours = buffers.get(name.slice(7));
    assert.ok(ours, `no buffer ${name}`);
    const ref = g.get(name).data;
    if (ours.dtype === 'i32') assert.deepEqual(Array.from(await ours.data()), Array.from(ref), name);
    else assertClose(await ours.data(), ref, OUT_TOL, name);
  }

  m.eval();
  const yEval = noGrad(() => m.forward(x));
  assertClose(await yEval.data(), g.get('output.y_eval').data, OUT_TOL, 'output.y_eval');
  const qEval = noGrad(() => m.queryBn!.forward(m.query.forward(op.reshape(x, [T, c.dim]))));
  assertIndices((await m.lastIndices!.data()) as Int32Array, g.get('output.indices_eval').data as Int32Array,
    (await qEval.data()) as Float32Array, keys, H, 1, n, dh, k, 'indices_eval');
});
