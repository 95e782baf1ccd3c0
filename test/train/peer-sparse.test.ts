// Sparse training of PEER expert tables: an AdamW step touches only the retrieved rows (weights and
// moments), the factored (rank-1 per retrieval) gradients equal the materialized row gradients and
// give the same AdamW step and norm, and a step at N = 1024^2 experts keeps its working memory
// proportional to the retrievals, not to N.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { adviseHugePages } from '../../src/backend/cpu/peer.ts';
import { nativeAddon } from '../../src/backend/cpu/native.ts';
import { PEER } from '../../src/nn/peer.ts';
import { peerExperts, peerRetrieve } from '../../src/ops/peer.ts';
import { backward, densify, fromArray, noGrad, RowSparse, Rng, type Tensor } from '../../src/tensor/index.ts';
import { AdamW, gradNorm } from '../../src/train/optim.ts';
import { DEVICE, randArray, randTensor, relMaxAbs } from '../helpers.ts';

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
  // Materialized gradient rows would be U x C for each table; the factored gradients hold a few
  // scalars per retrieval plus two [T, C] bases, and the rest (retrieval scratch) is small.
  const gradBytes = 2 * U * C * 4;
  const extraBackward = extra();
  assert.ok(extraBackward < gradBytes + (64 << 20), `forward+backward used ${(extraBackward / 2 ** 20).toFixed(1)} MiB beyond the parameters; touched-row gradients are ${(gradBytes / 2 ** 20).toFixed(1)} MiB`);
  if (DEVICE === 'cpu') {
    assert.ok(down.sparseGrads[0].factors, 'cpu expert-table gradients are factored');
    assert.ok(extraBackward < 48 << 20, `forward+backward used ${(extraBackward / 2 ** 20).toFixed(1)} MiB beyond the parameters with factored gradients`);
  }
  opt.update();
  const extraStep = extra();
  // AdamW keeps dense moment slots (2 per table) and writes zeros into them when created, which
  // makes them resident: the step's memory is bounded by that plus the touched-row gradients.
  assert.ok(extraStep < 4 * tableBytes + 2 * gradBytes + (128 << 20), `step used ${(extraStep / 2 ** 20).toFixed(0)} MiB`);
  console.log(`# N=${N} C=${C} T=${T} touched rows U=${U}: forward+backward +${(extraBackward / 2 ** 20).toFixed(1)} MiB ` +
    `(row gradients ${(gradBytes / 2 ** 20).toFixed(1)} MiB); with the AdamW update +${(extraStep / 2 ** 20).toFixed(0)} MiB ` +
    `(dense moments ${(4 * tableBytes / 2 ** 20).toFixed(0)} MiB)`);
});

// The factored form is what the cpu kernels produce; other backends hand over materialized rows.
const CPU_ONLY = DEVICE !== 'cpu' && 'factored expert-table gradients are produced by the cpu kernels only';

interface Case { T: number; C: number; N: number; H: number; k: number }

/** Random PEER expert-mixture inputs; expert ids drawn from a small range so rows repeat. */
function peerCase(rng: Rng, { T, C, N, H, k }: Case) {
  const ids = new Int32Array(T * H * k);
  for (let i = 0; i < ids.length; i++) ids[i] = rng.int(Math.min(N, T * H * k));
  return {
    x: randTensor([T, C], rng), down: randTensor([N, C], rng, 0.3), up: randTensor([N, C], rng, 0.3),
    idx: fromArray(ids, [T, H, k], DEVICE), z: randTensor([T, H, k], rng), dy: randTensor([T, C], rng),
  };
}

/**
 * The row gradients as the kernels materialized them before the factored form: per-occurrence
 * coefficients from the token pass, rows grouped, then one [U, C] block per table.
 */
