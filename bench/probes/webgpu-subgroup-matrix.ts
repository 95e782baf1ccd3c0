// Can Dawn's int8 subgroup-matrix path (tensor cores through `chromium-experimental-subgroup-matrix`)
// run here, and how fast? A staged probe; every stage runs in a child process of its own, so an abort
// inside Dawn ends that stage only, with its stdout and stderr kept:
//   configs  adapter features, subgroup sizes, the subgroup-matrix configurations the adapter reports
//   compile  each kernel of src/backend/webgpu/kernels/subgroup-int8.ts in each builtin spelling
//            (majorness as a template argument, the current form, and as a bool argument, the older)
//   tile     one 16 x 16 x 32 tile against the CPU's integer product (every entry)
//   diagnose one-tile variants (row and K offsets, strides, uniform-valued arguments, accumulation,
//            workgroup memory, store stride), each against the CPU, wrong entries matched to dot products
//   gemm     the tiled kernels (direct from storage; staged through workgroup memory with int8 or
//            sign-bit weights) on small odd shapes checked entry by entry, then timed at 4096^3 and at
//            fbi-1.3b prefill shapes (512 tokens), entries sampled across tile edges checked exactly
// then PyTorch on the same GPU and shapes: torch._int_mm (int8 -> int32) and bf16 matmul.
// Usage: node --import tsx bench/probes/webgpu-subgroup-matrix.ts [--out FILE.json] [--stages configs,compile,tile,gemm,torch]
//   [--shapes 4096x4096x4096,512x2048x2048,...] [--reps 20] [--stage-timeout-s 60]
// Prints one JSON document (also written to --out). Exit 0 even when a stage fails: the failure is the finding.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  directKernel, header, SHARED_DEFAULT, sharedBlock, sharedKernel, type Spelling, tileKernel,
} from '../../src/backend/webgpu/kernels/subgroup-int8.ts';

const FEATURE = 'chromium-experimental-subgroup-matrix';
const argv = process.argv.slice(2);
const arg = (name: string, def: string) => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : def; };
const DEFAULT_SHAPES = '4096x4096x4096,512x2048x2048,512x5632x2048,512x2048x5632';

type Line = Record<string, unknown>;
const emit = (x: Line) => process.stdout.write(JSON.stringify(x) + '\n');

// ---------------------------------------------------------------- child side (one stage)
interface Gpu { device: GPUDevice; adapter: GPUAdapter; sg: number }

async function openGpu(): Promise<Gpu> {
  const mod = (await import('webgpu')) as unknown as { create: (o: string[]) => GPU; globals: object };
  for (const [k, v] of Object.entries(mod.globals)) if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  const gpu = mod.create(['enable-dawn-features=allow_unsafe_apis']);
  (globalThis as { __dawn?: GPU }).__dawn = gpu; // keep the instance alive with the device
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('no WebGPU adapter');
  const features = [FEATURE, 'subgroups'].filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  const limits: Record<string, number> = {};
  for (const k of ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX']) {
    limits[k] = (adapter.limits as unknown as Record<string, number>)[k];
  }
  const device = await adapter.requestDevice({ requiredFeatures: features, requiredLimits: limits });
  device.addEventListener('uncapturederror', (e) => emit({ uncaptured_error: String((e as GPUUncapturedErrorEvent).error.message) }));
  const info = adapter.info as unknown as Record<string, unknown>;
  return { device, adapter, sg: Number(info.subgroupMaxSize ?? 32) };
}

async function compile(g: Gpu, code: string): Promise<{ pipeline: GPUComputePipeline | null; messages: string[]; error: string | null }> {
  g.device.pushErrorScope('validation');
  const module = g.device.createShaderModule({ code });
  const info = await module.getCompilationInfo();
  const messages = info.messages.map((m) => `${m.type} ${m.lineNum}:${m.linePos} ${m.message}`);
  let pipeline: GPUComputePipeline | null = null, error: string | null = null;
  try {
    pipeline = await g.device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  } catch (e) {
    error = (e as Error).message;
  }
  const scoped = await g.device.popErrorScope();
  if (scoped) error = (error ? error + '; ' : '') + scoped.message;
  return { pipeline: error ? null : pipeline, messages, error };
}

