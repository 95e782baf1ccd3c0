// Sparse training of PEER expert tables: an AdamW step touches only the retrieved rows (weights and
// moments), and a step at N = 1024^2 experts keeps its working memory proportional to the touched
// rows, not to N.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { adviseHugePages } from '../../src/backend/cpu/peer.ts';
import { PEER } from '../../src/nn/peer.ts';
import { peerExperts, peerRetrieve } from '../../src/ops/peer.ts';
import { backward, fromArray, Rng, type Tensor } from '../../src/tensor/index.ts';
import { AdamW } from '../../src/train/optim.ts';
import { DEVICE, randTensor } from '../helpers.ts';

test('AdamW step on a PEER layer changes only the retrieved expert rows and their moments', () => {
  const rng = new Rng(3);
  const C = 16;
  const m = new PEER(C, { numExperts: 1024, heads: 2, topk: 3, dimKey: 8, queryNorm: 'batchnorm', sharedKeys: true,
    activation: 'gelu', score: 'softmax' }, { rng });
  const params = m.namedParameters();
  const opt = new AdamW(params, { lr: 1e-2, weightDecay: 0.1 });
  const tables = ['down.weight', 'up.weight'].map((n) => params.find(([p]) => p === n)![1]);
  const step = (x: Tensor) => {
    opt.zeroGrad();
    const y = m.forward(x);
    backward(y, randTensor(y.shape, rng));
    const touched = new Set(m.lastIndices!.dataSync());
    const before = tables.map((t) => Float32Array.from(t.dataSync()));
    const momentsBefore = tables.map((t) => {
      const s = opt.state().moments.get(params.find(([, p]) => p === t)![0]);
      return s ? [Float32Array.from(s.m.dataSync()), Float32Array.from(s.v.dataSync())] : null;
    });
    opt.update();
    tables.forEach((t, ti) => {
      const after = t.dataSync();
      const mom = opt.state().moments.get(params.find(([, p]) => p === t)![0])!;
      let changedRows = 0;
      for (let r = 0; r < t.shape[0]; r++) {
        let changed = false;
        for (let c = 0; c < C; c++) if (after[r * C + c] !== before[ti][r * C + c]) changed = true;
        if (changed) changedRows++;
        if (touched.has(r)) continue;
        assert.ok(!changed, `untouched row ${r} changed`);
        for (let c = 0; c < C; c++) {
          const [m0, v0] = momentsBefore[ti] ?? [new Float32Array(t.size), new Float32Array(t.size)];
          assert.equal(mom.m.dataSync()[r * C + c], m0[r * C + c], `moment m of untouched row ${r} changed`);
          assert.equal(mom.v.dataSync()[r * C + c], v0[r * C + c], `moment v of untouched row ${r} changed`);
        }
      }
      assert.equal(changedRows, touched.size, 'every retrieved row is updated');
    });
    return touched;
  };
  const t1 = step(randTensor([2, 5, C], rng));
  const t2 = step(randTensor([2, 5, C], rng));
  assert.ok(t1.size < 1024 && t2.size < 1024);
});

test('a training step at N = 1024^2, C = 256 keeps working memory proportional to the touched rows', () => {
  const N = 1024 * 1024, C = 256, H = 8, k = 16, n = 1024, dh = 64, T = 512;
  // Tables filled with a cheap deterministic pattern (the values do not affect memory); resident
  // before the baseline is taken.
  const fill = (seed: number) => {
    const a = new Float32Array(N * C);
    adviseHugePages(a);
    let s = seed >>> 0;
    for (let i = 0; i < a.length; i++) { s = (s * 1664525 + 1013904223) >>> 0; a[i] = (s / 4294967296 - 0.5) * 0.04; }
    return fromArray(a, [N, C], DEVICE);
  };
  const down = fill(1), up = fill(2);
  for (const t of [down, up]) { t.requiresGrad = true; t.sparseGrad = true; }
  const rng = new Rng(9);
  const keys = randTensor([1, 2, n, dh], rng);
  const q = randTensor([T, H, 2, dh], rng);
  q.requiresGrad = true;
  const x = randTensor([T, C], rng);
  const opt = new AdamW([['down', down], ['up', up]], { lr: 1e-3 });
  global.gc?.();
  const rss0 = process.memoryUsage().rss;
  const peak0 = process.resourceUsage().maxRSS * 1024;
  const { indices, scores } = peerRetrieve(q, keys, k);
  const y = peerExperts(x, down, up, indices, scores);
  backward(y, randTensor([T, C], rng));
  // Retained growth (gradients, saved tensors) and growth of the peak (transients), whichever is larger.
  const extra = () => Math.max(process.memoryUsage().rss - rss0, process.resourceUsage().maxRSS * 1024 - Math.max(rss0, peak0));
  const U = down.sparseGrads[0].indices.size;
  const tableBytes = N * C * 4;
  // Gradient rows: U x C for each table; the rest (retrieval scratch, per-occurrence scalars) is small.
  const gradBytes = 2 * U * C * 4;
  const extraBackward = extra();
  assert.ok(extraBackward < gradBytes + (64 << 20), `forward+backward used ${(extraBackward / 2 ** 20).toFixed(1)} MiB beyond the parameters; touched-row gradients are ${(gradBytes / 2 ** 20).toFixed(1)} MiB`);
  opt.update();
  const extraStep = extra();
  // AdamW keeps dense moment slots (2 per table) and writes zeros into them when created, which
  // makes them resident: the step's memory is bounded by that plus the touched-row gradients.
  assert.ok(extraStep < 4 * tableBytes + 2 * gradBytes + (128 << 20), `step used ${(extraStep / 2 ** 20).toFixed(0)} MiB`);
  console.log(`# N=${N} C=${C} T=${T} touched rows U=${U}: forward+backward +${(extraBackward / 2 ** 20).toFixed(1)} MiB ` +
    `(row gradients ${(gradBytes / 2 ** 20).toFixed(1)} MiB); with the AdamW update +${(extraStep / 2 ** 20).toFixed(0)} MiB ` +
    `(dense moments ${(4 * tableBytes / 2 ** 20).toFixed(0)} MiB)`);
});
