// CPU vs WebGPU on the same random inputs, kernel by kernel (forward and backward). Runs when the
// webgpu backend can be initialized; with FRUGAL_DEVICE=webgpu an unavailable backend fails the run.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cpuBackend } from '../../src/backend/cpu/index.ts';
import type { Backend, Buf, Kernels, TypedArray } from '../../src/backend/types.ts';
import type { AttentionKernels, OptimKernels } from '../../src/backend/contracts.ts';
import { initWebGPU, webgpuAdapterName } from '../../src/backend/webgpu/index.ts';
import { Rng } from '../../src/tensor/index.ts';
import { assertClose, DEVICE } from '../helpers.ts';

let gpu: Backend | null = null;
let reason = '';
try {
  gpu = await initWebGPU();
} catch (e) {
  reason = (e as Error).message;
}
console.log(gpu ? `# backend: webgpu (${webgpuAdapterName()})` : `# webgpu parity NOT RUN: ${reason}`);
if (!gpu && DEVICE === 'webgpu') test('webgpu backend initializes', () => assert.fail(reason));
if (!gpu) test('webgpu parity (not run: no WebGPU adapter)', { skip: reason }, () => {});

const rng = new Rng(99);
const randn = (n: number, s = 1) => Float32Array.from({ length: n }, () => rng.normal() * s);
const ints = (vals: number[]) => Int32Array.from(vals);

type Arg = TypedArray | { out: number; dtype?: 'f32' | 'i32'; init?: TypedArray } | null | number | boolean | string | object;

/** Runs the same kernel call on both backends; arrays become buffers, {out} specs outputs that are compared. */
type Tables = Kernels & { optim: OptimKernels; attention: AttentionKernels };

async function parity(name: string, call: (k: Tables, ...bufs: (Buf | null)[]) => void, args: (TypedArray | { out: number; dtype?: 'f32' | 'i32'; init?: TypedArray } | null)[], tol = 1e-4, exact = false): Promise<void> {
  const results: TypedArray[][] = [];
  for (const be of [cpuBackend, gpu!]) {
    const bufs = args.map((a) => {
      if (a === null) return null;
      if (ArrayBuffer.isView(a)) return be.upload(a.slice() as TypedArray);
      const init = a.init ?? (a.dtype === 'i32' ? new Int32Array(a.out) : new Float32Array(a.out));
      return be.upload(init.slice() as TypedArray);
    });
    call({ ...be.kernels, optim: be.optim, attention: be.attention }, ...bufs);
    const outs: TypedArray[] = [];
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      if (a && !ArrayBuffer.isView(a)) outs.push((await be.read(bufs[i]!)).slice(0, a.out) as TypedArray);
    }
    for (const b of bufs) if (b) be.free(b);
    results.push(outs);
  }
  results[0].forEach((ref, i) => {
    if (exact) assert.deepEqual(Array.from(results[1][i]), Array.from(ref), `${name}: output ${i}`);
    else assertClose(results[1][i], ref, tol, `${name}: output ${i}`);
  });
}
const out = (n: number, dtype: 'f32' | 'i32' = 'f32', init?: TypedArray) => ({ out: n, dtype, init });
const view = (shape: number[], strides: number[], offset = 0) => ({ shape, strides, offset });

