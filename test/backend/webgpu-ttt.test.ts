// WebGPU TTT scan kernels against the CPU reference loops on the same random inputs: forward outputs,
// saved per-segment weights, decoding (prefill, then single tokens) with the state compared after every
// call, every backward gradient, and the fused op end to end through autograd.
// Tolerance 1e-4 of each tensor's max-abs: the GPU works in f32, the reference accumulates in f64.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type TttDims, tttBackwardReference, tttForwardReference } from '../../src/backend/reference/ttt.ts';
import { initWebGPU, webgpuAdapterName } from '../../src/backend/webgpu/index.ts';
import type { Backend, Buf } from '../../src/backend/types.ts';
import { tttScan, type TttKind, TttScanState } from '../../src/ops/ttt.ts';
import { backward, fromArray, noGrad, Rng, type Tensor } from '../../src/tensor/index.ts';
import { assertClose, DEVICE } from '../helpers.ts';

const TOL = 1e-4;

let gpu: Backend | null = null;
let reason = '';
try {
  gpu = await initWebGPU();
} catch (e) {
  reason = (e as Error).message;
}
console.log(gpu ? `# backend: webgpu (${webgpuAdapterName()})` : `# webgpu TTT NOT RUN: ${reason}`);
if (!gpu && DEVICE === 'webgpu') test('webgpu backend initializes', () => assert.fail(reason));
if (!gpu) test('webgpu TTT (not run: no WebGPU adapter)', { skip: reason }, () => {});

type Arrays = Record<string, Float32Array | null>;

function randomInputs(d: TttDims, seed: number): Arrays {
  const rng = new Rng(seed);
  const { batch: b, heads: nh, length: l, dim: f, hidden: h, miniBatch: k, mlp } = d;
  const rn = (n: number, s: number) => Float32Array.from({ length: n }, () => rng.normal() * s);
  const un = (n: number, lo: number, hi: number) => Float32Array.from({ length: n }, () => lo + (hi - lo) * rng.uniform());
  return {
    xq: rn(b * nh * l * f, 1), xk: rn(b * nh * l * f, 1), xv: rn(b * nh * l * f, 1), lr: un(b * nh * l, 0.2, 0.6),
    tokenEta: Float32Array.from({ length: k }, (_, i) => 1 / (i + 1) + 0.1 * rng.uniform()),
    w1: rn(nh * f * h, 0.4), b1: rn(nh * h, 0.2), w2: mlp ? rn(nh * h * f, 0.3) : null, b2: mlp ? rn(nh * f, 0.2) : null,
    lnW: un(nh * f, 0.5, 1.5), lnB: rn(nh * f, 0.2),
  };
}

/** Rows t0..t1 of the token inputs (the other inputs unchanged). */
function sliceTokens(d: TttDims, x: Arrays, t0: number, t1: number): Arrays {
  const { batch: b, heads: nh, length: l, dim: f } = d;
  const n = t1 - t0;
  const rows = (a: Float32Array, w: number) => {
    const o = new Float32Array(b * nh * n * w);
    for (let i = 0; i < b * nh; i++) o.set(a.subarray((i * l + t0) * w, (i * l + t1) * w), i * n * w);
    return o;
  };
  return { ...x, xq: rows(x.xq!, f), xk: rows(x.xk!, f), xv: rows(x.xv!, f), lr: rows(x.lr!, 1) };
}

const weightSizes = (d: TttDims) => ({ w1: d.dim * d.hidden, b1: d.hidden, w2: d.mlp ? d.hidden * d.dim : 0, b2: d.mlp ? d.dim : 0 });

/** Uploads arrays to the GPU; nulls stay null. */
function up(x: Arrays): Record<string, Buf | null> {
  return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, v ? gpu!.upload(v.slice()) : null]));
}
async function down(x: Record<string, Buf | null>): Promise<Arrays> {
  const o: Arrays = {};
  for (const [k, v] of Object.entries(x)) o[k] = v ? (await gpu!.read(v)) as Float32Array : null;
  return o;
}
const zerosLike = (x: Arrays): Arrays => Object.fromEntries(Object.entries(x).map(([k, v]) => [k, v ? new Float32Array(v.length) : null]));

function compare(got: Arrays, want: Arrays, what: string): void {
  for (const [k, v] of Object.entries(want)) {
    if (!v) continue;
    assert.ok(got[k], `${what}: missing ${k}`);
    assertClose(got[k]!.subarray(0, v.length), v, TOL, `${what} ${k}`);
  }
}

function dimsOf(kind: TttKind, batch: number, heads: number, length: number, dim: number, miniBatch: number): TttDims {
  return { mlp: kind === 'mlp', batch, heads, length, dim, hidden: kind === 'mlp' ? 4 * dim : dim, miniBatch };
}

