// WebGPU matmul kernel variants: exactness against a float64 host product on small batched shapes
// (transposes, edges, alpha/beta), then fp32 throughput at n = 4096 and 2048 with a few entries of C
// checked against float64 sums. One JSON line per result.
// Usage: node --import tsx bench/probes/webgpu-matmul-probe.ts [--check-only] [--variants a,b] [--sizes 4096,2048] [--reps 20]
// The variants are in bench/probes/webgpu-matmul-variants.ts; the library runs quad16.
import type { Backend, Buf } from '../../src/backend/types.ts';
import { destroyWebGPU, initWebGPU, syncWebGPU, webgpuAdapterName, webgpuRuntime } from '../../src/backend/webgpu/index.ts';
import type { MatmulParams } from '../../src/backend/webgpu/kernels/matmul.ts';
import type { GpuBuf } from '../../src/backend/webgpu/pool.ts';
import { MATMUL_VARIANTS, matmulVariant, matmulVariantSharedBytes } from './webgpu-matmul-variants.ts';

const TOL = 1e-5; // relative max-abs error on small shapes (k <= 256), as in the parity test
const BIG_TOL = 1e-4; // sampled entries at k = 4096: fp32 rounding grows with sqrt(k)
const arg = (name: string, def: string) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : def; };
const checkOnly = process.argv.includes('--check-only');
const variants = arg('--variants', MATMUL_VARIANTS.join(',')).split(',');
const sizes = arg('--sizes', '4096,2048').split(',').map(Number);
const reps = Number(arg('--reps', '20'));

// A fast deterministic uniform [-1, 1) generator: the 4096 operands hold 33 M values.
let seed = 12345;
function rand(n: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; x[i] = seed / 2 ** 31 - 1; }
  return x;
}

interface Shape { batch: number; m: number; n: number; k: number; transA: boolean; transB: boolean; alpha: number; beta: number; bcastB: boolean }

/** C[b] = alpha * op(A[b]) op(B[b]) + beta * C0[b] in float64, row-major, as the kernel defines it. */
function reference(s: Shape, a: Float32Array, b: Float32Array, c0: Float32Array): Float64Array {
  const { batch, m, n, k } = s;
  const out = new Float64Array(batch * m * n);
  for (let z = 0; z < batch; z++) {
    const ao = z * m * k, bo = s.bcastB ? 0 : z * n * k, co = z * m * n;
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let t = 0; t < k; t++) {
        const av = a[ao + (s.transA ? t * m + i : i * k + t)];
        const bv = b[bo + (s.transB ? j * k + t : t * n + j)];
        acc += av * bv;
      }
      out[co + i * n + j] = s.alpha * acc + (s.beta !== 0 ? s.beta * c0[co + i * n + j] : 0);
    }
  }
  return out;
}

function relErr(got: ArrayLike<number>, ref: ArrayLike<number>, idx?: number[]): number {
  let d = 0, mx = 0;
  for (const i of idx ?? Array.from({ length: ref.length }, (_, j) => j)) {
    d = Math.max(d, Math.abs(got[i] - ref[i])); mx = Math.max(mx, Math.abs(ref[i]));
  }
  return d / Math.max(mx, 1e-30);
}

/** The variant being measured, on WebGPU buffers. */
let variant = 'quad16';
const mm = (a: Buf, b: Buf, c: Buf, p: MatmulParams) => matmulVariant(webgpuRuntime(), variant, a as GpuBuf, b as GpuBuf, c as GpuBuf, p);

async function check(be: Backend, s: Shape): Promise<number> {
  const a = rand(s.batch * s.m * s.k), b = rand((s.bcastB ? 1 : s.batch) * s.n * s.k), c0 = rand(s.batch * s.m * s.n);
  const [ab, bb, cb] = [a, b, c0].map((x) => be.upload(x.slice()));
  mm(ab, bb, cb, { batch: s.batch, m: s.m, n: s.n, k: s.k, transA: s.transA, transB: s.transB,
    strideA: s.m * s.k, strideB: s.bcastB ? 0 : s.n * s.k, strideC: s.m * s.n, alpha: s.alpha, beta: s.beta });
  const got = (await be.read(cb)).slice() as Float32Array;
  for (const x of [ab, bb, cb]) be.free(x as Buf);
  return relErr(got, reference(s, a, b, c0));
}