if (gpu) {
  test('fill, copy, copyStrided', async () => {
    await parity('fill f32', (k, o) => k.fill(o!, 2.5), [out(37)], 0, true);
    await parity('fill i32', (k, o) => k.fill(o!, -7), [out(37, 'i32')], 0, true);
    await parity('copy', (k, s, o) => k.copy(s!, 3, o!, 5, 20), [randn(30), out(40)], 0, true);
    await parity('copyStrided permute', (k, s, o) => k.copyStrided(s!, view([4, 2, 3], [1, 12, 4], 0), o!), [randn(24), out(24)], 0, true);
    await parity('copyStrided expand+offset', (k, s, o) => k.copyStrided(s!, view([3, 5], [0, 1], 2), o!), [randn(10), out(15)], 0, true);
    await parity('copyStrided i32', (k, s, o) => k.copyStrided(s!, view([3, 2], [1, 3]), o!), [ints([1, 2, 3, 4, 5, 6]), out(6, 'i32')], 0, true);
    // Large vec4-aligned copies run as a shader (a contiguous strided view, e.g. a leading-axis slice, too).
    const big = randn(3 * 70000);
    await parity('copy large', (k, s, o) => k.copy(s!, 4, o!, 8, 140000), [big, out(140012)], 0, true);
    await parity('copyStrided contiguous range', (k, s, o) => k.copyStrided(s!, view([2, 350, 100], [35000, 100, 1], 70000), o!), [big, out(70000)], 0, true);
    await parity('copy large i32', (k, s, o) => k.copy(s!, 0, o!, 0, 65536), [Int32Array.from({ length: 65540 }, (_, i) => i * 3 - 7), out(65536, 'i32')], 0, true);
  });

  test('binary ops with broadcasting', async () => {
    for (const op of ['add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum', 'eq', 'gt'] as const) {
      const a = op === 'pow' ? Float32Array.from(randn(12), (x) => Math.abs(x) + 0.5) : randn(12);
      const b = randn(4);
      if (op === 'eq') b[1] = a[1];
      await parity(op, (k, x, y, o) => k.binary(op, x!, view([3, 4], [4, 1]), y!, view([3, 4], [0, 1]), o!), [a, b, out(12)], 1e-5);
      // The flat paths: same shape (b read from an offset), a scalar operand on either side.
      const c = op === 'pow' ? Float32Array.from(randn(15), (x) => Math.abs(x) * 0.5) : randn(15);
      await parity(`${op} same shape`, (k, x, y, o) => k.binary(op, x!, view([3, 4], [4, 1]), y!, view([3, 4], [4, 1], 3), o!), [a, c, out(12)], 1e-5);
      await parity(`${op} scalar`, (k, x, y, o) => k.binary(op, x!, view([3, 4], [4, 1]), y!, view([3, 4], [0, 0], 2), o!), [a, b, out(12)], 1e-5);
      await parity(`${op} scalar first`, (k, x, y, o) => k.binary(op, y!, view([3, 4], [0, 0], 1), x!, view([3, 4], [4, 1]), o!), [a, op === 'pow' ? Float32Array.from(b, (x) => Math.abs(x) + 0.5) : b, out(12)], 1e-5);
    }
    // Flat paths over more elements than a workgroup's 4 x 256 (each thread takes 4, one grid apart; ragged end).
    const n = 2601, pos = (x: Float32Array) => Float32Array.from(x, (v) => Math.abs(v) + 0.5);
    for (const op of ['add', 'mul', 'pow', 'gt'] as const) {
      await parity(`${op} same shape, ${n}`, (k, x, y, o) => k.binary(op, x!, view([n], [1]), y!, view([n], [1], 5), o!), [pos(randn(n)), randn(n + 5), out(n)], 1e-5);
      await parity(`${op} scalar, ${n}`, (k, x, y, o) => k.binary(op, x!, view([n], [1], 3), y!, view([n], [0], 1), o!), [pos(randn(n + 3)), randn(2), out(n)], 1e-5);
    }
  });

  test('unary ops and derivatives', async () => {
    const ops = ['neg', 'exp', 'log', 'sqrt', 'rsqrt', 'tanh', 'sigmoid', 'relu', 'silu', 'gelu', 'gelu_tanh', 'abs', 'sign', 'square', 'reciprocal'] as const;
    for (const op of ops) {
      const x = Float32Array.from(randn(50, 2), (v) => (['log', 'sqrt', 'rsqrt', 'reciprocal'].includes(op) ? Math.abs(v) + 0.3 : v));
      await parity(op, (k, a, o) => k.unary(op, a!, o!, 1, 0), [x, out(50)], 1e-5);
      const y = Float32Array.from(x);
      cpuBackend.kernels.unary(op, x, y as unknown as Buf, 1, 0);
      await parity(`${op}'`, (k, a, yy, g, o) => k.unaryBackward(op, a!, yy!, g!, o!), [x, y, randn(50), out(50)], 1e-5);
    }
    await parity('affine', (k, a, o) => k.unary('identity', a!, o!, 1.5, -0.25), [randn(20), out(20)], 1e-6);
    await parity('exp(alpha x + beta)', (k, a, o) => k.unary('exp', a!, o!, 0.5, 0.1), [randn(20), out(20)], 1e-5);
  });

  test('swiglu forward and backward (fused)', async () => {
    const n = 1000;
    const gate = randn(n, 4), up = randn(n), g = randn(n);
    await parity('swiglu', (k, a, b, o) => k.swiglu(a!, b!, n, o!), [gate, up, out(n)], 1e-5);
    await parity('swigluBackward', (k, a, b, gg, da, db) => k.swigluBackward(a!, b!, gg!, n, da!, db!), [gate, up, g, out(n), out(n)], 1e-5);
  });

  test('reduce and argmax (rows and columns)', async () => {
    for (const op of ['sum', 'max', 'min'] as const) {
      await parity(`${op} rows`, (k, a, o) => k.reduce(op, a!, 3, 300, 1, o!), [randn(900), out(3)], 1e-5);
      await parity(`${op} middle`, (k, a, o) => k.reduce(op, a!, 2, 5, 7, o!), [randn(70), out(14)], 1e-5);
      // Columns longer than two chunks reduce in two passes.
      await parity(`${op} long columns`, (k, a, o) => k.reduce(op, a!, 2, 300, 7, o!), [randn(4200), out(14)], 1e-5);
    }
    await parity('argmax rows', (k, a, o) => k.argmax(a!, 4, 300, 1, o!), [randn(1200), out(4, 'i32')], 0, true);
    await parity('argmax middle', (k, a, o) => k.argmax(a!, 2, 5, 7, o!), [randn(70), out(14, 'i32')], 0, true);
  });

  test('matmul: plain, transposed, batched, strided, alpha/beta, both tile sizes', async () => {
    for (const [m, n, kk] of [[3, 5, 4], [70, 33, 19], [260, 130, 36]]) {
      for (const transA of [false, true]) for (const transB of [false, true]) {
        const p = { batch: 2, m, n, k: kk, transA, transB, strideA: m * kk, strideB: 0, strideC: m * n, alpha: 1, beta: 0 };
        await parity(`matmul ${m}x${n}x${kk} ${transA} ${transB}`, (k, a, b, c) => k.matmul(a!, b!, c!, p),
          [randn(2 * m * kk), randn(n * kk), out(2 * m * n)], 1e-5);
      }
    }
    const p = { batch: 1, m: 8, n: 12, k: 16, transA: false, transB: false, strideA: 0, strideB: 0, strideC: 0, alpha: 0.5, beta: 2 };
    await parity('matmul alpha beta', (k, a, b, c) => k.matmul(a!, b!, c!, p), [randn(128), randn(192), out(96, 'f32', randn(96))], 1e-5);
  });

  test('matmul: long k over few output tiles (split-k with a reduction pass), wide tiles, B copied transposed', async () => {
    // Grids of 9 to 64 workgroups of 128 x 128 over k >= 1024: the 64 x 64 kernel splits k (ranges of
    // whole slices, a ragged last one), then sums the partial products with alpha and beta.
    const cases = [
      { batch: 1, m: 264, n: 260, k: 1100, transA: true, transB: false, alpha: 1, beta: 0, bcast: false },
      { batch: 1, m: 264, n: 260, k: 1100, transA: false, transB: false, alpha: 1, beta: 0, bcast: false },
      { batch: 2, m: 132, n: 264, k: 1536, transA: false, transB: false, alpha: 0.5, beta: 2, bcast: true },
      // not split: B transposed with n >= 2048 takes the 128 x 256 tile (ragged n: scalar stores)
      { batch: 1, m: 36, n: 2050, k: 20, transA: false, transB: true, alpha: 1, beta: 0, bcast: false },
      { batch: 1, m: 40, n: 2048, k: 24, transA: true, transB: true, alpha: 1, beta: 0, bcast: false },
      // B transposed over >= 4096 rows: B is first copied transposed (ragged 32 x 32 transpose tiles,
      // per batch item or once when broadcast), then the plain or A-transposed kernel runs
      { batch: 2, m: 4100, n: 20, k: 40, transA: false, transB: true, alpha: 1, beta: 0, bcast: false },
      { batch: 2, m: 4096, n: 36, k: 12, transA: false, transB: true, alpha: 0.5, beta: 2, bcast: true },
      { batch: 1, m: 4104, n: 24, k: 33, transA: true, transB: true, alpha: 1, beta: 0, bcast: false },
      // copied transposed and then split (64 tiles over k = 1100)
      { batch: 2, m: 4096, n: 8, k: 1100, transA: false, transB: true, alpha: 0.5, beta: 2, bcast: false },
    ];
    for (const { batch, m, n, k: kk, transA, transB, alpha, beta, bcast } of cases) {
      const p = { batch, m, n, k: kk, transA, transB, strideA: m * kk, strideB: bcast ? 0 : n * kk, strideC: m * n, alpha, beta };
      await parity(`matmul split ${batch}x${m}x${n}x${kk} ${transA} ${transB}`, (k, a, b, c) => k.matmul(a!, b!, c!, p),
        [randn(batch * m * kk), randn((bcast ? 1 : batch) * n * kk), out(batch * m * n, 'f32', randn(batch * m * n))], 1e-5);
    }
  });

  test('softmax, log-softmax and their backward', async () => {
    for (const log of [false, true]) {
      await parity(`softmax ${log}`, (k, a, o) => k.softmax(a!, 3, 500, o!, log), [randn(1500, 3), out(1500)], 1e-5);
      const y = new Float32Array(60);
      const x = randn(60);
      cpuBackend.kernels.softmax(x, 4, 15, y as unknown as Buf, log);
      await parity(`softmaxBackward ${log}`, (k, yy, g, o) => k.softmaxBackward(yy!, g!, 4, 15, o!, log), [y, randn(60), out(60)], 1e-5);
    }
  });

  test('cross-entropy (hard with ignore index, soft)', async () => {
    await parity('ce hard', (k, x, t, l, d) => k.crossEntropy(x!, t!, 4, 300, false, -100, l!, d),
      [randn(1200, 2), ints([3, -100, 299, 0]), out(4), out(1200)], 1e-5);
    await parity('ce hard no grad', (k, x, t, l) => k.crossEntropy(x!, t!, 2, 10, false, -100, l!, null), [randn(20), ints([3, 9]), out(2)], 1e-5);
    await parity('ce soft', (k, x, t, l, d) => k.crossEntropy(x!, t!, 3, 40, true, -1, l!, d), [randn(120), randn(120), out(3), out(120)], 1e-5);
  });

  test('rms/layer norm forward and backward', async () => {
    // 300 rows take the chunked column sums of the weight and bias gradients.
    for (const [rows, n] of [[5, 300], [300, 24]]) for (const kind of ['rms', 'layer'] as const) {
      const x = randn(rows * n), w = randn(n), b = randn(n);
      const layer = kind === 'layer';
      await parity(`${kind}Norm`, (k, xx, ww, bb, o, r, mu) => k.norm(kind, xx!, ww, bb, rows, n, 1e-5, o!, r!, mu),
        [x, w, layer ? b : null, out(rows * n), out(rows), layer ? out(rows) : null], 1e-5);
      const rstd = new Float32Array(rows), mean = new Float32Array(rows), y = new Float32Array(rows * n);
      cpuBackend.kernels.norm(kind, x, w, layer ? b : null, rows, n, 1e-5, y as unknown as Buf, rstd as unknown as Buf, layer ? mean as unknown as Buf : null);
      await parity(`${kind}NormBackward`, (k, xx, ww, r, mu, g, dx, dw, db) => k.normBackward(kind, xx!, ww, r!, mu, g!, rows, n, dx!, dw, db),
        [x, w, rstd, layer ? mean : null, randn(rows * n), out(rows * n), out(n), layer ? out(n) : null], 1e-4);
      await parity(`${kind}Norm no weight`, (k, xx, o, r) => k.norm(kind, xx!, null, null, rows, n, 1e-5, o!, r!, null), [x, out(rows * n), out(rows)], 1e-5);
    }
  });

  test('rope (half and interleaved, inverse), gather, scatterAdd', async () => {
    for (const inter of [false, true]) for (const sign of [1, -1]) {
      await parity(`rope ${inter} ${sign}`, (k, x, p, o) => k.rope(x!, p!, 2, 3, 2, 8, 10000, inter, sign, o!), [randn(96), ints([0, 5, 17]), out(96)], 1e-5);
    }
    await parity('gather', (k, t, i, o) => k.gather(t!, i!, 4, 6, o!), [randn(30), ints([4, 0, 2, 4]), out(24)], 0, true);
    await parity('scatterAdd duplicates', (k, s, i, t) => k.scatterAdd(s!, i!, 4, 6, t!), [randn(24), ints([1, 3, 1, 0]), out(30, 'f32', randn(30))], 1e-6);
    // Many duplicates: each index's rows are added in row order, so the sums equal the CPU's serial loop
    // to the bit (the chained kernel up to 32768 rows, the per-column walk above).
    for (const [n, w, distinct] of [[600, 37, 23], [33000, 3, 50]]) {
      const idx = Int32Array.from({ length: n }, (_, r) => (r * 7 + (r >> 3)) % distinct);
      await parity(`scatterAdd ${n} rows`, (k, s, i, t) => k.scatterAdd(s!, i!, n, w, t!), [randn(n * w, 3), idx, out(distinct * w, 'f32', randn(distinct * w))], 0, true);
    }
  });

  test('causal conv1d forward and backward', async () => {
    const [b, l, c, kw] = [2, 7, 5, 4];
    await parity('conv1d', (k, x, w, bb, o) => k.conv1d(x!, w!, bb, b, l, c, kw, o!), [randn(b * l * c), randn(c * kw), randn(c), out(b * l * c)], 1e-5);
    await parity('conv1d no bias', (k, x, w, o) => k.conv1d(x!, w!, null, b, l, c, kw, o!), [randn(b * l * c), randn(c * kw), out(b * l * c)], 1e-5);
    await parity('conv1dBackward', (k, x, w, g, dx, dw, db) => k.conv1dBackward(x!, w!, g!, b, l, c, kw, dx!, dw!, db),
      [randn(b * l * c), randn(c * kw), randn(b * l * c), out(b * l * c), out(c * kw), out(c)], 1e-5);
  });

  test('topk, adamw (dense and row-sparse), sumSquares', async () => {
    const x = randn(5 * 40);
    x[7] = x[3]; // a tie: the earlier index must win
    await parity('topk values', (k, a, v, i) => k.topk(a!, 5, 40, 6, v!, i!), [x, out(30), out(30, 'i32')], 0, true);
    const h = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 3, gradScale: 0.7 };
    await parity('adamw dense', (k, p, g, m, v) => k.optim.adamw(p!, g!, m!, v!, null, 0, 4, h),
      [out(40, 'f32', randn(40)), randn(40), out(40, 'f32', randn(40, 0.1)), out(40, 'f32', Float32Array.from(randn(40), Math.abs))], 1e-5);
    await parity('adamw rows', (k, p, g, m, v, r) => k.optim.adamw(p!, g!, m!, v!, r, 2, 4, h),
      [out(40, 'f32', randn(40)), randn(8), out(40), out(40), ints([7, 2])], 1e-5);
    await parity('sumSquares', (k, a, o) => k.optim.sumSquares(a!, 70000, o!), [randn(70000), out(1)], 1e-5);
    await parity('sumSquares at an index', (k, a, o) => k.optim.sumSquares(a!, 300, o!, 2), [randn(300), out(4, 'f32', new Float32Array([5, 6, 0, 7]))], 1e-5);
    // Norm 5 (3^2 + 4^2) times scale 0.5 = 2.5: clipped to 1 below, untouched at maxNorm 10 or 0.
    for (const maxNorm of [1, 10, 0]) {
      await parity(`clipScale ${maxNorm}`, (k, s, o) => k.optim.clipScale(s!, 2, maxNorm, 0.5, o!), [new Float32Array([9, 16, 100]), out(2)], 1e-6);
    }
    await parity('adamw dense, device scale', (k, p, g, m, v, s) => k.optim.adamw(p!, g!, m!, v!, null, 0, 4, h, s),
      [out(40, 'f32', randn(40)), randn(40), out(40, 'f32', randn(40, 0.1)), out(40, 'f32', Float32Array.from(randn(40), Math.abs)), new Float32Array([0.3])], 1e-5);
    await parity('adamw rows, device scale', (k, p, g, m, v, r, s) => k.optim.adamw(p!, g!, m!, v!, r, 2, 4, h, s),
      [out(40, 'f32', randn(40)), randn(8), out(40), out(40), ints([7, 2]), new Float32Array([0.3])], 1e-5);
  });

  test('fused attention forward and backward (causal, GQA, cache offset, non-causal, long)', async () => {
    const cases = [
      { b: 1, l: 5, s: 5, h: 2, hkv: 2, d: 4, causal: true },
      { b: 2, l: 4, s: 4, h: 4, hkv: 2, d: 8, causal: true },
      { b: 1, l: 3, s: 6, h: 2, hkv: 1, d: 4, causal: true },
      { b: 1, l: 3, s: 5, h: 2, hkv: 2, d: 4, causal: false },
      { b: 1, l: 150, s: 150, h: 2, hkv: 1, d: 16, causal: true },
    ];
    for (const c of cases) {
      const p = { ...c, scale: 1 / Math.sqrt(c.d) };
      const qn = c.b * c.l * c.h * c.d, kn = c.b * c.s * c.hkv * c.d, ln = c.b * c.h * c.l;
      const q = randn(qn), kk = randn(kn), v = randn(kn), g = randn(qn);
      const o = new Float32Array(qn), lse = new Float32Array(ln);
      await parity(`attention ${JSON.stringify(c)}`, (k, a, b2, c2, oo, ll) => k.attention.forward(a!, b2!, c2!, oo!, ll!, p), [q, kk, v, out(qn), out(ln)], 1e-4);
      cpuBackend.attention.forward(q, kk, v, o as unknown as Buf, lse as unknown as Buf, p);
      await parity(`attentionBackward ${JSON.stringify(c)}`, (k, a, b2, c2, oo, gg, ll, dq, dk, dv) => k.attention.backward(a!, b2!, c2!, oo!, gg!, ll!, dq!, dk!, dv!, p),
        [q, kk, v, o, g, lse, out(qn), out(kn), out(kn)], 1e-4);
    }
  });
}
