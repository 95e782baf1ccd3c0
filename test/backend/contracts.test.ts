// Every layer-kernel family of the backend under test (FRUGAL_DEVICE: cpu, or webgpu in the WebGPU
// pass) against the plain reference of its contract (src/backend/reference/*) on the same random
// inputs: attention, TTT, PEER, FBI and the optimizer's row coalescing. A kernel the backend lacks
// must raise KernelUnavailableError naming the backend and the op.
// Tolerance: relative max-abs 1e-4 (float32 kernels against float64 references; WebGPU's exp/log and
// summation orders differ from the CPU's), 1e-5 where the kernel sums exact integers.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KernelUnavailableError, type PeerTableGrads } from '../../src/backend/contracts.ts';
import { getBackend } from '../../src/backend/registry.ts';
import { referenceAttention } from '../../src/backend/reference/attention.ts';
import { referenceFbi } from '../../src/backend/reference/fbi.ts';
import { referencePeer } from '../../src/backend/reference/peer.ts';
import { referenceTtt } from '../../src/backend/reference/ttt.ts';
import type { Backend, Buf, TypedArray } from '../../src/backend/types.ts';
import { initWebGPU } from '../../src/backend/webgpu/index.ts';
import { quantize } from '../../src/io/gguf.ts';
import { Rng } from '../../src/tensor/index.ts';
import { DEVICE, randArray, relMaxAbs } from '../helpers.ts';

if (DEVICE === 'webgpu') await initWebGPU();
const be: Backend = getBackend(DEVICE);
const TOL = 1e-4;

const up = (a: TypedArray): Buf => be.upload(a.slice());
const zeros = (n: number, dtype: 'f32' | 'i32' = 'f32'): Buf => be.upload(dtype === 'f32' ? new Float32Array(n) : new Int32Array(n));
const read = async (b: Buf): Promise<TypedArray> => (await be.read(b)).slice();
const host = (n: number) => new Float32Array(n);

function close(got: ArrayLike<number>, want: ArrayLike<number>, what: string, tol = TOL): void {
  assert.equal(got.length, want.length, `${what}: length`);
  assert.ok(Array.from(want).some((v) => v !== 0), `${what}: the reference is all zero`);
  const e = relMaxAbs(got, want);
  assert.ok(e <= tol, `${what}: relative max-abs error ${e} > ${tol}`);
}

test(`${DEVICE}: attention forward and backward against the reference (causal, GQA, cache offset, full, D = 7 / 64 / 128)`, async () => {
  const rng = new Rng(1);
  for (const c of [
    { b: 2, l: 9, s: 9, h: 4, hkv: 2, d: 8, causal: true },
    { b: 1, l: 5, s: 12, h: 2, hkv: 1, d: 16, causal: true },
    { b: 1, l: 7, s: 6, h: 2, hkv: 2, d: 4, causal: false },
    // Rows past one block, a cache offset, GQA groups of 2 and an odd head dimension (per-component path).
    { b: 1, l: 70, s: 75, h: 4, hkv: 2, d: 7, causal: true },
    { b: 1, l: 5, s: 70, h: 2, hkv: 1, d: 64, causal: false },
    { b: 1, l: 66, s: 66, h: 2, hkv: 1, d: 128, causal: true },
  ]) {
    const p = { ...c, scale: 1 / Math.sqrt(c.d) };
    const qn = c.b * c.l * c.h * c.d, kn = c.b * c.s * c.hkv * c.d, ln = c.b * c.h * c.l;
    const q = randArray(qn, rng, 2), k = randArray(kn, rng), v = randArray(kn, rng), dO = randArray(qn, rng);
    const ref = { o: host(qn), lse: host(ln), dq: host(qn), dk: host(kn), dv: host(kn) };
    referenceAttention.forward(q, k, v, ref.o, ref.lse, p);
    referenceAttention.backward(q, k, v, ref.o, dO, ref.lse, ref.dq, ref.dk, ref.dv, p);
    const [gq, gk, gv] = [up(q), up(k), up(v)];
    const o = zeros(qn), lse = zeros(ln), dq = zeros(qn), dk = zeros(kn), dv = zeros(kn);
    be.attention.forward(gq, gk, gv, o, lse, p);
    be.attention.backward(gq, gk, gv, o, up(dO), lse, dq, dk, dv, p);
    const what = JSON.stringify(c);
    close(await read(o), ref.o, `o ${what}`);
    close(await read(lse), ref.lse, `lse ${what}`);
    close(await read(dq), ref.dq, `dq ${what}`);
    close(await read(dk), ref.dk, `dk ${what}`);
    close(await read(dv), ref.dv, `dv ${what}`);
  }
});

