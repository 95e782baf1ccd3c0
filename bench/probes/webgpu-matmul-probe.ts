// WebGPU matmul kernel variants: exactness against a float64 host product on small batched shapes
// (transposes, edges, alpha/beta), then fp32 throughput on the timed shapes (squares and the 125M
// model's forward and backward products) with 30 entries of C, tile edges included, checked against
// float64 sums; PyTorch fp32 (TF32 off) and bf16 on the same shapes in the same run. One JSON line
// per result; --out FILE also writes them all as one JSON document.
// Usage: node --import tsx bench/probes/webgpu-matmul-probe.ts [--check-only] [--variants a,b]
//   [--shapes MxNxK:nn,...] [--reps 4000] [--budget-ms 120] [--no-peer] [--dawn TOGGLE] [--out FILE]
// A shape's suffix gives the transposes (nn, nt, tn, tt: op(A), op(B)). The variants are in
// bench/probes/webgpu-matmul-variants.ts; 'prod' is the library's choice for each shape.
import { writeFileSync } from 'node:fs';
import type { Backend, Buf } from '../../src/backend/types.ts';
import { destroyWebGPU, initWebGPU, syncWebGPU, webgpuAdapterName, webgpuRuntime } from '../../src/backend/webgpu/index.ts';
import type { MatmulParams } from '../../src/backend/webgpu/kernels/matmul.ts';
import type { GpuBuf } from '../../src/backend/webgpu/pool.ts';
import { Uniform } from '../../src/backend/webgpu/runtime.ts';
import { timeWebGPU, torchGpuPeer } from '../matmul.ts';
import { MATMUL_VARIANTS, matmulVariant, matmulVariantSharedBytes } from './webgpu-matmul-variants.ts';

const TOL = 1e-5; // relative max-abs error on small shapes (k <= 256), as in the parity test
const BIG_TOL = 1e-4; // sampled entries at k = 4096: fp32 rounding grows with sqrt(k)
const arg = (name: string, def: string) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : def; };
const checkOnly = process.argv.includes('--check-only');
const variants = arg('--variants', MATMUL_VARIANTS.join(',')).split(',');
const reps = Number(arg('--reps', '4000'));
const budgetMs = Number(arg('--budget-ms', '120'));
const outFile = arg('--out', '');
const dawn = arg('--dawn', '');
const noPeer = process.argv.includes('--no-peer');
// The 125M training model (d 768, FFN 2048, vocab 32000, 8192 tokens): a linear y = x W^T is nt forward,
// its input gradient g W is nn, its weight gradient g^T x is tn over the 8192 tokens.
const MODEL = [[8192, 768, 768], [8192, 2048, 768], [8192, 768, 2048], [8192, 32000, 768]];
const DEFAULT_SHAPES = ['4096x4096x4096:nn', '2048x2048x2048:nn',
  ...MODEL.map(([t, o, i]) => `${t}x${o}x${i}:nt`), ...MODEL.map(([t, o, i]) => `${t}x${i}x${o}:nn`), ...MODEL.map(([t, o, i]) => `${o}x${i}x${t}:tn`)];
interface Timed { m: number; n: number; k: number; transA: boolean; transB: boolean }
const timedShapes: Timed[] = arg('--shapes', DEFAULT_SHAPES.join(',')).split(',').map((x) => {
  const mt = /^(\d+)x(\d+)x(\d+)(?::([nt])([nt]))?$/.exec(x);
  if (!mt) { console.error(`--shapes: '${x}' is not MxNxK or MxNxK:nn|nt|tn|tt`); process.exit(2); }
  return { m: +mt[1], n: +mt[2], k: +mt[3], transA: mt[4] === 't', transB: mt[5] === 't' };
});

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
// Long k over a small grid: the split-k variants split these (k ranges of 512 and a ragged last one).
shapes.push({ batch: 2, m: 264, n: 132, k: 1100, transA: false, transB: true, alpha: 0.5, beta: 2, bcastB: true });
shapes.push({ batch: 1, m: 264, n: 260, k: 1100, transA: true, transB: false, alpha: 1, beta: 0, bcastB: false });

const gpu = await initWebGPU(dawn ? { dawnOptions: [dawn] } : {});
const rt = webgpuRuntime();
const limit = rt.maxWorkgroupStorage;
const adapter = webgpuAdapterName();
console.log(`# ${adapter}; workgroup storage limit ${limit} bytes${dawn ? `; dawn ${dawn}` : ''}`);
const results: Record<string, unknown>[] = [];
const emit = (r: Record<string, unknown>) => { results.push(r); console.log(JSON.stringify(r)); };
let bad = 0;

for (const v of variants) {
  variant = v;
  const fallback = matmulVariantSharedBytes(v) > limit;
  for (const s of shapes) {
    const e = await check(gpu, s);
    const ok = e <= TOL;
    if (!ok) { bad++; emit({ variant: v, fallback, shape: `${s.batch}x${s.m}x${s.n}x${s.k} tA=${s.transA} tB=${s.transB} a=${s.alpha} b=${s.beta}`, rel_err: e, ok }); }
  }
  console.error(`checked ${v} on ${shapes.length} small shapes`);
}

