// Memory-bound WebGPU kernels on large tensors: GB/s of the library's flat elementwise product (a
// tensor times a scalar, as the loss scale multiplies the logits' gradient), its same-shape add, and its
// fused cross-entropy with gradient, beside a buffer copy and formulations of the scalar product (2, 4
// or 8 elements per thread one grid apart; a fixed 1-D grid of 4224 groups looping over the tensor), and
// the fused SwiGLU forward (2 reads, 1 write) and backward (3 reads, 2 writes).
// The library's flat kernel has taken 4 per thread since the NOTES figures (which show its old 1 per thread).
// Sizes: the 125M training step's activations (8192 x 768) and logits (8192 x 32000) and one between
// (8192 x 2048, the FFN's hidden activations, is 16777216).
// Every variant's output is compared with the library's.
// Usage: node --import tsx bench/probes/webgpu-bandwidth-probe.ts [--sizes 6291456,67108864,262144000] [--target-ms 150]
import { binary, swiglu, swigluBackward } from '../../src/backend/webgpu/kernels/elementwise.ts';
import { crossEntropy } from '../../src/backend/webgpu/kernels/rows.ts';
import { destroyWebGPU, initWebGPU, webgpuAdapterName, webgpuRuntime } from '../../src/backend/webgpu/index.ts';
import type { GpuBuf } from '../../src/backend/webgpu/pool.ts';
import { Uniform } from '../../src/backend/webgpu/runtime.ts';
import { timeWebGPU } from '../matmul.ts';

const arg = (name: string, def: string) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : def; };
const sizes = arg('--sizes', '6291456,67108864,262144000').split(',').map(Number);
const targetMs = Number(arg('--target-ms', '150'));
const VOCAB = 32000;

const gpu = await initWebGPU();
const rt = webgpuRuntime();
console.log(`# ${webgpuAdapterName()}`);
const flat = (n: number) => ({ shape: [n], strides: [1], offset: 0 });
const scalarView = (n: number) => ({ shape: [n], strides: [0], offset: 0 });

/** O = A * B[0] with `per` elements per thread at i + k * threads (grid-stride), or over a fixed grid. */
function mulVariant(a: GpuBuf, s: GpuBuf, out: GpuBuf, n: number, per: number, fixedGroups = 0): void {
  const threads = fixedGroups ? fixedGroups * 256 : Math.ceil(n / per);
  const groupsTotal = Math.ceil(threads / 256);
  const grid = rt.grid(groupsTotal);
  const K = [...Array(per).keys()];
  rt.dispatch({
    key: `probe:mul:${per}:${fixedGroups > 0}`, bindings: [['A', 'f32', 'r'], ['B', 'f32', 'r'], ['O', 'f32', 'w']], uniform: 'n: u32', code: () => `
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid.x;
  let T = nwg.x * nwg.y * 256u;
  let s = B[0];
${fixedGroups ? `  for (var e = i; e < p.n; e += T) { O[e] = A[e] * s; }` : `${K.map((k) => `  let e${k} = i + ${k}u * T;\n  var a${k} = 0.0;\n  if (e${k} < p.n) { a${k} = A[e${k}]; }`).join('\n')}
${K.map((k) => `  if (e${k} < p.n) { O[e${k}] = a${k} * s; }`).join('\n')}`}
}` }, [a, s, out], new Uniform().u(n), grid);
}

async function maxDiff(x: GpuBuf, y: GpuBuf): Promise<number> {
  const [u, v] = [await gpu.read(x), await gpu.read(y)] as Float32Array[];
  let d = 0;
  for (let i = 0; i < u.length; i += 997) d = Math.max(d, Math.abs(u[i] - v[i]));
  return d;
}

const rows: Record<string, unknown>[] = [];
for (const n of sizes) {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = ((i * 2654435761) % 1000) / 500 - 1;
  const a = gpu.upload(x) as GpuBuf, b = gpu.upload(x) as GpuBuf, s = gpu.upload(new Float32Array([0.5])) as GpuBuf;
  const o1 = gpu.upload(new Float32Array(n)) as GpuBuf, o2 = gpu.upload(new Float32Array(n)) as GpuBuf;
  const gb = (bytes: number, ms: number) => +(bytes / ms / 1e6).toFixed(1);
  const time = async (name: string, bytes: number, fn: () => void, check?: () => Promise<number>) => {
    const t = await timeWebGPU(fn, 4000, targetMs);
    const row = { n, kernel: name, ms: +t.ms.toFixed(4), GBps: gb(bytes, t.ms), unsteady: t.unsteady, max_diff: check ? await check() : undefined };
    rows.push(row);
    console.log(JSON.stringify(row));
  };
  await time('copyBufferToBuffer', 8 * n, () => rt.copyBytes(a.buffer, 0, o1.buffer, 0, 4 * n));
  await time('library mul by scalar (flat kernel)', 8 * n, () => binary(rt, 'mul', a, flat(n), s, scalarView(n), o1));
  await time('library add (flat kernel)', 12 * n, () => binary(rt, 'add', a, flat(n), b, flat(n), o2));
  binary(rt, 'mul', a, flat(n), s, scalarView(n), o1);
  for (const per of [2, 4, 8]) await time(`mul by scalar, ${per} per thread`, 8 * n, () => mulVariant(a, s, o2, n, per), () => maxDiff(o1, o2));
  await time('mul by scalar, 4224 groups looping', 8 * n, () => mulVariant(a, s, o2, n, 1, 4224), () => maxDiff(o1, o2));
  await time('library swiglu', 12 * n, () => swiglu(rt, a, b, n, o1));
  await time('library swigluBackward', 20 * n, () => swigluBackward(rt, a, b, b, n, o1, o2));
  if (n % VOCAB === 0 || n % 768 === 0) {
    const width = n % VOCAB === 0 ? VOCAB : 768, r = n / width;
    const tgt = gpu.upload(Int32Array.from({ length: r }, (_, i) => (i * 7919) % width)) as GpuBuf;
    const loss = gpu.upload(new Float32Array(r)) as GpuBuf;
    // Reads the row three times and writes the gradient once.
    await time(`library crossEntropy with grad, ${r} x ${width}`, 16 * n, () => crossEntropy(rt, a, tgt, r, width, false, -100, loss, o1));
    for (const t of [tgt, loss]) gpu.free(t);
  }
  for (const t of [a, b, s, o1, o2]) gpu.free(t);
}
console.log(JSON.stringify({ adapter: webgpuAdapterName(), rows }));
await destroyWebGPU();