for (const mlp of [false, true]) {
  test(`${DEVICE}: TTT-${mlp ? 'MLP' : 'Linear'} forward, saved weights and backward against the reference`, async () => {
    const rng = new Rng(mlp ? 2 : 3);
    const d = { mlp, batch: 2, heads: 2, length: 11, dim: 4, hidden: mlp ? 16 : 4, miniBatch: 4 };
    const { batch: B, heads: nh, length: L, dim: f, hidden: h, miniBatch: K } = d;
    const n = B * nh * L * f, nSeg = Math.ceil(L / K);
    const x = {
      xq: randArray(n, rng), xk: randArray(n, rng), xv: randArray(n, rng),
      lr: Float32Array.from(randArray(B * nh * L, rng), (v) => 0.1 + 0.05 * v), tokenEta: Float32Array.from({ length: K }, (_, i) => 1 / (i + 1)),
      w1: randArray(nh * f * h, rng, 0.3), b1: randArray(nh * h, rng, 0.1),
      w2: mlp ? randArray(nh * h * f, rng, 0.3) : null, b2: mlp ? randArray(nh * f, rng, 0.1) : null,
      lnW: Float32Array.from(randArray(nh * f, rng), (v) => 1 + 0.1 * v), lnB: randArray(nh * f, rng, 0.1),
    };
    const sizes = { w1: f * h, b1: h, w2: mlp ? h * f : 0, b2: mlp ? f : 0 };
    const savedOf = (mk: (n: number) => Float32Array | Buf) =>
      ({ w1: mk(B * nh * nSeg * sizes.w1), b1: mk(B * nh * nSeg * sizes.b1), w2: mlp ? mk(B * nh * nSeg * sizes.w2) : null, b2: mlp ? mk(B * nh * nSeg * sizes.b2) : null });
    const gradsOf = (mk: (n: number) => Float32Array | Buf) => ({
      dxq: mk(n), dxk: mk(n), dxv: mk(n), dlr: mk(B * nh * L), dTokenEta: mk(K), dw1: mk(nh * f * h), db1: mk(nh * h),
      dw2: mlp ? mk(nh * h * f) : null, db2: mlp ? mk(nh * f) : null, dlnW: mk(nh * f), dlnB: mk(nh * f),
    });
    const dOut = randArray(n, rng);
    const refOut = host(n), refSaved = savedOf(host), refGrads = gradsOf(host);
    referenceTtt.forward(d, x, refOut, 0, null, refSaved);
    referenceTtt.backward(d, x, refSaved, dOut, refGrads);
    const gx = Object.fromEntries(Object.entries(x).map(([k, v]) => [k, v && up(v)])) as unknown as typeof x;
    const out = zeros(n), saved = savedOf((m) => zeros(m)), grads = gradsOf((m) => zeros(m));
    be.ttt.forward(d, gx, out, 0, null, saved as never);
    be.ttt.backward(d, gx, saved as never, up(dOut), grads as never);
    close(await read(out), refOut, 'out');
    for (const [k, v] of Object.entries(refSaved)) if (v) close(await read((saved as Record<string, Buf>)[k]), v as Float32Array, `saved ${k}`);
    for (const [k, v] of Object.entries(refGrads)) if (v) close(await read((grads as Record<string, Buf>)[k]), v as Float32Array, k);
  });
}

