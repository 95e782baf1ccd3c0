// Sparse updates behave the same on every backend: a PEER layer and a sparse-gradient embedding
// trained with gradients accumulated over two backward passes (row-sparse parts summed by the
// optimizer) take the same AdamW step on the backend under test (FRUGAL_DEVICE) as on the cpu.
// Tolerance 1e-4 relative max-abs: webgpu's float32 kernels sum in other orders than the cpu's.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { initWebGPU } from '../../src/backend/webgpu/index.ts';
import { PEER } from '../../src/nn/peer.ts';
import { embedding, mul, sum } from '../../src/ops/index.ts';
import { backward, fromArray, Rng, type Tensor } from '../../src/tensor/index.ts';
import { AdamW, gradNorm } from '../../src/train/optim.ts';
import { DEVICE, randArray, relMaxAbs } from '../helpers.ts';

if (DEVICE === 'webgpu') await initWebGPU();

async function peerRun(device: 'cpu' | typeof DEVICE): Promise<{ params: Map<string, Float32Array>; norm: number }> {
  const C = 16;
  const m = new PEER(C, { numExperts: 256, heads: 2, topk: 3, dimKey: 8, queryNorm: 'none', sharedKeys: true,
    activation: 'gelu', score: 'softmax' }, { rng: new Rng(3), device });
  for (const p of m.parameters()) p.requiresGrad = true;
  const params = m.namedParameters();
  const opt = new AdamW(params, { lr: 1e-2, weightDecay: 0.1 });
  const rng = new Rng(9);
  opt.zeroGrad();
  // Two micro-batches: each backward adds one more row-sparse part to the expert tables.
  for (let b = 0; b < 2; b++) {
    const x = fromArray(randArray(5 * C, rng), [5, C], device);
    const w = fromArray(randArray(5 * C, rng), [5, C], device);
    const y = m.forward(x);
    backward(sum(mul(y, w)));
  }
  const norm = await gradNorm(params.map(([, p]) => p));
  opt.update(0.5);
  const out = new Map<string, Float32Array>();
  for (const [n, p] of params) out.set(n, (await p.data()).slice() as Float32Array);
  return { params: out, norm };
}

test(`${DEVICE}: PEER gradients accumulated over two backward passes give the cpu's AdamW step`, async () => {
  const ref = await peerRun('cpu');
  const got = await peerRun(DEVICE);
  assert.ok(relMaxAbs([got.norm], [ref.norm]) < 1e-4, `gradient norm ${got.norm} vs ${ref.norm}`);
  for (const [n, v] of ref.params) {
    const e = relMaxAbs(got.params.get(n)!, v);
    assert.ok(e < 1e-4, `${n}: relative max-abs error ${e}`);
  }
});

test(`${DEVICE}: a sparse-gradient embedding looked up twice per step takes the cpu's AdamW step`, async () => {
  const run = async (device: 'cpu' | typeof DEVICE) => {
    const rng = new Rng(4);
    const table = fromArray(randArray(12 * 4, rng), [12, 4], device);
    table.requiresGrad = true;
    table.sparseGrad = true;
    table.name = 'table';
    const opt = new AdamW([['table', table]], { lr: 1e-2, weightDecay: 0 });
    for (const ids of [[3, 1, 3, 7], [7, 0, 3, 3]]) {
      const e: Tensor = embedding(table, fromArray(Int32Array.from(ids), [4], device));
      backward(sum(mul(e, fromArray(randArray(16, rng), [4, 4], device))));
    }
    opt.update();
    return (await table.data()).slice();
  };
  const ref = await run('cpu');
  const e = relMaxAbs(await run(DEVICE), ref);
  assert.ok(e < 1e-4, `table: relative max-abs error ${e}`);
});
