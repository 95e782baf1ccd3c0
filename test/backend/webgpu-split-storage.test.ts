// Tensors above the WebGPU binding limit (PEER's million-expert tables, their moments and row
// gradients) are stored split into parts of whole rows. Here the limit is lowered to 4 KiB so small
// tensors split: upload/readback/zero-fill round trips, a clear error from kernels that do not take
// split storage, and a PEER expert mixture trained one AdamW step (global-norm clip on the device)
// on split tables against the same step on the CPU.
import assert from 'node:assert/strict';
import { test } from 'node:test';
// Before anything else initializes the backend with the adapter's own limit.
import { initWebGPU, webgpuAdapterName, webgpuRuntime, webgpuStorageParts } from '../../src/backend/webgpu/index.ts';

const LIMIT = 4096;
let reason = '';
const gpu = await initWebGPU({ maxBindingBytes: LIMIT }).catch((e: Error) => { reason = e.message; return null; });
const { assertClose, DEVICE, randArray } = await import('../helpers.ts');
const { peerExperts } = await import('../../src/ops/peer.ts');
const op = await import('../../src/ops/index.ts');
const { AdamW } = await import('../../src/train/optim.ts');
const { backward, empty, fromArray, Rng } = await import('../../src/tensor/index.ts');
type T = InstanceType<typeof import('../../src/tensor/tensor.ts').Tensor>;

console.log(gpu ? `# backend: webgpu (${webgpuAdapterName()}), binding limit lowered to ${LIMIT} bytes` : `# webgpu split storage NOT RUN: ${reason}`);
if (!gpu && DEVICE === 'webgpu') test('webgpu backend initializes', () => assert.fail(reason));
if (!gpu) test('webgpu split storage (not run: no WebGPU adapter)', { skip: reason }, () => {});

const read = async (t: T) => (t.device === 'cpu' ? t.dataSync() : await t.data());

if (gpu) {
  test('the lowered limit is in force', () => {
    assert.equal(webgpuRuntime().maxBindingBytes, LIMIT);
  });

  test('split tensors: upload, readback, zero-fill and partial writes round-trip; other kernels refuse them', async () => {
    const rng = new Rng(3);
    const a = randArray(50 * 70, rng); // 14 rows of 70 per 4 KiB part: 4 parts
    const t = fromArray(a.slice(), [50, 70], 'webgpu');
    assert.equal(webgpuStorageParts(t.buf), 4);
    assert.deepEqual(Array.from(await t.data()), Array.from(a));
    const z = empty([50, 70], { device: 'webgpu' });
    assert.equal(webgpuStorageParts(z.buf), 4);
    assert.ok((await z.data()).every((v) => v === 0), 'a new split tensor reads zero');
    // A write across a part boundary (values 900..1099 span parts 0 and 1 at 980).
    const { writeBuffer } = await import('../../src/backend/webgpu/index.ts');
    const mid = Float32Array.from({ length: 1100 }, (_, i) => (i >= 900 ? i : a[i]));
    writeBuffer(t.buf, mid);
    const back = await t.data();
    for (let i = 0; i < a.length; i++) assert.equal(back[i], i < 1100 ? mid[i] : a[i], `value ${i}`);
    // Row width must fit one part.
    assert.throws(() => empty([2, 2000], { device: 'webgpu' }), /rows of 2000 values .* exceed this adapter's binding limit/);
    assert.throws(() => op.add(t, t), /cannot take a tensor of 14000 bytes, above the adapter's binding limit of 4096 bytes/);
    t.dispose();
    z.dispose();
  });

  test('PEER experts on split tables: forward, backward and one clipped AdamW step = cpu', async () => {
    const rng = new Rng(11);
    // Tables [40, 70] split in 3 parts of 14 rows; the row gradients [E = 480, 70] in 35 parts.
    const T = 6, C = 70, N = 40, H = 4, k = 20;
    const xa = randArray(T * C, rng), da = randArray(N * C, rng, 0.3), ua = randArray(N * C, rng, 0.3);
    const ia = Int32Array.from({ length: T * H * k }, () => rng.int(N)), za = randArray(T * H * k, rng), cot = randArray(T * C, rng);
    const res: Float32Array[][] = [];
    for (const dev of ['cpu', 'webgpu'] as const) {
      const x = fromArray(xa.slice(), [T, C], dev), down = fromArray(da.slice(), [N, C], dev), up = fromArray(ua.slice(), [N, C], dev);
      const z = fromArray(za.slice(), [T, H, k], dev), idx = fromArray(ia.slice(), [T, H, k], dev);
      if (dev === 'webgpu') for (const w of [down, up]) assert.equal(webgpuStorageParts(w.buf), 3);
      for (const t of [x, down, up, z]) t.requiresGrad = true;
      for (const t of [down, up]) t.sparseGrad = true;
      const y = peerExperts(x, down, up, idx, z, { activation: 'gelu', score: 'softmax' });
      backward(y, fromArray(cot.slice(), [T, C], dev));
      if (dev === 'webgpu') assert.equal(webgpuStorageParts(down.sparseGrads[0].values.buf), 35);
      const opt = new AdamW([['down', down], ['up', up]], { lr: 0.05, weightDecay: 0.1 });
      // Max norm below the gradients' norm, so the clip factor is in play.
      const clip = opt.updateClipped(0.5);
      res.push([await read(y), await read(x.grad!), await read(z.grad!), await read(down), await read(up), await read(clip)] as Float32Array[]);
    }
    ['y', 'dx', 'dscores', 'down after the step', 'up after the step', 'clip factor and norm'].forEach((name, i) =>
      assertClose(res[1][i], res[0][i], 1e-4, name));
    assert.ok(res[0][5][0] < 1, 'the clip must act in this test');
    // The step moved the tables (a no-op update would pass the comparison only if the cpu did nothing too).
    assert.ok(res[0][3].some((v, i) => v !== da[i]), 'the cpu step changed the table');
  });
}