function materializedRowGrads(c: ReturnType<typeof peerCase>, { T, C, N, H, k }: Case, act: number, score: number) {
  const a = nativeAddon();
  const E = T * H * k;
  const [x, u, v, idx, z, dy] = [c.x, c.down, c.up, c.idx, c.z, c.dy].map((t) => t.dataSync()) as [Float32Array, Float32Array, Float32Array, Int32Array, Float32Array, Float32Array];
  const g = new Float32Array(E), pre = new Float32Array(E), ds = new Float32Array(E), w = new Float32Array(E);
  a.peerExpertsForward(x, u, v, idx, z, T, C, N, H, k, act, score, new Float32Array(T * C), g, pre);
  a.peerExpertsBackwardTokens(u, v, idx, g, pre, dy, T, C, N, H, k, act, score, new Float32Array(T * C), new Float32Array(E), ds, w);
  const rows = new Int32Array(E), offsets = new Int32Array(E + 1), occ = new Int32Array(E);
  const U = a.peerGroupRows(idx, E, N, rows, offsets, occ) as number;
  const du = new Float32Array(U * C), dv = new Float32Array(U * C);
  a.peerRowGrads(offsets, occ, U, ds, w, x, dy, C, H * k, du, dv);
  const r = fromArray(rows.slice(0, U), [U]);
  return [new RowSparse(r, fromArray(du, [U, C]), true), new RowSparse(r, fromArray(dv, [U, C]), true)];
}

const CASES: Case[] = [{ T: 6, C: 37, N: 40, H: 2, k: 3 }, { T: 11, C: 64, N: 500, H: 3, k: 4 }, { T: 4, C: 16, N: 7, H: 2, k: 4 }];

test('factored expert-table gradients equal the materialized row gradients', { skip: CPU_ONLY }, () => {
  const rng = new Rng(17);
  CASES.forEach((shape, ci) => {
    for (const [activation, score] of [['gelu', 'softmax'], ['relu', 'sigmoid']] as const) {
      const c = peerCase(rng, shape);
      for (const t of [c.down, c.up]) { t.requiresGrad = true; t.sparseGrad = true; }
      backward(peerExperts(c.x, c.down, c.up, c.idx, c.z, { activation, score }), c.dy);
      const ref = materializedRowGrads(c, shape, activation === 'gelu' ? 0 : 1, score === 'softmax' ? 0 : 1);
      [c.down, c.up].forEach((t, ti) => {
        const what = `case ${ci} ${activation}/${score} ${ti ? 'up' : 'down'}`;
        assert.equal(t.sparseGrads.length, 1);
        const f = t.sparseGrads[0];
        assert.ok(f.factors, `${what}: gradient is factored`);
        assert.equal(f.factors!.slot.size, shape.T * shape.H * shape.k, `${what}: one term per retrieval`);
        assert.deepEqual(Array.from(f.indices.dataSync()), Array.from(ref[ti].indices.dataSync()), `${what}: rows`);
        const dense = densify(f, t.shape).dataSync(), denseRef = densify(ref[ti], t.shape).dataSync();
        assert.ok(relMaxAbs(dense, denseRef) <= 1e-5, `${what}: densified error ${relMaxAbs(dense, denseRef)}`);
        assert.ok(relMaxAbs(f.values.dataSync(), ref[ti].values.dataSync()) <= 1e-5, `${what}: materialized rows`);
      });
    }
  });
});

test('factored gradients from several backward passes sum like the materialized ones', { skip: CPU_ONLY }, () => {
  const rng = new Rng(23);
  const shape = CASES[1];
  const c = peerCase(rng, shape);
  for (const t of [c.down, c.up]) { t.requiresGrad = true; t.sparseGrad = true; }
  const refs: RowSparse[][] = [];
  for (let pass = 0; pass < 2; pass++) {
    c.idx = peerCase(rng, shape).idx; // other experts on the second pass: overlapping and new rows
    backward(peerExperts(c.x, c.down, c.up, c.idx, c.z), c.dy);
    refs.push(materializedRowGrads(c, shape, 0, 0));
  }
  [c.down, c.up].forEach((t, ti) => {
    assert.equal(t.sparseGrads.length, 2);
    const ours = new Float64Array(t.size), want = new Float64Array(t.size);
    for (const s of t.sparseGrads) densify(s, t.shape).dataSync().forEach((v, i) => { ours[i] += v; });
    for (const r of refs) densify(r[ti], t.shape).dataSync().forEach((v, i) => { want[i] += v; });
    assert.ok(relMaxAbs(ours, want) <= 1e-5, `${ti ? 'up' : 'down'}: summed densified error ${relMaxAbs(ours, want)}`);
  });
});

