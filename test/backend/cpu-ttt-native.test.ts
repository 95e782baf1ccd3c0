// Native TTT scan forward (native/ttt.cc) against the TypeScript reference loops on random inputs:
// linear and MLP, a remainder mini-batch, batch > 1 and several heads, a resumed decoding state
// (unaligned prefill, single tokens, a chunk crossing a mini-batch boundary), and the weights saved
// for the backward; the native backward (native/ttt_bwd.cc) against the TypeScript reference backward
// for every gradient. Head dims 16 / 32 exercise the vector column blocks, 6 the scalar column tail.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  tttBackwardReference, type TttDims, type TttGrads, type TttInputs, tttForwardReference, type TttSaved, type TttStateBufs,
} from '../../src/backend/reference/ttt.ts';
import { tttBackwardNative, tttForwardNative } from '../../src/backend/cpu/ttt.ts';
import { cpuBackend } from '../../src/backend/cpu/index.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { relMaxAbs } from '../helpers.ts';

// The reference accumulates in float64, the native kernel in float32 (row statistics in float64).
const TOL = 1e-5;

function inputs(d: TttDims, rng: Rng): TttInputs {
  const { batch: B, heads: nh, length: L, dim: f, hidden: h, miniBatch: K, mlp } = d;
  const rnd = (n: number, s: number) => Float32Array.from({ length: n }, () => rng.normal() * s);
  const uni = (n: number, lo: number, hi: number) => Float32Array.from({ length: n }, () => lo + (hi - lo) * rng.uniform());
  return {
    xq: rnd(B * nh * L * f, 1), xk: rnd(B * nh * L * f, 1), xv: rnd(B * nh * L * f, 1),
    lr: uni(B * nh * L, 0.2 / f, 1 / f), tokenEta: Float32Array.from({ length: K }, (_, i) => 1 / (i + 1) + 0.1 * rng.uniform()),
    w1: rnd(nh * f * h, 0.3), b1: rnd(nh * h, 0.2), w2: mlp ? rnd(nh * h * f, 0.2) : null, b2: mlp ? rnd(nh * f, 0.2) : null,
    lnW: uni(nh * f, 0.5, 1.5), lnB: rnd(nh * f, 0.2),
  };
}

function emptyState(d: TttDims): TttStateBufs {
  const { batch: B, heads: nh, dim: f, hidden: h, mlp } = d;
  const z = (n: number) => new Float32Array(B * nh * n);
  return { w1: z(f * h), b1: z(h), w2: mlp ? z(h * f) : null, b2: mlp ? z(f) : null,
    gw1: z(f * h), gb1: z(h), gw2: mlp ? z(h * f) : null, gb2: mlp ? z(f) : null };
}

/** Tokens [t0, t1) of every per-token input, as a standalone chunk. */
function chunk(d: TttDims, x: TttInputs, t0: number, t1: number): [TttDims, TttInputs] {
  const { batch: B, heads: nh, length: L, dim: f } = d;
  const n = t1 - t0;
  const cut = (a: Float32Array, w: number) => {
    const r = new Float32Array(B * nh * n * w);
    for (let bh = 0; bh < B * nh; bh++) r.set(a.subarray((bh * L + t0) * w, (bh * L + t1) * w), bh * n * w);
    return r;
  };
  return [{ ...d, length: n }, { ...x, xq: cut(x.xq, f), xk: cut(x.xk, f), xv: cut(x.xv, f), lr: cut(x.lr, 1) }];
}

const allOf = (s: TttStateBufs | TttSaved) => Object.values(s).filter((a): a is Float32Array => a !== null);