/** Dense [N, C] sums of both tables' row-sparse gradients in the 'rows' form. */
async function denseTables(r: PeerTableGrads, N: number, C: number, b: Backend): Promise<[Float32Array, Float32Array]> {
  assert.equal(r.form, 'rows');
  if (r.form !== 'rows') throw new Error('unreachable');
  const rows = (await b.read(r.rows)) as Int32Array, du = (await b.read(r.du)) as Float32Array, dv = (await b.read(r.dv)) as Float32Array;
  const U = new Float32Array(N * C), V = new Float32Array(N * C);
  for (let q = 0; q < r.count; q++) for (let c = 0; c < C; c++) { U[rows[q] * C + c] += du[q * C + c]; V[rows[q] * C + c] += dv[q * C + c]; }
  return [U, V];
}

test(`${DEVICE}: PEER retrieval, expert mixture and their backward against the reference`, async () => {
  const rng = new Rng(4);
  const T = 5, H = 2, n = 8, dh = 4, k = 3, C = 6, N = n * n;
  for (const hk of [1, H]) {
    const d = { tokens: T, heads: H, hk, n, dh, k };
    const q = randArray(T * H * 2 * dh, rng), keys = randArray(hk * 2 * n * dh, rng);
    const ref = { indices: new Int32Array(T * H * k), scores: host(T * H * k), sub: new Int32Array(T * H * k * 2) };
    referencePeer.retrieve(q, keys, d, ref);
    const got = { indices: zeros(T * H * k, 'i32'), scores: zeros(T * H * k), sub: zeros(T * H * k * 2, 'i32') };
    be.peer.retrieve(up(q), up(keys), d, got);
    assert.deepEqual([...(await read(got.indices))], [...ref.indices], `indices (hk ${hk})`);
    close(await read(got.scores), ref.scores, `scores (hk ${hk})`);
    const dz = randArray(T * H * k, rng);
    const rq = host(q.length), rk = host(keys.length);
    referencePeer.retrieveBackward(q, keys, ref.sub, dz, d, rq, rk);
    const gq = zeros(q.length), gk = zeros(keys.length);
    be.peer.retrieveBackward(up(q), up(keys), got.sub, up(dz), d, gq, gk);
    close(await read(gq), rq, `dq (hk ${hk})`);
    close(await read(gk), rk, `dkeys (hk ${hk})`);
  }
  for (const [activation, score] of [['gelu', 'softmax'], ['relu', 'sigmoid']] as const) {
    const d = { tokens: T, c: C, experts: N, heads: H, k, activation, score };
    const x = randArray(T * C, rng), down = randArray(N * C, rng), upT = randArray(N * C, rng);
    // Repeated experts across tokens and heads exercise the row sums.
    const indices = Int32Array.from({ length: T * H * k }, (_, i) => (i * 7) % 11), scores = randArray(T * H * k, rng);
    const hx = { x, down, up: upT, indices, scores };
    const refY = host(T * C), refSaved = { g: host(T * H * k), pre: host(T * H * k) };
    referencePeer.expertsForward(hx, d, refY, refSaved);
    const gxIn = { x: up(x), down: up(down), up: up(upT), indices: up(indices), scores: up(scores) };
    const y = zeros(T * C), saved = { g: zeros(T * H * k), pre: zeros(T * H * k) };
    be.peer.expertsForward(gxIn, d, y, saved);
    close(await read(y), refY, `y ${activation}/${score}`);
    const dy = randArray(T * C, rng);
    const rdx = host(T * C), rdz = host(T * H * k);
    const rr = referencePeer.expertsBackward(hx, d, refSaved, dy, rdx, rdz);
    const dx = zeros(T * C), dz = zeros(T * H * k);
    const gr = be.peer.expertsBackward(gxIn, d, saved, up(dy), dx, dz);
    close(await read(dx), rdx, `dx ${activation}/${score}`);
    close(await read(dz), rdz, `dscores ${activation}/${score}`);
    const [refU, refV] = await denseTables(rr, N, C, getBackend('cpu'));
    let U: Float32Array, V: Float32Array;
    if (gr.form === 'factored') {
      // Factored terms: coef ds on the rows of x, w on the rows of dy.
      const mat = (coef: Buf, basis: Buf) => {
        const o = be.upload(new Float32Array(N * C));
        be.kernels.factoredRows({ slot: gr.slot, token: gr.token, coef, basis, terms: gr.slot.length, rows: gr.count, width: C }, o, gr.rows);
        return o;
      };
      U = (await read(mat(gr.ds, up(x)))) as Float32Array;
      V = (await read(mat(gr.w, up(dy)))) as Float32Array;
    } else [U, V] = await denseTables(gr, N, C, be);
    close(U, refU, `d(down) ${activation}/${score}`);
    close(V, refV, `d(up) ${activation}/${score}`);
  }
});

