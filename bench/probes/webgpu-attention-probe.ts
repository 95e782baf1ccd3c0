// WebGPU fused attention against the CPU kernel for head dimensions the parity test does not cover
// (64, 128 and ones not divisible by 4, which take the per-component load path), forward and backward,
// then an optional timing of forward + backward on one larger shape.
// Usage: node --import tsx bench/probes/webgpu-attention-probe.ts [--time L,H,D]   (exits 1 on a mismatch)
import { cpuBackend } from '../../src/backend/cpu/index.ts';
import type { Backend, Buf } from '../../src/backend/types.ts';
import { initWebGPU, syncWebGPU, webgpuAdapterName } from '../../src/backend/webgpu/index.ts';
import { Rng } from '../../src/tensor/index.ts';

const TOL = 1e-4; // relative max-abs error, same as the parity test
const rng = new Rng(7);
const randn = (n: number) => Float32Array.from({ length: n }, () => rng.normal());

interface Case { b: number; l: number; s: number; h: number; hkv: number; d: number; causal: boolean }

function relErr(a: Float32Array, b: Float32Array): number {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); m = Math.max(m, Math.abs(b[i])); }
  return d / Math.max(m, 1e-30);
}

async function runOn(be: Backend, c: Case, ins: Float32Array[]): Promise<Float32Array[]> {
  const p = { ...c, scale: 1 / Math.sqrt(c.d) };
  const [q, k, v, g] = ins.map((x) => be.upload(x.slice()));
  const qn = ins[0].length, kn = ins[1].length, ln = c.b * c.h * c.l;
  const alloc = (n: number) => be.upload(new Float32Array(n));
  const o = alloc(qn), lse = alloc(ln), dq = alloc(qn), dk = alloc(kn), dv = alloc(kn);
  be.attention.forward(q, k, v, o, lse, p);
  be.attention.backward(q, k, v, o, g, lse, dq, dk, dv, p);
  const outs: Float32Array[] = [];
  for (const x of [o, lse, dq, dk, dv]) outs.push((await be.read(x)).slice() as Float32Array);
  for (const x of [q, k, v, g, o, lse, dq, dk, dv]) be.free(x as Buf);
  return outs;
}

const gpu = await initWebGPU();
console.log(`# ${webgpuAdapterName()}`);
const cases: Case[] = [
  { b: 1, l: 70, s: 70, h: 2, hkv: 1, d: 64, causal: true },
  { b: 1, l: 20, s: 90, h: 2, hkv: 2, d: 64, causal: true },
  { b: 2, l: 33, s: 33, h: 4, hkv: 2, d: 128, causal: true },
  { b: 1, l: 40, s: 75, h: 2, hkv: 1, d: 128, causal: false },
  { b: 1, l: 67, s: 67, h: 2, hkv: 1, d: 20, causal: true },
  { b: 1, l: 9, s: 30, h: 3, hkv: 1, d: 18, causal: true },
  { b: 1, l: 12, s: 17, h: 2, hkv: 2, d: 7, causal: false },
];
let bad = 0;
for (const c of cases) {
  const ins = [randn(c.b * c.l * c.h * c.d), randn(c.b * c.s * c.hkv * c.d), randn(c.b * c.s * c.hkv * c.d), randn(c.b * c.l * c.h * c.d)];
  const ref = await runOn(cpuBackend, c, ins);
  const got = await runOn(gpu, c, ins);
  const errs = ['o', 'lse', 'dq', 'dk', 'dv'].map((n, i) => [n, relErr(got[i], ref[i])] as const);
  const ok = errs.every(([, e]) => e <= TOL);
  if (!ok) bad++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${JSON.stringify(c)} ${errs.map(([n, e]) => `${n}=${e.toExponential(1)}`).join(' ')}`);
}

const ti = process.argv.indexOf('--time');
if (ti > 0) {
  const [L, H, D] = process.argv[ti + 1].split(',').map(Number);
  const c: Case = { b: 1, l: L, s: L, h: H, hkv: H, d: D, causal: true };
  const p = { ...c, scale: 1 / Math.sqrt(D) };
  const n = L * H * D, up = () => gpu.upload(randn(n));
  const [q, k, v, g, o, dq, dk, dv] = [up(), up(), up(), up(), up(), up(), up(), up()];
  const lse = gpu.upload(new Float32Array(H * L));
  const step = () => {
    gpu.attention.forward(q, k, v, o, lse, p);
    gpu.attention.backward(q, k, v, o, g, lse, dq, dk, dv, p);
  };
  step();
  await syncWebGPU();
  let best = Infinity;
  for (let r = 0; r < 5; r++) {
    const t = performance.now();
    step();
    await syncWebGPU();
    best = Math.min(best, performance.now() - t);
  }
  // Conventional count: forward 4 L^2 D H, backward 2.5x that, halved by the causal mask.
  const flops = 7 * L * L * D * H;
  console.log(`fwd+bwd L=${L} H=${H} D=${D} causal: ${best.toFixed(2)} ms, ${(flops / best / 1e9).toFixed(2)} TFLOP/s`);
}
process.exit(bad ? 1 : 0);
