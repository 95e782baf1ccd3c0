// How long waiting for the GPU takes beyond the work waited for: onSubmittedWorkDone on an idle queue,
// after one tiny dispatch, a 4-byte readback (mapAsync), and N back-to-back 1 ms products waited for
// once against each waited for alone. Milliseconds: median and max over the repeats.
// Usage: node --import tsx bench/probes/webgpu-sync-latency.ts [--reps 20] [--n 2048]
import { binary } from '../../src/backend/webgpu/kernels/elementwise.ts';
import { matmul } from '../../src/backend/webgpu/kernels/matmul.ts';
import { destroyWebGPU, initWebGPU, webgpuAdapterName, webgpuRuntime } from '../../src/backend/webgpu/index.ts';
import type { GpuBuf } from '../../src/backend/webgpu/pool.ts';

const arg = (name: string, def: string) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : def; };
const reps = Number(arg('--reps', '20'));
const gpu = await initWebGPU();
const rt = webgpuRuntime();
console.log(`# ${webgpuAdapterName()}`);
const stats = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return { median: +s[s.length >> 1].toFixed(3), max: +s[s.length - 1].toFixed(3) }; };
async function series(name: string, body: () => Promise<void>): Promise<void> {
  await body();
  const ms: number[] = [];
  for (let i = 0; i < reps; i++) { const t = performance.now(); await body(); ms.push(performance.now() - t); }
  console.log(JSON.stringify({ probe: name, reps, ...stats(ms) }));
}
const small = gpu.upload(new Float32Array(1024)) as GpuBuf, small2 = gpu.upload(new Float32Array(1024)) as GpuBuf;
const flat = (n: number) => ({ shape: [n], strides: [1], offset: 0 });
await series('onSubmittedWorkDone, idle queue', () => rt.device.queue.onSubmittedWorkDone());
await series('one tiny dispatch + onSubmittedWorkDone', async () => { binary(rt, 'add', small, flat(1024), small, flat(1024), small2); rt.flush(); await rt.device.queue.onSubmittedWorkDone(); });
await series('4-byte readback (mapAsync)', async () => { await gpu.read(small); });
// A 2048 x 2048 x 2048 product is about 0.5 ms on an H200.
const n = Number(arg('--n', '2048'));
const a = gpu.upload(Float32Array.from({ length: n * n }, (_, i) => (i % 7) - 3)) as GpuBuf;
const c = gpu.upload(new Float32Array(n * n)) as GpuBuf;
const q = { batch: 1, m: n, n, k: n, transA: false, transB: false, alpha: 1, beta: 0, strideA: 0, strideB: 0, strideC: 0 };
for (const k of [1, 10, 40]) {
  await series(`${k} products, one wait`, async () => { for (let i = 0; i < k; i++) matmul(rt, a, a, c, q); rt.flush(); await rt.device.queue.onSubmittedWorkDone(); });
}
destroyWebGPU();