function storage(g: Gpu, data: Int32Array<ArrayBuffer>, extraUsage = 0): GPUBuffer {
  const b = g.device.createBuffer({ size: Math.max(16, data.byteLength), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC | extraUsage });
  g.device.queue.writeBuffer(b, 0, data);
  return b;
}

async function readI32(g: Gpu, b: GPUBuffer, n: number): Promise<Int32Array> {
  const rb = g.device.createBuffer({ size: n * 4, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
  const enc = g.device.createCommandEncoder();
  enc.copyBufferToBuffer(b, 0, rb, 0, n * 4);
  g.device.queue.submit([enc.finish()]);
  await rb.mapAsync(GPUMapMode.READ);
  const out = new Int32Array(rb.getMappedRange().slice(0));
  rb.unmap();
  rb.destroy();
  return out;
}

function dispatch(g: Gpu, pipe: GPUComputePipeline, bufs: GPUBuffer[], groups: [number, number], times = 1): void {
  const bind = g.device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries: bufs.map((buffer, binding) => ({ binding, resource: { buffer } })) });
  const enc = g.device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipe);
  pass.setBindGroup(0, bind);
  for (let t = 0; t < times; t++) pass.dispatchWorkgroups(groups[0], groups[1]);
  pass.end();
  g.device.queue.submit([enc.finish()]);
}

// xorshift32 int8 values in [-127, 127] and raw words.
let seed = 2463534242;
function next(): number { seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0; return seed; }
function randInt8(n: number): Int8Array { const a = new Int8Array(n); for (let i = 0; i < n; i++) a[i] = (next() % 255) - 127; return a; }
function randWords(n: number): Int32Array<ArrayBuffer> { const a = new Int32Array(n); for (let i = 0; i < n; i++) a[i] = next() | 0; return a; }
/** int8 rows [rows, k] packed 4 per word, rows padded with zeros to `kw` words. */
function packRows(v: Int8Array, rows: number, k: number, kw: number): Int32Array<ArrayBuffer> {
  const bytes = new Int8Array(rows * kw * 4);
  for (let r = 0; r < rows; r++) bytes.set(v.subarray(r * k, (r + 1) * k), r * kw * 4);
  return new Int32Array(bytes.buffer);
}
/** Weight element (n, k): an int8 value, or +-1 from sign bits [N, bw] words. */
const weightAt = (bits: boolean, b8: Int8Array, bw: Int32Array, wpr: number, k: number) => (n: number, j: number) =>
  bits ? (((bw[n * wpr + (j >> 5)] >>> (j & 31)) & 1) ? 1 : -1) : b8[n * k + j];

function exactAt(a: Int8Array, w: (n: number, j: number) => number, k: number, i: number, n: number): number {
  let s = 0;
  for (let j = 0; j < k; j++) s += a[i * k + j] * w(n, j);
  return s;
}

type Variant = 'direct' | 'direct-baked' | 'shared-int8' | 'shared-bits';
const VARIANTS: Variant[] = ['direct', 'direct-baked', 'shared-int8', 'shared-bits'];
const DIRECT = { tm: 2, tn: 4 };

function variantCode(v: Variant, sp: Spelling, sg: number, K = 32, N = 64): string {
  if (v === 'direct-baked') return directKernel(sp, sg, DIRECT, { K, Np: Math.ceil(N / (16 * DIRECT.tn)) * 16 * DIRECT.tn });
  return v === 'direct' ? directKernel(sp, sg, DIRECT) : sharedKernel(sp, sg, SHARED_DEFAULT, v === 'shared-bits');
}
const isDirect = (v: Variant) => v === 'direct' || v === 'direct-baked';