test(`${DEVICE}: BatchNorm1d forward and backward against the reference (training and eval)`, async () => {
  const rng = new Rng(5);
  const rows = 7, F = 5;
  for (const training of [true, false]) {
    const d = { rows, features: F, training, momentum: 0.1, eps: 1e-5 };
    const x = randArray(rows * F, rng), w = randArray(F, rng), b = randArray(F, rng), dy = randArray(rows * F, rng);
    const rm = randArray(F, rng, 0.1), rv = Float32Array.from(randArray(F, rng), (v) => 1 + 0.5 * Math.abs(v));
    const ref = { y: host(rows * F), mean: host(F), rstd: host(F), rm: rm.slice(), rv: rv.slice(), dx: host(rows * F), dw: host(F), db: host(F) };
    referencePeer.batchNormForward(x, w, b, ref.rm, ref.rv, d, ref.y, ref.mean, ref.rstd);
    referencePeer.batchNormBackward(x, w, ref.mean, ref.rstd, dy, d, ref.dx, ref.dw, ref.db);
    const g = { x: up(x), y: zeros(rows * F), mean: zeros(F), rstd: zeros(F), rm: up(rm), rv: up(rv), dx: zeros(rows * F), dw: zeros(F), db: zeros(F) };
    be.peer.batchNormForward(g.x, up(w), up(b), g.rm, g.rv, d, g.y, g.mean, g.rstd);
    be.peer.batchNormBackward(g.x, up(w), g.mean, g.rstd, up(dy), d, g.dx, g.dw, g.db);
    for (const key of ['y', 'rm', 'rv', 'dx', 'dw', 'db'] as const) close(await read(g[key]), ref[key], `${key} (training ${training})`);
  }
});

test(`${DEVICE}: FBI packed products (exact and int8 activations) against the reference`, async () => {
  const rng = new Rng(6);
  for (const pattern of ['column', 'row', 'single'] as const) {
    for (const [rows, inF, outF] of [[1, 70, 20], [6, 64, 33]]) {
      const w = randArray(outF * inF, rng), x = randArray(rows * inF, rng);
      const ns = pattern === 'column' ? inF : pattern === 'row' ? outF : 1;
      const alpha = Float32Array.from(randArray(ns, rng), (v) => 0.1 + Math.abs(v)), beta = randArray(ns, rng, 0.1);
      const bits = new Int32Array(outF * Math.ceil(inF / 32));
      referenceFbi.packSigns(w, inF, outF, bits);
      for (const mode of ['packedMatmul', 'int8Matmul'] as const) {
        const ref = host(rows * outF);
        referenceFbi[mode]({ x, bits, alpha, beta, pattern, rows, inF, outF, y: ref });
        const y = zeros(rows * outF);
        be.fbi[mode]({ x: up(x), bits: up(bits), alpha: up(alpha), beta: up(beta), pattern, rows, inF, outF, y });
        close(await read(y), ref, `${mode} ${pattern} [${rows},${inF}]x[${outF}]`, 1e-5);
      }
    }
  }
});