// Operands of the timed shapes are filled on the GPU from a hash of the element index, which the host
// recomputes for the reference sums (values j / 2^23 - 1, exact in fp32).
function hashVal(i: number, seed: number): number {
  let h = (i ^ Math.imul(seed, 0x9e3779b9)) >>> 0;
  h = Math.imul(h, 0x85ebca6b) >>> 0; h = (h ^ (h >>> 13)) >>> 0;
  h = Math.imul(h, 0xc2b2ae35) >>> 0; h = (h ^ (h >>> 16)) >>> 0;
  return (h >>> 8) / 8388608 - 1;
}
function hashFill(buf: GpuBuf, n: number, seed: number): void {
  rt.dispatch({ key: 'probe:hashFill', bindings: [['X', 'f32', 'w']], uniform: 'n: u32, seed: u32', code: () => `
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid.x;
  if (i >= p.n) { return; }
  var h = i ^ (p.seed * 0x9e3779b9u);
  h = h * 0x85ebca6bu; h = h ^ (h >> 13u);
  h = h * 0xc2b2ae35u; h = h ^ (h >> 16u);
  X[i] = f32(h >> 8u) / 8388608.0 - 1.0;
}` }, [buf], new Uniform().u(n, seed), rt.grid(Math.ceil(n / 256)));
}
function gather(c: GpuBuf, idx: GpuBuf, out: GpuBuf, n: number): void {
  rt.dispatch({ key: 'probe:gather', bindings: [['C', 'f32', 'r'], ['I', 'i32', 'r'], ['O', 'f32', 'w']], uniform: 'n: u32', code: () => `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x < p.n) { O[g.x] = C[u32(I[g.x])]; }
}` }, [c, idx, out], new Uniform().u(n), [Math.ceil(n / 64)]);
}

/** Milliseconds per call by bench/matmul.ts's batch differences, batches of up to `reps` calls and about budgetMs. */
const timeBest = (fn: () => void): Promise<{ ms: number; reps: number }> => timeWebGPU(fn, reps, budgetMs);

const SEED_A = 11, SEED_B = 23;
// The GPU's clocks rise under load: about 1 s of products before the first timing (a first H200 run
// without it timed the first two variants at 4096 5x slow).
if (!checkOnly) {
  const w = 2048, wa = rt.alloc(w * w, 'f32'), wb = rt.alloc(w * w, 'f32'), wc = rt.alloc(w * w, 'f32');
  hashFill(wa, w * w, 1); hashFill(wb, w * w, 2);
  const wp: MatmulParams = { batch: 1, m: w, n: w, k: w, transA: false, transB: false, strideA: 0, strideB: 0, strideC: 0, alpha: 1, beta: 0 };
  const t0 = performance.now();
  while (performance.now() - t0 < 1000) { for (let i = 0; i < 20; i++) mm(wa, wb, wc, wp); await syncWebGPU(); }
  for (const x of [wa, wb, wc]) gpu.free(x as Buf);
}
for (const sh of checkOnly ? [] : timedShapes) {
  const { m, n, k, transA, transB } = sh;
  const label = `${m}x${n}x${k}:${transA ? 't' : 'n'}${transB ? 't' : 'n'}`;
  const ab = rt.alloc(m * k, 'f32'), bb = rt.alloc(k * n, 'f32'), cb = rt.alloc(m * n, 'f32');
  hashFill(ab, m * k, SEED_A); hashFill(bb, k * n, SEED_B);
  const inside = (xs: number[], d: number) => [...new Set(xs.filter((x) => x >= 0 && x < d))];
  const rows = inside([0, 1, 127, 128, (m >> 1) + 3, m - 1], m), cols = inside([0, 5, 129, n - 2, n - 1], n);
  const idx: number[] = [], ref: number[] = [];
  for (const i of rows) for (const j of cols) {
    let acc = 0;
    for (let t = 0; t < k; t++) acc += hashVal(transA ? t * m + i : i * k + t, SEED_A) * hashVal(transB ? j * k + t : t * n + j, SEED_B);
    idx.push(i * n + j); ref.push(acc);
  }
  const ib = gpu.upload(Int32Array.from(idx)) as GpuBuf, ob = rt.alloc(idx.length, 'f32');
  const p: MatmulParams = { batch: 1, m, n, k, transA, transB, strideA: 0, strideB: 0, strideC: 0, alpha: 1, beta: 0 };
  for (const v of variants) {
    variant = v;
    const { ms, reps: r } = await timeBest(() => mm(ab, bb, cb, p));
    gather(cb, ib, ob, idx.length);
    const got = (await gpu.read(ob)) as Float32Array;
    const e = relErr(got, ref);
    if (!(e <= BIG_TOL)) bad++;
    emit({ variant: v, shape: label, m, n, k, transA, transB, ms: +ms.toFixed(4), reps: r, tflops: +((2 * m * n * k) / ms / 1e9).toFixed(2), rel_err: e });
  }
  for (const x of [ab, bb, cb, ib, ob]) gpu.free(x as Buf);
  await syncWebGPU();
  rt.pool.trim();
  console.error(`timed ${label}`);
}
await destroyWebGPU();
let peer: Record<string, unknown> = {};
if (!checkOnly && !noPeer) {
  peer = torchGpuPeer('matmul', { shapes: timedShapes.map((x) => [x.m, x.n, x.k, x.transA, x.transB]), reps: 20, target_ms: 150 }, { 'peer-budget-s': '60' });
  console.log(JSON.stringify(peer));
}
if (outFile) writeFileSync(outFile, JSON.stringify({ adapter, dawn, results, peer }, null, 1));
if (bad) console.error(`${bad} check(s) above tolerance`);
process.exit(bad ? 1 : 0);
