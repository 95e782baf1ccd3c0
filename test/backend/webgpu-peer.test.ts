// PEER and BatchNorm1d on WebGPU against the CPU kernels on the same random inputs (retrieval indices
// exact except ties, values 1e-4 relative max-abs, gradients through the same backward rules), the
// device-built row-sparse expert gradients, and the PEER golden files run on the webgpu backend.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { initWebGPU, webgpuAdapterName } from '../../src/backend/webgpu/index.ts';
import { readSafetensors } from '../../src/io/safetensors.ts';
import { PEER, type PeerLayerOptions } from '../../src/nn/peer.ts';
import { batchNorm1d, peerExperts, type PeerExpertsOpts, peerRetrieve } from '../../src/ops/peer.ts';
import { backward, densify, fromArray, noGrad, Rng, type Tensor } from '../../src/tensor/index.ts';
import type { DeviceName } from '../../src/backend/types.ts';
import { assertClose, DEVICE, GOLDEN_DIR, randArray, relNorm } from '../helpers.ts';

let reason = '';
const gpu = await initWebGPU().catch((e: Error) => { reason = e.message; return null; });
console.log(gpu ? `# backend: webgpu (${webgpuAdapterName()})` : `# webgpu PEER NOT RUN: ${reason}`);
if (!gpu && DEVICE === 'webgpu') test('webgpu backend initializes', () => assert.fail(reason));
if (!gpu) test('webgpu PEER (not run: no WebGPU adapter)', { skip: reason }, () => {});

const VAL_TOL = 1e-4; // outputs and gradients, relative to the reference's max-abs
const TIE = 1e-5; // index swaps allowed where the two picks' scores are this close

/** The same data on both backends. */
function pair(data: Float32Array | Int32Array, shape: number[]): [Tensor, Tensor] {
  return [fromArray(data.slice(), shape, 'cpu'), fromArray(data.slice(), shape, 'webgpu')];
}
const read = async (t: Tensor) => (t.device === 'cpu' ? t.dataSync() : await t.data());

async function denseGrad(p: Tensor): Promise<Float32Array> {
  if (p.grad) return (await read(p.grad)) as Float32Array;
  assert.ok(p.sparseGrads.length > 0, 'no gradient');
  const acc = new Float32Array(p.size);
  for (const s of p.sparseGrads) {
    const d = await read(densify(s, p.shape));
    for (let i = 0; i < acc.length; i++) acc[i] += d[i];
  }
  return acc;
}

/** Indices equal, or (ties) the two picks' exact scores within TIE; few such swaps. */
function assertIndices(ours: ArrayLike<number>, ref: ArrayLike<number>, score: (row: number, e: number) => number, k: number, what: string): void {
  assert.equal(ours.length, ref.length);
  let ties = 0;
  for (let o = 0; o < ours.length; o++) {
    if (ours[o] === ref[o]) continue;
    const row = Math.floor(o / k);
    const gap = Math.abs(score(row, ours[o]) - score(row, ref[o]));
    assert.ok(gap <= TIE, `${what}: index ${o} is ${ours[o]}, cpu ${ref[o]} (score gap ${gap.toExponential(2)})`);
    ties++;
  }
  assert.ok(ties <= Math.max(1, ours.length / 100), `${what}: ${ties} tie swaps is implausibly many`);
}