if (gpu) {
  for (const kind of ['linear', 'mlp'] as const) {
    test(`webgpu ${kind}: forward, saved weights and every gradient match the CPU reference (2 mini-batches + remainder)`, async () => {
      const d = dimsOf(kind, 2, kind === 'mlp' ? 2 : 3, 21, kind === 'mlp' ? 8 : 16, 8);
      const x = randomInputs(d, kind === 'mlp' ? 11 : 12);
      const nSeg = Math.ceil(d.length / d.miniBatch);
      const ws = weightSizes(d);
      const nbh = d.batch * d.heads;
      const savedShape = (n: number) => (n ? new Float32Array(nbh * nSeg * n) : null);
      const cpuSaved = { w1: savedShape(ws.w1)!, b1: savedShape(ws.b1)!, w2: savedShape(ws.w2), b2: savedShape(ws.b2) };
      const cpuOut = new Float32Array(d.batch * d.length * d.heads * d.dim);
      tttForwardReference(d, x as never, cpuOut, 0, null, cpuSaved);

      const gx = up(x);
      const gOut = gpu!.upload(new Float32Array(cpuOut.length));
      const gSaved = up(zerosLike(cpuSaved));
      gpu!.ttt.forward(d, gx as never, gOut, 0, null, gSaved as never);
      assertClose(await gpu!.read(gOut), cpuOut, TOL, 'forward out');
      compare(await down(gSaved), cpuSaved, 'saved');

      const rng = new Rng(5);
      const dOut = Float32Array.from({ length: cpuOut.length }, () => rng.normal());
      const grads = {
        dxq: x.xq, dxk: x.xk, dxv: x.xv, dlr: x.lr, dTokenEta: x.tokenEta, dw1: x.w1, db1: x.b1, dw2: x.w2, db2: x.b2,
        dlnW: x.lnW, dlnB: x.lnB,
      };
      const cpuGrads = zerosLike(grads);
      tttBackwardReference(d, x as never, cpuSaved, dOut, cpuGrads as never);
      const gGrads = up(zerosLike(grads));
      gpu!.ttt.backward(d, gx as never, gSaved as never, gpu!.upload(dOut), gGrads as never);
      const got = await down(gGrads);
      compare(got, cpuGrads, 'grad');
      // The comparison means something only if the gradients are not trivially zero.
      for (const [k, v] of Object.entries(cpuGrads)) if (v) assert.ok(v.some((e) => e !== 0), `reference ${k} is all zero`);
    });

    test(`webgpu ${kind}: decoding state (unaligned prefill, then single tokens) matches the CPU reference`, async () => {
      const d = dimsOf(kind, 2, 2, 11, 8, 4);
      const x = randomInputs(d, kind === 'mlp' ? 21 : 22);
      const ws = weightSizes(d);
      const nbh = d.batch * d.heads;
      const st = (n: number) => (n ? new Float32Array(nbh * n) : null);
      const cpuState: Arrays = {
        w1: st(ws.w1), b1: st(ws.b1), w2: st(ws.w2), b2: st(ws.b2), gw1: st(ws.w1), gb1: st(ws.b1), gw2: st(ws.w2), gb2: st(ws.b2),
      };
      const gState = up(cpuState);
      // 6 tokens: one full mini-batch and 2 carried tokens; then single tokens across a boundary, ending
      // mid mini-batch so the final state holds carried gradient sums.
      const cuts = [0, 6, 7, 8, 9, 10, 11];
      for (let c = 0; c + 1 < cuts.length; c++) {
        const [t0, t1] = [cuts[c], cuts[c + 1]];
        const dc = { ...d, length: t1 - t0 };
        const xc = sliceTokens(d, x, t0, t1);
        const cpuOut = new Float32Array(d.batch * dc.length * d.heads * d.dim);
        tttForwardReference(dc, xc as never, cpuOut, t0, cpuState as never, null);
        const gOut = gpu!.upload(new Float32Array(cpuOut.length));
        gpu!.ttt.forward(dc, up(xc) as never, gOut, t0, gState as never, null);
        assertClose(await gpu!.read(gOut), cpuOut, TOL, `decode out [${t0}, ${t1})`);
        compare(await down(gState), cpuState, `state after [${t0}, ${t1})`);
      }
      assert.ok(cpuState.gw1!.some((v) => v !== 0), 'the last call leaves carried gradient sums to compare');
    });
  }

  test('webgpu tttScan op (mlp): output and autograd gradients match the cpu device', async () => {
    const d = dimsOf('mlp', 1, 2, 10, 8, 4);
    const x = randomInputs(d, 31);
    const shapes: Record<string, number[]> = {
      xq: [1, 2, 10, 8], xk: [1, 2, 10, 8], xv: [1, 2, 10, 8], lr: [1, 2, 10], tokenEta: [4], w1: [2, 8, 32], b1: [2, 1, 32],
      w2: [2, 32, 8], b2: [2, 1, 8], lnW: [2, 8], lnB: [2, 8],
    };
    const names = Object.keys(shapes);
    const run = async (device: 'cpu' | 'webgpu') => {
      const t: Record<string, Tensor> = {};
      for (const k of names) { t[k] = fromArray(x[k]!.slice(), shapes[k], device); t[k].requiresGrad = true; }
      const y = tttScan('mlp', t.xq, t.xk, t.xv, t.lr, t.tokenEta, { w1: t.w1, b1: t.b1, w2: t.w2, b2: t.b2 }, t.lnW, t.lnB, { miniBatch: 4 });
      const seed = fromArray(Float32Array.from({ length: y.size }, (_, i) => Math.sin(i)), y.shape, device);
      backward(y, seed);
      const out: Arrays = { y: (await y.data()) as Float32Array };
      for (const k of names) out[k] = (await t[k].grad!.data()) as Float32Array;
      return out;
    };
    compare(await run('webgpu'), await run('cpu'), 'op');
  });

  test('webgpu tttScan with a decoding state left on the cpu raises one clear error', () => {
    const d = dimsOf('linear', 1, 1, 2, 4, 4);
    const x = randomInputs(d, 1);
    const st = new TttScanState('linear', 1, 1, 4);
    const t = (k: string, shape: number[]) => fromArray(x[k]!, shape, 'webgpu');
    assert.throws(() => noGrad(() => tttScan('linear', t('xq', [1, 1, 2, 4]), t('xk', [1, 1, 2, 4]), t('xv', [1, 1, 2, 4]),
      t('lr', [1, 1, 2]), t('tokenEta', [4]), { w1: t('w1', [1, 4, 4]), b1: t('b1', [1, 1, 4]) }, t('lnW', [1, 4]), t('lnB', [1, 4]),
      { miniBatch: 4, state: st })), /decoding state\) is not on the webgpu device/);
  });
}