/** Runs variant v on M x N x K; returns the C buffer, its row stride and a runner for timing. */
function setup(g: Gpu, pipe: GPUComputePipeline, v: Variant, M: number, N: number, K: number, a: Int8Array, b8: Int8Array, bw: Int32Array<ArrayBuffer>) {
  const bits = v === 'shared-bits';
  const kw = Math.ceil(K / 4), wpr = Math.ceil(K / 32);
  let bm: number, bn: number;
  if (isDirect(v)) { bm = 16 * DIRECT.tm; bn = 16 * DIRECT.tn; } else ({ bm, bn } = sharedBlock(SHARED_DEFAULT));
  const mp = Math.ceil(M / bm) * bm, np = Math.ceil(N / bn) * bn;
  const A = storage(g, packRows(a, M, K, kw));
  const B = bits ? storage(g, bw) : storage(g, packRows(b8, N, K, kw));
  const C = storage(g, new Int32Array(mp * np));
  const u = new Uint32Array(8);
  if (isDirect(v)) u.set([M, N, K, np]); else u.set([M, N, kw, np, bits ? wpr : kw]);
  const U = g.device.createBuffer({ size: 32, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  g.device.queue.writeBuffer(U, 0, u);
  const groups: [number, number] = [np / bn, mp / bm];
  return { C, np, run: (times = 1) => dispatch(g, pipe, [A, B, C, U], groups, times), free: () => [A, B, C, U].forEach((x) => x.destroy()) };
}

async function stageConfigs(): Promise<void> {
  const g = await openGpu();
  const info = g.adapter.info as unknown as Record<string, unknown>;
  const configs = (info.subgroupMatrixConfigs as Record<string, unknown>[] | undefined)?.map((c) => ({
    componentType: c.componentType, resultComponentType: c.resultComponentType, M: c.M, N: c.N, K: c.K,
  })) ?? null;
  emit({
    stage: 'configs', adapter: [info.vendor, info.architecture, info.description].filter(Boolean).join(' '),
    adapter_has_feature: g.adapter.features.has(FEATURE), device_has_feature: g.device.features.has(FEATURE),
    adapter_features: [...g.adapter.features].sort(), subgroup_min: info.subgroupMinSize, subgroup_max: info.subgroupMaxSize,
    subgroup_matrix_configs: configs, max_workgroup_storage: g.device.limits.maxComputeWorkgroupStorageSize,
  });
  g.device.destroy();
}

async function stageCompile(sp: Spelling): Promise<void> {
  const g = await openGpu();
  const kernels: [string, string][] = [['tile', tileKernel(sp, g.sg)], ...VARIANTS.map((v): [string, string] => [v, variantCode(v, sp, g.sg)])];
  for (const [name, code] of kernels) {
    emit({ stage: 'compile', spelling: sp, kernel: name, starting: true });
    const r = await compile(g, code);
    emit({ stage: 'compile', spelling: sp, kernel: name, ok: r.pipeline !== null, error: r.error, messages: r.messages.slice(0, 6) });
  }
  g.device.destroy();
}

async function stageTile(sp: Spelling): Promise<void> {
  const g = await openGpu();
  const r = await compile(g, tileKernel(sp, g.sg));
  if (!r.pipeline) { emit({ stage: 'tile', ok: false, error: r.error, messages: r.messages }); return; }
  const a = randInt8(16 * 32), b = randInt8(16 * 32);
  const A = storage(g, new Int32Array(a.buffer as ArrayBuffer)), B = storage(g, new Int32Array(b.buffer as ArrayBuffer)), C = storage(g, new Int32Array(256));
  dispatch(g, r.pipeline, [A, B, C], [1, 1]);
  const c = await readI32(g, C, 256);
  let bad = 0, first: unknown = null;
  for (let i = 0; i < 16; i++) for (let n = 0; n < 16; n++) {
    const want = exactAt(a, (nn, j) => b[nn * 32 + j], 32, i, n);
    if (c[i * 16 + n] !== want) { bad++; first ??= { i, n, got: c[i * 16 + n], want }; }
  }
  emit({ stage: 'tile', ok: bad === 0, mismatches: bad, first_mismatch: first, messages: r.messages.slice(0, 3) });
  g.device.destroy();
}

/** One 16 x 16 result tile from chosen rows and K ranges of A and B: where the tiled kernels differ from the one-tile kernel. */
interface Micro { name: string; ka: number; aRows: number; bRows: number; ar: number; br: number; koffs: number[]; uniform: boolean; wg: boolean; sc: number }
const MICROS: Micro[] = [
  { name: 'base', ka: 32, aRows: 16, bRows: 16, ar: 0, br: 0, koffs: [0], uniform: false, wg: false, sc: 16 },
  { name: 'uniform-offset-stride', ka: 32, aRows: 16, bRows: 16, ar: 0, br: 0, koffs: [0], uniform: true, wg: false, sc: 16 },
  { name: 'a-rows-16', ka: 32, aRows: 32, bRows: 16, ar: 16, br: 0, koffs: [0], uniform: false, wg: false, sc: 16 },
  { name: 'b-rows-16', ka: 32, aRows: 16, bRows: 32, ar: 0, br: 16, koffs: [0], uniform: false, wg: false, sc: 16 },
  { name: 'stride-64-k0', ka: 64, aRows: 16, bRows: 16, ar: 0, br: 0, koffs: [0], uniform: false, wg: false, sc: 16 },
  { name: 'stride-64-k32', ka: 64, aRows: 16, bRows: 16, ar: 0, br: 0, koffs: [32], uniform: false, wg: false, sc: 16 },
  { name: 'k64-accumulate', ka: 64, aRows: 16, bRows: 16, ar: 0, br: 0, koffs: [0, 32], uniform: false, wg: false, sc: 16 },
  { name: 'store-stride-32', ka: 32, aRows: 16, bRows: 16, ar: 0, br: 0, koffs: [0], uniform: false, wg: false, sc: 32 },
  { name: 'workgroup-base', ka: 32, aRows: 16, bRows: 16, ar: 0, br: 0, koffs: [0], uniform: false, wg: true, sc: 16 },
  { name: 'workgroup-k64-accumulate', ka: 64, aRows: 16, bRows: 16, ar: 0, br: 0, koffs: [0, 32], uniform: false, wg: true, sc: 16 },
  { name: 'workgroup-a-rows-16', ka: 32, aRows: 32, bRows: 16, ar: 16, br: 0, koffs: [0], uniform: false, wg: true, sc: 16 },
];

function microKernel(sp: Spelling, sg: number, m: Micro): string {
  const L = 'subgroup_matrix_left<i8, 32, 16>', R = 'subgroup_matrix_right<i8, 16, 32>', Res = 'subgroup_matrix_result<i32, 16, 16>';
  const ld = (type: string, ptr: string, off: string, col: boolean, stride: string) => sp === 'template'
    ? `subgroupMatrixLoad<${type}, ${col ? 'col_major' : 'row_major'}>(${ptr}, ${off}, ${stride})`
    : `subgroupMatrixLoad<${type}>(${ptr}, ${off}, ${col}, ${stride})`;
  const st = sp === 'template' ? `subgroupMatrixStore<row_major>(&C, 0u, c, ${m.sc}u)` : `subgroupMatrixStore(&C, 0u, c, false, ${m.sc}u)`;
  const aw = (m.aRows * m.ka) / 4, bw = (m.bRows * m.ka) / 4;
  const pa = m.wg ? '&As' : '&A', pb = m.wg ? '&Bs' : '&B';
  const stride = m.uniform ? 'p.ka' : `${m.ka}u`;
  const steps = m.koffs.map((k) => {
    const ao = m.uniform ? `p.ar * p.ka + ${k}u` : `${m.ar * m.ka + k}u`;
    const bo = m.uniform ? `p.br * p.ka + ${k}u` : `${m.br * m.ka + k}u`;
    return `  c = subgroupMatrixMultiplyAccumulate(${ld(L, pa, ao, false, stride)}, ${ld(R, pb, bo, true, stride)}, c);`;
  }).join('\n');
  return `${header()}
struct P { ka: u32, ar: u32, br: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> A: array<i32>;
@group(0) @binding(1) var<storage, read> B: array<i32>;
@group(0) @binding(2) var<storage, read_write> C: array<i32>;
@group(0) @binding(3) var<uniform> p: P;
${m.wg ? `var<workgroup> As: array<i32, ${aw}>;\nvar<workgroup> Bs: array<i32, ${bw}>;` : ''}
@compute @workgroup_size(${sg})
fn main(@builtin(local_invocation_index) lid: u32) {
${m.wg ? `  for (var w = lid; w < ${aw}u; w += ${sg}u) { As[w] = A[w]; }\n  for (var w = lid; w < ${bw}u; w += ${sg}u) { Bs[w] = B[w]; }\n  workgroupBarrier();` : ''}
  var c = ${Res}();
${steps}
  ${st};
  _ = p.pad;
}`;
}

async function stageDiagnose(sp: Spelling): Promise<void> {
  const g = await openGpu();
  for (const m of MICROS) {
    const r = await compile(g, microKernel(sp, g.sg, m));
    if (!r.pipeline) { emit({ stage: 'diagnose', micro: m.name, ok: false, error: r.error }); continue; }
    const a = randInt8(m.aRows * m.ka), b = randInt8(m.bRows * m.ka);
    const A = storage(g, new Int32Array(a.buffer as ArrayBuffer)), B = storage(g, new Int32Array(b.buffer as ArrayBuffer));
    const C = storage(g, new Int32Array(16 * m.sc));
    const U = g.device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    g.device.queue.writeBuffer(U, 0, new Uint32Array([m.ka, m.ar, m.br, 0]));
    dispatch(g, r.pipeline, [A, B, C, U], [1, 1]);
    const c = await readI32(g, C, 16 * m.sc);
    const want = new Int32Array(256);
    for (let i = 0; i < 16; i++) for (let n = 0; n < 16; n++) {
      let acc = 0;
      for (const k0 of m.koffs) for (let k = 0; k < 32; k++) acc += a[(m.ar + i) * m.ka + k0 + k] * b[(m.br + n) * m.ka + k0 + k];
      want[i * 16 + n] = acc;
    }
    let bad = 0;
    for (let i = 0; i < 16; i++) for (let n = 0; n < 16; n++) if (c[i * m.sc + n] !== want[i * 16 + n]) bad++;
    // Which (A row, B row, k offset) dot products explain the first wrong entries, if any single one does.
    const explain: unknown[] = [];
    if (bad) {
      for (const [i, n] of [[0, 1], [1, 0], [1, 1], [5, 9]]) {
        const got = c[i * m.sc + n];
        const hits: string[] = [];
        for (let ra = 0; ra < m.aRows; ra++) for (let rb = 0; rb < m.bRows; rb++) for (let k0 = 0; k0 + 32 <= m.ka; k0 += 4) {
          let acc = 0;
          for (let k = 0; k < 32; k++) acc += a[ra * m.ka + k0 + k] * b[rb * m.ka + k0 + k];
          if (acc === got && hits.length < 4) hits.push(`a${ra} b${rb} k${k0}`);
        }
        explain.push({ i, n, got, want: want[i * 16 + n], single_dot_matches: hits });
      }
    }
    [A, B, C, U].forEach((x) => x.destroy());
    emit({ stage: 'diagnose', micro: m.name, ok: bad === 0, mismatches: bad, row0_got: Array.from(c.subarray(0, 16)), row0_want: Array.from(want.subarray(0, 16)), explain });
  }
  g.device.destroy();
}

async function stageGemm(sp: Spelling, shapes: [number, number, number][], reps: number): Promise<void> {
  const g = await openGpu();
  for (const v of VARIANTS) {
    // The baked variant compiles once per K and C stride.
    const pipes = new Map<string, GPUComputePipeline | null>();
    const pipeFor = async (K: number, N: number) => {
      const key = v === 'direct-baked' ? `${K}:${N}` : '';
      if (!pipes.has(key)) {
        const r = await compile(g, variantCode(v, sp, g.sg, K, N));
        if (!r.pipeline) emit({ stage: 'gemm', variant: v, ok: false, error: r.error });
        pipes.set(key, r.pipeline);
      }
      return pipes.get(key)!;
    };
    // Every entry of small shapes; odd sizes exercise the bounds of the staged kernels.
    const small: [number, number, number][] = isDirect(v) ? [[64, 128, 96], [32, 64, 32]] : [[100, 200, 96], [64, 128, 2048], [33, 130, 160], [1, 5, 36]];
    for (const [M, N, K] of small) {
      const pipe = await pipeFor(K, N);
      if (!pipe) continue;
      const a = randInt8(M * K), b8 = randInt8(N * K), bw = randWords(N * Math.ceil(K / 32));
      const s = setup(g, pipe, v, M, N, K, a, b8, bw);
      s.run();
      const c = await readI32(g, s.C, Math.ceil(M / 1) * s.np);
      const w = weightAt(v === 'shared-bits', b8, bw, Math.ceil(K / 32), K);
      let bad = 0, first: unknown = null;
      for (let i = 0; i < M; i++) for (let n = 0; n < N; n++) {
        const want = exactAt(a, w, K, i, n);
        if (c[i * s.np + n] !== want) { bad++; first ??= { i, n, got: c[i * s.np + n], want }; }
      }
      s.free();
      emit({ stage: 'gemm', variant: v, check: `${M}x${N}x${K}`, ok: bad === 0, mismatches: bad, first_mismatch: first });
    }
    for (const [M, N, K] of shapes) {
      if (isDirect(v) && (M % 32 || N % 64 || K % 32)) { emit({ stage: 'gemm', variant: v, shape: `${M}x${N}x${K}`, skipped: 'direct needs M % 32, N % 64, K % 32 == 0' }); continue; }
      const pipe = await pipeFor(K, N);
      if (!pipe) continue;
      const a = randInt8(M * K), b8 = v === 'shared-bits' ? new Int8Array(0) : randInt8(N * K), bw = v === 'shared-bits' ? randWords(N * Math.ceil(K / 32)) : new Int32Array(0);
      const s = setup(g, pipe, v, M, N, K, a, b8, bw);
      s.run(2);
      await g.device.queue.onSubmittedWorkDone();
      let t = performance.now();
      s.run(1);
      await g.device.queue.onSubmittedWorkDone();
      const one = performance.now() - t;
      const n = Math.max(1, Math.min(reps, Math.floor(1500 / Math.max(one, 0.01))));
      t = performance.now();
      s.run(n);
      await g.device.queue.onSubmittedWorkDone();
      const ms = (performance.now() - t) / n;
      const c = await readI32(g, s.C, M * s.np);
      const w = weightAt(v === 'shared-bits', b8, bw, Math.ceil(K / 32), K);
      let bad = 0, checked = 0;
      for (const i of [0, 1, 15, 16, 31, 32, 63, 64, M >> 1, M - 2, M - 1]) for (const j of [0, 1, 15, 16, 63, 64, 127, 128, N >> 1, N - 2, N - 1]) {
        if (i >= M || j >= N || i < 0 || j < 0) continue;
        checked++;
        if (c[i * s.np + j] !== exactAt(a, w, K, i, j)) bad++;
      }
      s.free();
      emit({ stage: 'gemm', variant: v, shape: `${M}x${N}x${K}`, reps: n, ms: +ms.toFixed(4), tops: +((2 * M * N * K) / ms / 1e9).toFixed(2), sampled_exact: checked - bad, sampled: checked });
    }
  }
  g.device.destroy();
}

// ---------------------------------------------------------------- parent side
interface StageRun { stage: string; args: string[]; rc: number | null; signal: string | null; lines: Line[]; stderr_tail: string; wall_s: number }

function runChild(stage: string, extra: string[], timeoutS: number): StageRun {
  const t = performance.now();
  const args = ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', stage, ...extra];
  console.error(`[subgroup-matrix] stage ${stage} ${extra.join(' ')}`);
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: timeoutS * 1000, maxBuffer: 1 << 24 });
  const lines: Line[] = [];
  for (const l of (r.stdout ?? '').split('\n')) {
    if (!l.trim()) continue;
    try { lines.push(JSON.parse(l)); } catch { lines.push({ stdout: l }); }
  }
  const res = { stage, args: extra, rc: r.status, signal: r.signal, lines, stderr_tail: (r.stderr ?? '').slice(-3000), wall_s: +((performance.now() - t) / 1000).toFixed(1) };
  console.error(`[subgroup-matrix]   rc ${r.status} signal ${r.signal} ${res.wall_s}s, ${lines.length} lines`);
  return res;
}