for (const mlp of [false, true]) {
  const kind = mlp ? 'mlp' : 'linear';
  for (const f of [16, 32, 6]) {
    test(`native ttt ${kind} f=${f}: forward and saved weights match the reference (B 2, 3 heads, remainder)`, () => {
      const d: TttDims = { mlp, batch: 2, heads: 3, length: 16 * 3 + 5, dim: f, hidden: mlp ? 4 * f : f, miniBatch: 16 };
      const x = inputs(d, new Rng(10 + f + (mlp ? 1 : 0)));
      const nSeg = Math.ceil(d.length / d.miniBatch), per = d.batch * d.heads * nSeg;
      const mkSaved = (): TttSaved => ({ w1: new Float32Array(per * f * d.hidden), b1: new Float32Array(per * d.hidden),
        w2: mlp ? new Float32Array(per * d.hidden * f) : null, b2: mlp ? new Float32Array(per * f) : null });
      const n = d.batch * d.heads * d.length * f;
      const ref = new Float32Array(n), got = new Float32Array(n);
      const sRef = mkSaved(), sGot = mkSaved();
      tttForwardReference(d, x, ref, 0, null, sRef);
      tttForwardNative(d, x, got, 0, null, sGot);
      const e = relMaxAbs(got, ref);
      assert.ok(e < TOL, `output: ${e}`);
      allOf(sRef).forEach((a, i) => {
        const es = relMaxAbs(allOf(sGot)[i], a);
        assert.ok(es < TOL, `saved weights ${i}: ${es}`);
      });
    });
  }

  test(`native ttt ${kind}: decoding state (prefill 13, chunk of 22 across a boundary, single tokens) matches the reference`, () => {
    const f = 16;
    const d: TttDims = { mlp, batch: 2, heads: 2, length: 45, dim: f, hidden: mlp ? 4 * f : f, miniBatch: 16 };
    const x = inputs(d, new Rng(mlp ? 7 : 8));
    const sRef = emptyState(d), sGot = emptyState(d);
    const cuts = [0, 13, 35, ...Array.from({ length: 10 }, (_, i) => 36 + i)];
    for (let c = 0; c + 1 < cuts.length; c++) {
      const [dc, xc] = chunk(d, x, cuts[c], cuts[c + 1]);
      const n = dc.batch * dc.heads * dc.length * f;
      const ref = new Float32Array(n), got = new Float32Array(n);
      tttForwardReference(dc, xc, ref, cuts[c], sRef, null);
      tttForwardNative(dc, xc, got, cuts[c], sGot, null);
      const e = relMaxAbs(got, ref);
      assert.ok(e < TOL, `chunk [${cuts[c]}, ${cuts[c + 1]}): ${e}`);
    }
    allOf(sRef).forEach((a, i) => {
      const es = relMaxAbs(allOf(sGot)[i], a);
      assert.ok(es < TOL, `state array ${i}: ${es}`);
    });
  });
}

test('native ttt: the cpu backend\'s TTT table runs the native forward', () => {
  const d: TttDims = { mlp: false, batch: 1, heads: 2, length: 20, dim: 16, hidden: 16, miniBatch: 16 };
  const x = inputs(d, new Rng(4));
  const n = 2 * 20 * 16;
  const run = (fn: typeof tttForwardNative) => { const o = new Float32Array(n); fn(d, x, o, 0, null, null); return o; };
  const ref = run(tttForwardReference), nat = run(tttForwardNative);
  assert.ok(ref.some((v, i) => v !== nat[i]), 'float32 and float64 accumulation differ somewhere');
  const o = new Float32Array(n);
  cpuBackend.ttt.forward(d, x, o, 0, null, null);
  assert.deepEqual(o, nat);
});

test('native ttt: bad arguments raise one clear error', () => {
  const d: TttDims = { mlp: false, batch: 1, heads: 2, length: 5, dim: 4, hidden: 4, miniBatch: 4 };
  const x = inputs(d, new Rng(1));
  assert.throws(() => tttForwardNative(d, { ...x, xk: new Float32Array(3) }, new Float32Array(40), 0, null, null), /xk has 3 elements, expected 40/);
  assert.throws(() => tttForwardNative({ ...d, hidden: 16 }, x, new Float32Array(40), 0, null, null), /hidden must be dim/);
});

function savedFor(d: TttDims): TttSaved {
  const { batch: B, heads: nh, dim: f, hidden: h, mlp } = d;
  const per = B * nh * Math.ceil(d.length / d.miniBatch);
  return { w1: new Float32Array(per * f * h), b1: new Float32Array(per * h),
    w2: mlp ? new Float32Array(per * h * f) : null, b2: mlp ? new Float32Array(per * f) : null };
}

/** Gradient buffers pre-filled with NaN, so a gradient the kernel fails to write shows up. */
function gradsFor(d: TttDims): TttGrads {
  const { batch: B, heads: nh, length: L, dim: f, hidden: h, miniBatch: K, mlp } = d;
  const z = (n: number) => new Float32Array(n).fill(NaN);
  const xn = B * nh * L * f;
  return { dxq: z(xn), dxk: z(xn), dxv: z(xn), dlr: z(B * nh * L), dTokenEta: z(K), dw1: z(nh * f * h), db1: z(nh * h),
    dw2: mlp ? z(nh * h * f) : null, db2: mlp ? z(nh * f) : null, dlnW: z(nh * f), dlnB: z(nh * f) };
}