if (gpu) {
  // n not a power of two, k not a power of two, T*H spanning several workgroups.
  // n = 300, k = 16 and n = 700, k = 40: more sub-keys than a workgroup's 64 lanes, larger k.
  for (const [Hk, n, k] of [[1, 12, 4], [3, 20, 5], [1, 9, 9], [1, 300, 16], [3, 700, 40]] as const) {
    test(`peerRetrieve on webgpu = cpu (Hk ${Hk}, n ${n}, k ${k}), forward and gradients`, async () => {
      const rng = new Rng(20 + n);
      const T = 13, H = 3, dh = 6;
      const qa = randArray(T * H * 2 * dh, rng), ka = randArray(Hk * 2 * n * dh, rng);
      const res: { idx: Int32Array; score: Float32Array; dq: Float32Array; dk: Float32Array }[] = [];
      const cot = randArray(T * H * k, rng);
      for (const dev of ['cpu', 'webgpu'] as DeviceName[]) {
        const q = fromArray(qa.slice(), [T, H, 2, dh], dev), keys = fromArray(ka.slice(), [Hk, 2, n, dh], dev);
        q.requiresGrad = true; keys.requiresGrad = true;
        const { indices, scores } = peerRetrieve(q, keys, k);
        backward(scores, fromArray(cot.slice(), [T, H, k], dev));
        res.push({ idx: (await read(indices)) as Int32Array, score: (await read(scores)) as Float32Array,
          dq: (await read(q.grad!)) as Float32Array, dk: (await read(keys.grad!)) as Float32Array });
      }
      const [c, g] = res;
      const exact = (row: number, e: number) => {
        const hk = Hk === 1 ? 0 : row % H, i = Math.floor(e / n), j = e % n;
        let s = 0;
        for (let d = 0; d < dh; d++) s += qa[row * 2 * dh + d] * ka[(hk * 2 * n + i) * dh + d] + qa[row * 2 * dh + dh + d] * ka[((hk * 2 + 1) * n + j) * dh + d];
        return s;
      };
      assertIndices(g.idx, c.idx, exact, k, 'indices');
      // Sorted scores agree even across a tie swap (the swapped picks score within TIE).
      assertClose(g.score, c.score, VAL_TOL, 'scores');
      // The gradients follow the picks: these seeds have no near-ties, so the picks must be identical.
      assert.deepEqual(Array.from(g.idx), Array.from(c.idx), 'picks (no near-ties in this data)');
      assertClose(g.dq, c.dq, VAL_TOL, 'dq');
      assertClose(g.dk, c.dk, VAL_TOL, 'dkeys');
    });
  }

  test('peerRetrieve on webgpu = cpu with exactly tied sub-key scores (lower index first)', async () => {
    const rng = new Rng(77);
    const T = 9, H = 2, dh = 4, n = 200, k = 16;
    const qa = randArray(T * H * 2 * dh, rng), ka = randArray(2 * n * dh, rng);
    // Every third sub-key row repeats the one before it, in both halves: many exact ties, some at the cut.
    for (let half = 0; half < 2; half++) for (let j = 1; j < n; j += 3) ka.copyWithin((half * n + j) * dh, (half * n + j - 1) * dh, (half * n + j) * dh);
    const ids: Int32Array[] = [];
    for (const dev of ['cpu', 'webgpu'] as DeviceName[]) {
      const { indices } = peerRetrieve(fromArray(qa.slice(), [T, H, 2, dh], dev), fromArray(ka.slice(), [1, 2, n, dh], dev), k);
      ids.push((await read(indices)) as Int32Array);
    }
    assert.deepEqual(Array.from(ids[1]), Array.from(ids[0]));
  });

  const variants: PeerExpertsOpts[] = [{ activation: 'gelu', score: 'softmax' }, { activation: 'relu', score: 'sigmoid' }];
  for (const o of variants) {
    // H*k = 80 > 64 threads per workgroup; C = 70 not a multiple of 64; N small so experts repeat.
    test(`peerExperts on webgpu = cpu (${o.activation}, ${o.score}), forward, backward, row-sparse tables`, async () => {
      const rng = new Rng(7);
      const T = 6, C = 70, N = 40, H = 4, k = 20;
      const xa = randArray(T * C, rng), da = randArray(N * C, rng, 0.3), ua = randArray(N * C, rng, 0.3);
      const ia = Int32Array.from({ length: T * H * k }, () => rng.int(N)), za = randArray(T * H * k, rng), cot = randArray(T * C, rng);
      const out: Float32Array[][] = [];
      let gpuRows: Int32Array | null = null, gpuDu: Float32Array | null = null;
      for (const dev of ['cpu', 'webgpu'] as DeviceName[]) {
        const x = fromArray(xa.slice(), [T, C], dev), down = fromArray(da.slice(), [N, C], dev), up = fromArray(ua.slice(), [N, C], dev);
        const z = fromArray(za.slice(), [T, H, k], dev), idx = fromArray(ia.slice(), [T, H, k], dev);
        for (const t of [x, down, up, z]) t.requiresGrad = true;
        for (const t of [down, up]) t.sparseGrad = true;
        const y = peerExperts(x, down, up, idx, z, o);
        backward(y, fromArray(cot.slice(), [T, C], dev));
        out.push([await read(y), await read(x.grad!), await read(z.grad!), await denseGrad(down), await denseGrad(up)] as Float32Array[]);
        if (dev === 'webgpu') {
          gpuRows = (await read(down.sparseGrads[0].indices)) as Int32Array;
          gpuDu = (await read(down.sparseGrads[0].values)) as Float32Array;
        }
      }
      ['y', 'dx', 'dscores', 'ddown', 'dup'].forEach((name, i) => assertClose(out[1][i], out[0][i], VAL_TOL, name));
      // The device row list: every retrieval once, ascending; repeats of an expert carry zero rows.
      assert.deepEqual(Array.from(gpuRows!), Array.from(ia).sort((a, b) => a - b));
      let repeats = 0;
      for (let r = 1; r < gpuRows!.length; r++) {
        if (gpuRows![r] !== gpuRows![r - 1]) continue;
        repeats++;
        assert.ok(gpuDu!.subarray(r * C, (r + 1) * C).every((v) => v === 0), `repeat of row ${gpuRows![r]} holds a nonzero gradient`);
      }
      assert.ok(repeats > 0, 'the test must exercise repeated experts');
    });
  }

  for (const training of [true, false]) {
    test(`batchNorm1d on webgpu = cpu (${training ? 'training, running stats' : 'eval'}), forward and backward`, async () => {
      const rng = new Rng(training ? 5 : 6);
      const R = 37, F = 300; // F spans two workgroups of 256 features
      const xa = randArray(R * F, rng, 2), wa = randArray(F, rng), ba = randArray(F, rng), cot = randArray(R * F, rng);
      const rma = randArray(F, rng), rva = Float32Array.from(randArray(F, rng), (v) => 0.5 + Math.abs(v));
      const res: Float32Array[][] = [];
      for (const dev of ['cpu', 'webgpu'] as DeviceName[]) {
        const x = fromArray(xa.slice(), [R, F], dev), w = fromArray(wa.slice(), [F], dev), b = fromArray(ba.slice(), [F], dev);
        const rm = fromArray(rma.slice(), [F], dev), rv = fromArray(rva.slice(), [F], dev);
        for (const t of [x, w, b]) t.requiresGrad = true;
        const y = batchNorm1d(x, w, b, { mean: rm, var: rv }, { training });
        backward(y, fromArray(cot.slice(), [R, F], dev));
        res.push(await Promise.all([y, x.grad!, w.grad!, b.grad!, rm, rv].map(read)) as Float32Array[]);
      }
      ['y', 'dx', 'dweight', 'dbias', 'running mean', 'running var'].forEach((name, i) => assertClose(res[1][i], res[0][i], VAL_TOL, name));
      // Without affine parameters or running stats (training only).
      if (training) {
        const [xc, xg] = pair(xa, [R, F]);
        const yc = batchNorm1d(xc, null, null, null, { training: true }), yg = batchNorm1d(xg, null, null, null, { training: true });
        assertClose(await read(yg), await read(yc), VAL_TOL, 'y (no affine)');
      }
    });
  }

  // ---- golden files, run on the webgpu backend ------------------------------------------------
  const GRAD_TOL = 1e-3;
  function golden(name: string) {
    const path = join(GOLDEN_DIR, `${name}.safetensors`);
    assert.ok(existsSync(path), `golden file ${path} is missing (set FRUGAL_GOLDEN_DIR)`);
    const { tensors, metadata } = readSafetensors(path);
    const get = (n: string) => tensors.get(n) ?? assert.fail(`${name}: no tensor ${n}`);
    const gpuT = (n: string) => { const t = get(n); return fromArray(t.data.slice(), t.shape, 'webgpu'); };
    return { tensors, config: JSON.parse(metadata.meta).config, get, gpuT };
  }
  async function checkGrads(m: PEER, g: ReturnType<typeof golden>, x: Tensor, bnTraining: boolean): Promise<void> {
    const params = new Map(m.namedParameters());
    for (const name of g.tensors.keys()) {
      if (!name.startsWith('grad.')) continue;
      const key = name.slice(5);
      // Training-mode BatchNorm gives the query bias an exactly-zero gradient (rounding noise in the
      // reference): the cpu golden test checks it is negligible; a relative error means nothing here.
      if (key === 'query.bias' && bnTraining) continue;
      const ours = key === 'x' ? ((await read(x.grad!)) as Float32Array) : await denseGrad(params.get(key) ?? assert.fail(`no parameter ${key}`));
      const e = relNorm(ours, g.get(name).data);
      assert.ok(e <= GRAD_TOL, `${name}: relative error ${e.toExponential(2)} > ${GRAD_TOL}`);
    }
  }
  function loadParams(m: PEER, g: ReturnType<typeof golden>): void {
    for (const name of g.tensors.keys()) if (name.startsWith('param.')) m.setTensor(name.slice(6), g.gpuT(name));
  }

  test('golden on webgpu: PEER-pytorch layout (per-head keys)', async () => {
    const g = golden('peer_lucidrains_tiny');
    const c = g.config;
    const opts: PeerLayerOptions = {
      numExperts: c.num_experts, heads: c.heads, topk: c.num_experts_per_head, dimKey: 2 * c.dim_key,
      queryNorm: 'none', sharedKeys: false, activation: 'gelu', score: 'softmax',
    };
    const m = new PEER(c.dim, opts, { rng: new Rng(1), device: 'webgpu' });
    loadParams(m, g);
    const x = g.gpuT('input.x');
    x.requiresGrad = true;
    const y = m.forward(x);
    assertClose(await read(y), g.get('output.y').data, VAL_TOL, 'output.y');
    backward(y, g.gpuT('input.cotangent'));
    await checkGrads(m, g, x, false);
  });

  test('golden on webgpu: paper PEER (query BatchNorm, shared sub-keys), train and eval', async () => {
    const g = golden('peer_paper_tiny');
    const c = g.config;
    const opts: PeerLayerOptions = {
      numExperts: c.num_experts, heads: c.heads, topk: c.k, dimKey: c.dk,
      queryNorm: 'batchnorm', sharedKeys: true, activation: 'gelu', score: 'softmax',
    };
    const m = new PEER(c.dim, opts, { rng: new Rng(1), device: 'webgpu' });
    loadParams(m, g);
    // batchNorm1d counts steps with a host-side increment, so this i32 scalar stays on the cpu.
    m.setTensor('query_bn.num_batches_tracked', fromArray(new Int32Array([0]), [], 'cpu'));
    const x = g.gpuT('input.x');
    x.requiresGrad = true;
    m.train();
    const y = m.forward(x);
    assertClose(await read(y), g.get('output.y_train').data, VAL_TOL, 'output.y_train');
    const idxTrain = (await read(m.lastIndices!)) as Int32Array;
    backward(y, g.gpuT('input.cotangent'));
    await checkGrads(m, g, x, true);
    const buffers = new Map(m.namedBuffers());
    for (const name of g.tensors.keys()) {
      if (!name.startsWith('buffer.')) continue;
      const ours = buffers.get(name.slice(7)) ?? assert.fail(`no buffer ${name}`);
      if (ours.dtype === 'i32') assert.deepEqual(Array.from(await read(ours)), Array.from(g.get(name).data), name);
      else assertClose(await read(ours), g.get(name).data, VAL_TOL, name);
    }
    m.eval();
    const yEval = noGrad(() => m.forward(x));
    assertClose(await read(yEval), g.get('output.y_eval').data, VAL_TOL, 'output.y_eval');
    // Index ties are arbitrated by the cpu golden test with exact scores; here the webgpu picks must
    // equal the reference except for at most 1% of them (each swap is then a near-tie).
    for (const [ours, ref] of [[idxTrain, 'output.indices_train'], [(await read(m.lastIndices!)) as Int32Array, 'output.indices_eval']] as const) {
      const want = g.get(ref).data;
      const diff = ours.reduce((s, v, i) => s + (v === want[i] ? 0 : 1), 0);
      assert.ok(diff <= ours.length / 100, `${ref}: ${diff} of ${ours.length} picks differ`);
    }
  });
}