function torchPeer(shapes: [number, number, number][], reps: number, timeoutS: number): Line {
  const script = fileURLToPath(new URL('./torch_int8_peer.py', import.meta.url));
  const python = process.env.FRUGAL_PYTHON ?? 'python3';
  const r = spawnSync(python, [script, JSON.stringify({ shapes, reps })], { encoding: 'utf8', timeout: timeoutS * 1000 });
  if (r.status !== 0) return { torch_error: (r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n').slice(-3).join(' | ') };
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
}

async function parent(): Promise<void> {
  const stages = arg('stages', 'configs,compile,tile,diagnose,gemm,torch').split(',');
  const shapes = arg('shapes', DEFAULT_SHAPES).split(',').map((s) => s.split('x').map(Number) as [number, number, number]);
  for (const s of shapes) if (s.length !== 3 || s.some((x) => !Number.isInteger(x) || x < 1)) throw new Error(`--shapes wants MxNxK,...; got ${arg('shapes', '')}`);
  const reps = Number(arg('reps', '20')), timeoutS = Number(arg('stage-timeout-s', '60'));
  const out: Record<string, unknown> = { probe: 'webgpu-subgroup-matrix', date: new Date().toISOString(), shapes };
  const runs: StageRun[] = [];
  out.stages = runs;
  const file = arg('out', '');
  // Written after every stage too, so a run cut short keeps what it found.
  const save = () => { if (file) writeFileSync(file, JSON.stringify(out, null, 2) + '\n'); };
  const runStage = (stage: string, extra: string[], t: number) => { const r = runChild(stage, extra, t); runs.push(r); save(); return r; };
  if (stages.includes('configs')) runStage('configs', [], timeoutS);
  let spelling: Spelling | null = null;
  if (stages.includes('compile')) {
    for (const sp of ['template', 'bool'] as Spelling[]) {
      const r = runStage('compile', ['--spelling', sp], timeoutS);
      if (!spelling && r.lines.some((l) => l.kernel === 'tile' && l.ok === true)) spelling = sp;
    }
  } else spelling = (arg('spelling', 'template') as Spelling);
  out.spelling = spelling;
  if (spelling) {
    if (stages.includes('tile')) runStage('tile', ['--spelling', spelling], timeoutS);
    if (stages.includes('diagnose')) runStage('diagnose', ['--spelling', spelling], timeoutS);
    if (stages.includes('gemm')) runStage('gemm', ['--spelling', spelling, '--shapes', shapes.map((s) => s.join('x')).join(','), '--reps', String(reps)], timeoutS * 2);
  }
  if (stages.includes('torch')) out.torch = torchPeer(shapes, reps, Math.max(timeoutS, 30));
  // Headline: our best variant per shape against torch int8 and bf16.
  const gemmLines = runs.filter((r) => r.stage === 'gemm').flatMap((r) => r.lines).filter((l) => typeof l.tops === 'number');
  const torchRows = ((out.torch as Line | undefined)?.rows as Line[] | undefined) ?? [];
  out.summary = shapes.map(([M, N, K]) => {
    const key = `${M}x${N}x${K}`;
    const ours = gemmLines.filter((l) => l.shape === key);
    const best = ours.reduce<Line | null>((b, l) => (!b || (l.tops as number) > (b.tops as number) ? l : b), null);
    const t = torchRows.find((x) => x.shape === key);
    return {
      shape: key, ...Object.fromEntries(ours.map((l) => [`${l.variant}_tops`, l.tops])),
      torch_int8_tops: t?.int8_tops ?? null, torch_bf16_tflops: t?.bf16_tflops ?? null,
      best_vs_torch_int8: best && t?.int8_tops ? +((best.tops as number) / (t.int8_tops as number)).toFixed(3) : null,
    };
  });
  save();
  console.log(JSON.stringify(out, null, 2));
}

const child = arg('child', '');
if (child) {
  const sp = arg('spelling', 'template') as Spelling;
  try {
    if (child === 'configs') await stageConfigs();
    else if (child === 'compile') await stageCompile(sp);
    else if (child === 'tile') await stageTile(sp);
    else if (child === 'diagnose') await stageDiagnose(sp);
    else if (child === 'gemm') await stageGemm(sp, arg('shapes', DEFAULT_SHAPES).split(',').map((s) => s.split('x').map(Number) as [number, number, number]), Number(arg('reps', '20')));
    else throw new Error(`unknown stage ${child}`);
  } catch (e) {
    emit({ stage: child, exception: (e as Error).stack ?? String(e) });
    process.exitCode = 1;
  }
  process.exit(process.exitCode ?? 0);
} else {
  await parent();
}