test('AdamW on factored gradients equals AdamW on materialized rows and touches only the retrieved rows', { skip: CPU_ONLY }, async () => {
  const rng = new Rng(31);
  const shape: Case = { T: 9, C: 48, N: 300, H: 2, k: 4 };
  const c = peerCase(rng, shape);
  // Twin tables: A gets the factored gradients, B the materialized rows of the same gradients.
  const twin = (t: Tensor) => { const d = fromArray(Float32Array.from(t.dataSync()), t.shape, DEVICE); d.requiresGrad = true; d.sparseGrad = true; return d; };
  const a = [twin(c.down), twin(c.up)], b = [twin(c.down), twin(c.up)];
  const optA = new AdamW([['down', a[0]], ['up', a[1]]], { lr: 1e-2, weightDecay: 0.1 });
  const optB = new AdamW([['down', b[0]], ['up', b[1]]], { lr: 1e-2, weightDecay: 0.1 });
  for (let step = 0; step < 3; step++) {
    optA.zeroGrad(); optB.zeroGrad();
    const passes = step === 2 ? 2 : 1; // the last step accumulates two backward passes
    const touched = new Set<number>();
    for (let p = 0; p < passes; p++) {
      const idx = peerCase(rng, shape).idx, dy = randTensor([shape.T, shape.C], rng);
      idx.dataSync().forEach((e) => touched.add(e));
      backward(peerExperts(c.x, a[0], a[1], idx, c.z), dy);
      a.forEach((t, ti) => {
        const f = t.sparseGrads.at(-1)!;
        assert.ok(f.factors, 'factored gradient');
        b[ti].sparseGrads.push(new RowSparse(fromArray(Int32Array.from(f.indices.dataSync()), [f.indices.size]),
          fromArray(Float32Array.from(f.values.dataSync()), f.values.shape), true));
      });
    }
    const [na, nb] = [await gradNorm(a), await gradNorm(b)];
    assert.ok(Math.abs(na - nb) <= 1e-6 * nb, `step ${step}: gradient norm ${na} vs ${nb}`);
    const before = a.map((t) => Float32Array.from(t.dataSync()));
    const momBefore = a.map((_, ti) => { const s = optA.state().moments.get(ti ? 'up' : 'down'); return s ? [Float32Array.from(s.m.dataSync()), Float32Array.from(s.v.dataSync())] : null; });
    const scale = 0.7; // a clipping factor goes through both paths
    noGrad(() => { optA.update(scale); optB.update(scale); });
    a.forEach((t, ti) => {
      const name = ti ? 'up' : 'down';
      const ma = optA.state().moments.get(name)!, mb = optB.state().moments.get(name)!;
      for (const [x, y, what] of [[t, b[ti], 'weights'], [ma.m, mb.m, 'm'], [ma.v, mb.v, 'v']] as const) {
        const e = relMaxAbs(x.dataSync(), y.dataSync());
        assert.ok(e <= 1e-6, `step ${step} ${name} ${what}: relative error ${e}`);
      }
      const w = t.dataSync(), C = shape.C;
      for (let r = 0; r < shape.N; r++) {
        if (touched.has(r)) continue;
        for (let j = 0; j < C; j++) {
          const i = r * C + j;
          assert.equal(w[i], before[ti][i], `untouched row ${r} changed`);
          assert.equal(ma.m.dataSync()[i], momBefore[ti]?.[0][i] ?? 0, `moment m of untouched row ${r} changed`);
          assert.equal(ma.v.dataSync()[i], momBefore[ti]?.[1][i] ?? 0, `moment v of untouched row ${r} changed`);
        }
      }
    });
  }
});

test('factored gradient kernels reject terms that point outside their rows or basis', { skip: CPU_ONLY }, () => {
  const basis = fromArray(randArray(2 * 4, new Rng(1)), [2, 4]);
  const bad = (slot: number[], token: number[]) => new RowSparse(fromArray(Int32Array.from([3, 5]), [2]), {
    slot: fromArray(Int32Array.from(slot), [slot.length]), token: fromArray(Int32Array.from(token), [token.length]),
    coef: fromArray(new Float32Array(slot.length).fill(1), [slot.length]), basis,
  });
  assert.throws(() => bad([0, 2], [0, 1]).values, /slot out of range/);
  assert.throws(() => densify(bad([0, 1], [0, 2]), [8, 4]), /token out of range/);
  assert.deepEqual(Array.from(densify(bad([1, 1], [0, 1]), [8, 4]).dataSync().slice(20, 24)),
    Array.from(basis.dataSync().slice(0, 4)).map((v, j) => Math.fround(v + basis.dataSync()[4 + j])), 'two terms on one row add up');
});