// Batches are chosen so every case takes the large-tile path (m * n * batch >= 65536) where variants apply.
const shapes: Shape[] = [];
const tt = [[false, false], [true, false], [false, true], [true, true]] as const;
for (const [transA, transB] of tt) {
  shapes.push({ batch: 16, m: 64, n: 64, k: 64, transA, transB, alpha: 1, beta: 0, bcastB: false });
  shapes.push({ batch: 8, m: 130, n: 70, k: 33, transA, transB, alpha: 1, beta: 0, bcastB: true });
  shapes.push({ batch: 4, m: 132, n: 196, k: 36, transA, transB, alpha: 0.5, beta: 2, bcastB: true });
  shapes.push({ batch: 1, m: 256, n: 256, k: 256, transA, transB, alpha: 1, beta: 0, bcastB: false });
}
shapes.push({ batch: 2, m: 260, n: 300, k: 20, transA: false, transB: false, alpha: 1, beta: 0, bcastB: false });

const gpu = await initWebGPU();
const limit = webgpuRuntime().maxWorkgroupStorage;
console.log(`# ${webgpuAdapterName()}; workgroup storage limit ${limit} bytes`);
let bad = 0;

const big = checkOnly ? [] : sizes.map((n) => {
  const a = rand(n * n), b = rand(n * n);
  return { n, a, b, ab: gpu.upload(a), bb: gpu.upload(b), cb: gpu.upload(new Float32Array(n * n)) };
});

for (const v of variants) {
  variant = v;
  const fallback = matmulVariantSharedBytes(v) > limit;
  for (const s of shapes) {
    const e = await check(gpu, s);
    const ok = e <= TOL;
    if (!ok) bad++;
    console.log(JSON.stringify({ variant: v, fallback, shape: `${s.batch}x${s.m}x${s.n}x${s.k} tA=${s.transA} tB=${s.transB} a=${s.alpha} b=${s.beta}`, rel_err: e, ok }));
  }
  for (const { n, a, b, ab, bb, cb } of big) {
    const p = { batch: 1, m: n, n, k: n, transA: false, transB: false, strideA: 0, strideB: 0, strideC: 0, alpha: 1, beta: 0 };
    for (let r = 0; r < 3; r++) mm(ab, bb, cb, p);
    await syncWebGPU();
    const t = performance.now();
    for (let r = 0; r < reps; r++) mm(ab, bb, cb, p);
    await syncWebGPU();
    const ms = (performance.now() - t) / reps;
    const c = (await gpu.read(cb)) as Float32Array;
    // Sample entries including the last row and column (tile edges), summed in float64.
    const idx: number[] = [], ref: number[] = [];
    for (const i of [0, 1, 127, 128, n / 2 + 3, n - 1]) for (const j of [0, 5, 129, n - 2, n - 1]) {
      let acc = 0;
      for (let t = 0; t < n; t++) acc += a[i * n + t] * b[t * n + j];
      idx.push(i * n + j); ref[i * n + j] = acc;
    }
    const e = relErr(c, ref, idx);
    if (!(e <= BIG_TOL)) bad++;
    console.log(JSON.stringify({ variant: v, fallback, n, ms: +ms.toFixed(3), tflops: +((2 * n ** 3) / ms / 1e9).toFixed(2), rel_err: e }));
  }
}
for (const x of big) for (const buf of [x.ab, x.bb, x.cb]) gpu.free(buf as Buf);
await destroyWebGPU();
if (bad) console.error(`${bad} check(s) above tolerance`);
process.exit(bad ? 1 : 0);