// Both backwards accumulate in float64; what differs is the summation order (per-task partial sums),
// so they agree far inside this bound.
const BWD_TOL = 1e-5;

for (const mlp of [false, true]) {
  const kind = mlp ? 'mlp' : 'linear';
  for (const f of [16, 6]) {
    test(`native ttt ${kind} f=${f}: backward matches the reference for every gradient (B 2, 3 heads, remainder)`, () => {
      const d: TttDims = { mlp, batch: 2, heads: 3, length: 16 * 2 + 7, dim: f, hidden: mlp ? 4 * f : f, miniBatch: 16 };
      const rng = new Rng(30 + f + (mlp ? 1 : 0));
      const x = inputs(d, rng);
      const n = d.batch * d.heads * d.length * f;
      const saved = savedFor(d);
      tttForwardReference(d, x, new Float32Array(n), 0, null, saved);
      const dOut = Float32Array.from({ length: n }, () => rng.normal());
      const ref = gradsFor(d), got = gradsFor(d);
      tttBackwardReference(d, x, saved, dOut, ref);
      tttBackwardNative(d, x, saved, dOut, got);
      for (const [name, a] of Object.entries(ref) as [keyof TttGrads, Float32Array | null][]) {
        if (!a) { assert.equal(got[name], null); continue; }
        const b = got[name]!;
        assert.ok(b.every(Number.isFinite), `${name} has non-finite entries`);
        assert.ok(a.some((v) => v !== 0), `${name} of the reference is all zero`);
        const e = relMaxAbs(b, a);
        assert.ok(e < BWD_TOL, `${name}: ${e}`);
      }
    });
  }
}

test('native ttt: the batch-shared gradients are the same on every run (fixed-order reduction)', () => {
  const d: TttDims = { mlp: true, batch: 4, heads: 3, length: 40, dim: 8, hidden: 32, miniBatch: 16 };
  const rng = new Rng(77);
  const x = inputs(d, rng);
  const n = d.batch * d.heads * d.length * d.dim;
  const saved = savedFor(d);
  tttForwardNative(d, x, new Float32Array(n), 0, null, saved);
  const dOut = Float32Array.from({ length: n }, () => rng.normal());
  const first = gradsFor(d);
  tttBackwardNative(d, x, saved, dOut, first);
  for (let r = 0; r < 3; r++) {
    const again = gradsFor(d);
    tttBackwardNative(d, x, saved, dOut, again);
    assert.deepEqual(again, first);
  }
});

test('native ttt: the cpu backend\'s TTT table runs the native backward', () => {
  const d: TttDims = { mlp: false, batch: 2, heads: 2, length: 20, dim: 16, hidden: 16, miniBatch: 16 };
  const rng = new Rng(5);
  const x = inputs(d, rng);
  const n = 2 * 2 * 20 * 16;
  const saved = savedFor(d);
  tttForwardReference(d, x, new Float32Array(n), 0, null, saved);
  const dOut = Float32Array.from({ length: n }, () => rng.normal());
  const table = (dd: TttDims, xx: TttInputs, sv: TttSaved, dy: Float32Array, g: TttGrads) => cpuBackend.ttt.backward(dd, xx, sv, dy, g);
  const run = (fn: typeof tttBackwardNative) => { const g = gradsFor(d); fn(d, x, saved, dOut, g); return g; };
  // Both round float64 sums to float32 and usually agree bit for bit, so the route is told apart by
  // the native wrapper's argument check (the reference loops ignore a short output array).
  const short = (fn: typeof tttBackwardNative) => () => fn(d, x, saved, dOut, { ...gradsFor(d), dlr: new Float32Array(3) });
  assert.doesNotThrow(short(tttBackwardReference));
  assert.deepEqual(run(table), run(tttBackwardNative));
  assert.throws(short(table), /tttBackwardNative: dlr has 3 elements/);
});

test('native ttt backward: bad arguments raise one clear error', () => {
  const d: TttDims = { mlp: false, batch: 1, heads: 2, length: 5, dim: 4, hidden: 4, miniBatch: 4 };
  const x = inputs(d, new Rng(2));
  const saved = savedFor(d);
  const dOut = new Float32Array(40);
  assert.throws(() => tttBackwardNative(d, x, saved, dOut, { ...gradsFor(d), dxk: new Float32Array(7) }), /tttBackwardNative: dxk has 7 elements, expected 40/);
  assert.throws(() => tttBackwardNative(d, x, { ...saved, w1: new Float32Array(3) }, dOut, gradsFor(d)), /saved.w1 has 3 elements/);
});