test(`${DEVICE}: sign packing, f16 / int8 heads and GGUF blocks against the reference (or one clear error)`, async () => {
  const rng = new Rng(7);
  const rows = 3, inF = 128, outF = 10;
  const w = randArray(outF * inF, rng), x = randArray(rows * inF, rng);
  const missing = (fn: () => void, op: string) => assert.throws(fn, (e: unknown) =>
    e instanceof KernelUnavailableError && e.message === `the ${DEVICE} backend has no '${op}' kernel`);
  const cases: [string, (t: typeof referenceFbi, bufs: (a: TypedArray) => Buf, y: Buf) => void, number][] = [];
  const half = new Int32Array(outF * inF / 2);
  const hv = new Uint16Array(half.buffer);
  for (let i = 0; i < hv.length; i++) hv[i] = (rng.uniform() * 0x3bff) | (rng.uniform() < 0.5 ? 0x8000 : 0);
  cases.push(['fbi.f16Matmul', (t, u, y) => t.f16Matmul(u(x), u(half), rows, inF, outF, y), 1e-5]);
  const q = new Int32Array(outF * 128 / 4);
  const qb = new Int8Array(q.buffer);
  for (let i = 0; i < qb.length; i++) qb[i] = Math.round((rng.uniform() - 0.5) * 250);
  const scale = Float32Array.from({ length: outF }, () => 0.01 + rng.uniform() * 0.01);
  cases.push(['fbi.int8HeadMatmul', (t, u, y) => t.int8HeadMatmul(u(x), u(q), u(scale), rows, inF, outF, y), 1e-5]);
  for (const type of ['Q8_0', 'Q4_0', 'Q1_0'] as const) {
    const blocks = quantize(type, w);
    cases.push([`fbi.quantMatmul`, (t, u, y) => t.quantMatmul(u(x), blocks, type, rows, inF, outF, y), 1e-5]);
  }
  for (const [op, call, tol] of cases) {
    const ref = host(rows * outF);
    call(referenceFbi, (a) => a, ref as unknown as Buf);
    const y = zeros(rows * outF);
    let ran = true;
    try { call(be.fbi, up, y); } catch (e) {
      if (!(e instanceof KernelUnavailableError)) throw e;
      missing(() => call(be.fbi, up, y), op);
      ran = false;
    }
    if (ran) close(await read(y), ref, op, tol);
    else assert.equal(DEVICE, 'webgpu', `${op} is missing on ${DEVICE}`);
  }
  const bits = zeros(outF * 4, 'i32'), refBits = new Int32Array(outF * 4);
  referenceFbi.packSigns(w, inF, outF, refBits);
  try {
    be.fbi.packSigns(up(w), inF, outF, bits);
    assert.deepEqual([...(await read(bits))], [...refBits], 'sign bits');
  } catch (e) {
    if (!(e instanceof KernelUnavailableError)) throw e;
    missing(() => be.fbi.packSigns(up(w), inF, outF, bits), 'fbi.packSigns');
  }
});

test(`${DEVICE}: optimizer row coalescing sums duplicate rows (each row's total at its first entry)`, async () => {
  const rng = new Rng(8);
  const n = 9, width = 3;
  const rows = Int32Array.of(4, 1, 4, 7, 1, 4, 0, 7, 2), values = randArray(n * width, rng);
  const want = new Map<number, number[]>();
  for (let i = 0; i < n; i++) {
    const r = want.get(rows[i]) ?? [0, 0, 0];
    for (let j = 0; j < width; j++) r[j] += values[i * width + j];
    want.set(rows[i], r);
  }
  const c = be.optim.coalesceRows(up(rows), up(values), n, width);
  const gotRows = (await read(c.rows)).slice(0, c.count) as Int32Array, gotVals = (await read(c.values)) as Float32Array;
  const seen = new Map<number, number[]>();
  for (let q = 0; q < c.count; q++) {
    const r = gotRows[q];
    const first = !seen.has(r);
    if (!first) assert.equal(gotRows[q - 1], r, `repeat of row ${r} right after its first entry`);
    const vals = [...gotVals.subarray(q * width, (q + 1) * width)];
    if (first) seen.set(r, vals);
    else assert.deepEqual(vals, [0, 0, 0], `repeat of row ${r} holds zeros`);
  }
  assert.deepEqual([...seen.keys()].sort(), [...want.keys()].sort());
  for (const [r, v] of want) close(seen.get(r)!, v, `row ${r}`, 1e-6);
});
