// Batched SGEMM, C = alpha * op(A) op(B) + beta * C, row-major, with register tiling: a workgroup of
// 256 threads computes a TM x TN tile of C, each thread an RM x RN set held in registers (rows and
// columns strided by the thread grid, so neighbouring lanes read neighbouring workgroup-memory words
// and write neighbouring outputs: no bank conflicts, coalesced stores); BK-deep
// slices of A and B are staged in workgroup memory (k-major, so the inner loop reads contiguous rows).
// Global loads use vec4 along an operand's contiguous axis when its sizes and strides allow.
import type { GpuBuf } from '../pool.ts';
import { type KernelSpec, type Runtime, Uniform } from '../runtime.ts';

export interface MatmulParams {
  batch: number; m: number; n: number; k: number; transA: boolean; transB: boolean;
  strideA: number; strideB: number; strideC: number; alpha: number; beta: number;
}

export interface Tile { tm: number; tn: number; bk: number; rm: number; rn: number }
export const BIG: Tile = { tm: 128, tn: 128, bk: 16, rm: 8, rn: 8 };
const SMALL: Tile = { tm: 64, tn: 64, bk: 16, rm: 4, rn: 4 };

/** Entry point of every matmul kernel: its workgroup's C tile origin (m0, n0) and batch item's A and B bases. */
const entry = (tm: number, tn: number) => `@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let m0 = wid.y * ${tm}u;
  let n0 = wid.x * ${tn}u;
  let aBase = wid.z * p.sa;
  let bBase = wid.z * p.sb;`;

/** Storage bindings and uniform block of every matmul kernel. */
const io = (vecA: boolean, vecB: boolean, vecC: boolean) => ({
  bindings: [['A', vecA ? 'vec4<f32>' : 'f32', 'r'], ['B', vecB ? 'vec4<f32>' : 'f32', 'r'], ['C', vecC ? 'vec4<f32>' : 'f32', 'w']],
  uniform: 'm: u32, n: u32, k: u32, sa: u32, sb: u32, sc: u32, alpha: f32, beta: f32',
} as const);

export function matmulUniform(q: MatmulParams): Uniform {
  return new Uniform().u(q.m, q.n, q.k, q.strideA, q.strideB, q.strideC).f(q.alpha, q.beta);
}

/**
 * WGSL for staging one operand tile into workgroup memory `dst[k * T + outer]`. `kContig` says the
 * operand's rows are along k in memory (A without transpose, B transposed).
 */
function loadTile(name: string, dst: string, t: number, bk: number, kContig: boolean, vec: boolean, dim: string, ld: string, base: string, outer0: string): string {
  const total = t * bk;
  if (!vec) {
    return `
  for (var i = 0u; i < ${total / 256}u; i++) {
    let idx = tid + i * 256u;
    ${kContig ? `let kk = idx % ${bk}u; let oo = idx / ${bk}u;` : `let oo = idx % ${t}u; let kk = idx / ${t}u;`}
    let go = ${outer0} + oo;
    let gk = k0 + kk;
    var v = 0.0;
    if (go < ${dim} && gk < p.k) { v = ${name}[${base} + ${kContig ? `go * ${ld} + gk` : `gk * ${ld} + go`}]; }
    ${dst}[kk * ${t}u + oo] = v;
  }`;
  }
  return `
  for (var i = 0u; i < ${total / 1024}u; i++) {
    let idx = tid + i * 256u;
    ${kContig ? `let kk = (idx % ${bk / 4}u) * 4u; let oo = idx / ${bk / 4}u;` : `let oo = (idx % ${t / 4}u) * 4u; let kk = idx / ${t / 4}u;`}
    let go = ${outer0} + oo;
    let gk = k0 + kk;
    var v = vec4<f32>(0.0);
    if (go < ${dim} && gk < p.k) { v = ${name}[(${base} + ${kContig ? `go * ${ld} + gk` : `gk * ${ld} + go`}) / 4u]; }
    ${kContig
    ? `${dst}[kk * ${t}u + oo] = v.x; ${dst}[(kk + 1u) * ${t}u + oo] = v.y; ${dst}[(kk + 2u) * ${t}u + oo] = v.z; ${dst}[(kk + 3u) * ${t}u + oo] = v.w;`
    : `let o4 = kk * ${t}u + oo; ${dst}[o4] = v.x; ${dst}[o4 + 1u] = v.y; ${dst}[o4 + 2u] = v.z; ${dst}[o4 + 3u] = v.w;`}
  }`;
}

/** The strided register-tiled kernel: every shape, and large ones whose operands vec4 loads do not fit. */
export function tiledSpec(tile: Tile, transA: boolean, transB: boolean, vecA: boolean, vecB: boolean): KernelSpec {
  return {
    key: `matmul:${tile.tm}:${transA}:${transB}:${vecA}:${vecB}`, ...io(vecA, vecB, false),
    code: () => tiledCode(tile, transA, transB, vecA, vecB),
  };
}

// The register block is written out as named vec4 accumulators (no arrays, no inner loops): shader
// compilers otherwise may keep a dynamically indexed accumulator array in slow local memory.
function tiledCode(tile: Tile, transA: boolean, transB: boolean, vecA: boolean, vecB: boolean): string {
  const { tm, tn, bk, rm, rn } = tile;
  const tx = tn / rn, sy = tm / rm, nv = rn / 4;
  const R = [...Array(rm).keys()], V = [...Array(nv).keys()];
  const accDecl = R.map((r) => V.map((v) => `  var acc${r}_${v} = vec4<f32>(0.0);`).join('\n')).join('\n');
  const loadA = R.map((r) => `      let a${r} = As[kk * ${tm}u + ty + ${r * sy}u];`).join('\n');
  const loadB = V.map((v) => `      let b${v} = vec4<f32>(${[0, 1, 2, 3].map((j) => `Bs[kk * ${tn}u + tx + ${(v * 4 + j) * tx}u]`).join(', ')});`).join('\n');
  const fmas = R.map((r) => V.map((v) => `      acc${r}_${v} = fma(vec4<f32>(a${r}), b${v}, acc${r}_${v});`).join('\n')).join('\n');
  const store = R.map((r) => `
  {
    let gm = m0 + ty + ${r * sy}u;
    if (gm < p.m) {
${V.map((v) => [0, 1, 2, 3].map((j) => {
    const comp = 'xyzw'[j];
    return `      { let gn = n0 + tx + ${(v * 4 + j) * tx}u; if (gn < p.n) { let ci = cBase + gm * p.n + gn; var val = p.alpha * acc${r}_${v}.${comp}; if (p.beta != 0.0) { val += p.beta * C[ci]; } C[ci] = val; } }`;
  }).join('\n')).join('\n')}
    }
  }`).join('');
  return `
var<workgroup> As: array<f32, ${tm * bk}>;
var<workgroup> Bs: array<f32, ${tn * bk}>;

${entry(tm, tn)}
  let ty = tid / ${tx}u;
  let tx = tid % ${tx}u;
${accDecl}
  for (var k0 = 0u; k0 < p.k; k0 += ${bk}u) {
    ${loadTile('A', 'As', tm, bk, !transA, vecA, 'p.m', transA ? 'p.m' : 'p.k', 'aBase', 'm0')}
    ${loadTile('B', 'Bs', tn, bk, transB, vecB, 'p.n', transB ? 'p.k' : 'p.n', 'bBase', 'n0')}
    workgroupBarrier();
    for (var kk = 0u; kk < ${bk}u; kk++) {
${loadA}
${loadB}
${fmas}
    }
    workgroupBarrier();
  }
  let cBase = wid.z * p.sc;${store}
}`;
}

// Quadrant kernel: a gy x gx thread grid (16 x 16 unless a shape says otherwise); thread (ty, tx) owns
// rows ty*4 + 4*gy*i + (0..3) for i < qm and columns tx*4 + 4*gx*j + (0..3) for j < qn, so every operand
// read from workgroup memory is one vec4 of four contiguous rows or columns. Tiles are staged k-major as
// vec4s written whole: an operand contiguous along k (A plain, B transposed) is transposed through
// registers (four rows' k-vec4s become four k-rows' vec4s). `pad` vec4s after each k-row of a staged
// tile spread those transposing stores over the banks. With `split`, grid z runs batch x splits
// workgroups, each multiplying one k range (p.kc long) into its own slab of a scratch buffer that
// splitReduce sums into C: the weight gradients (small m x n over a long k) then still fill the GPU.
// The shapes and k-loop schedules are compared in bench/probes/webgpu-matmul-variants.ts; the ones
// chosen below were the fastest on an H200 (bench/NOTES.md).
export interface Quad { qm: number; qn: number; bk: number; gy?: number; gx?: number; pad?: number }
/** 128 threads of 16 x 8 (8 x 16 grid): a 128 x 128 tile, the plain and A-transposed products. */
const TALL128: Quad = { qm: 4, qn: 2, bk: 16, gy: 8, gx: 16 };
/** 256 threads of 8 x 16: a 128 x 256 tile, B-transposed products with n >= 2048. */
const WIDE: Quad = { qm: 2, qn: 4, bk: 16 };
/** 64 threads of 8 x 8: a 64 x 64 tile, B-transposed products with small n and the split products. */
const SMALL64: Quad = { qm: 2, qn: 2, bk: 16, gy: 8, gx: 8 };

/** Thread grid, tile and workgroup size of a quadrant kernel. */
export function quadGeom(q: Quad): { gy: number; gx: number; tm: number; tn: number; wg: number; pad: number } {
  const gy = q.gy ?? 16, gx = q.gx ?? 16;
  return { gy, gx, tm: 4 * gy * q.qm, tn: 4 * gx * q.qn, wg: gy * gx, pad: q.pad ?? 0 };
}

/** The k loop of a quadrant kernel: how many slice buffers it stages and the WGSL that fills and multiplies them. */
export interface QuadSchedule {
  buffers: number;
  loop: (A: QuadOperandCode, B: QuadOperandCode, compute: (buf: string) => string, bk: number) => string;
}

/** Load a slice into registers, store it to workgroup buffer 0, multiply; two barriers per slice. */
const singleBuffer: QuadSchedule = {
  buffers: 1,
  loop: (A, B, compute, bk) => `  for (var k0 = kBeg; k0 < kEnd; k0 += ${bk}u) {
${A.load('k0')}
${B.load('k0')}
${A.store('0u')}
${B.store('0u')}
    workgroupBarrier();
${compute('0u')}
    workgroupBarrier();
  }`,
};

/** Workgroup memory of a quadrant kernel, for the adapter's limit. */
export function quadSharedBytes(q: Quad, schedule: QuadSchedule = singleBuffer): number {
  const { tm, tn, pad } = quadGeom(q);
  return schedule.buffers * q.bk * (tm / 4 + tn / 4 + 2 * pad) * 16;
}

interface Operand { name: string; t: number; kContig: boolean; dim: string; ld: string; base: string; outer0: string }

/** WGSL for one operand of a quadrant kernel: its registers, their global loads at k0, their stores to a slice buffer. */
export interface QuadOperandCode { decl: string; load: (k0: string) => string; store: (buf: string) => string }

/** Global loads of one slice into registers `g<name><i>_<r>` (declared by `decl`) by `wg` threads. */
function quadOperand(o: Operand, bk: number, wg: number, pad: number): QuadOperandCode {
  const tv = o.t / 4, pitch = tv + pad;
  const lines: { decl: string[]; load: string[]; store: string[] } = { decl: [], load: [], store: [] };
  const slot = (buf: string, kk: string, ov: string) => `${o.name}s[(${buf} * ${bk}u + ${kk}) * ${pitch}u + ${ov}]`;
  if (!o.kContig) {
    // Contiguous along the outer axis: a global vec4 is already four outer entries at one k.
    const total = bk * tv, per = Math.ceil(total / wg);
    for (let i = 0; i < per; i++) {
      const guard = total % wg !== 0 && (i + 1) * wg > total ? `idx < ${total}u` : 'true';
      const r = `g${o.name}${i}`;
      lines.decl.push(`  var ${r} = vec4<f32>(0.0);`);
      lines.load.push(`    { let idx = tid + ${i * wg}u; let go = ${o.outer0} + (idx % ${tv}u) * 4u; let gk = K0 + idx / ${tv}u;
      ${r} = vec4<f32>(0.0); if (${guard} && go < ${o.dim} && gk < kEnd) { ${r} = ${o.name}[(${o.base} + gk * ${o.ld} + go) / 4u]; } }`);
      lines.store.push(`    { let idx = tid + ${i * wg}u; if (${guard}) { ${slot('BUF', `idx / ${tv}u`, `idx % ${tv}u`)} = ${r}; } }`);
    }
  } else {
    // Contiguous along k: each thread reads 4 rows x 4 k (lanes adjacent along k for coalescing)
    // and writes the transposed 4 k x 4 rows.
    const kq = bk / 4, groups = tv * kq, per = Math.ceil(groups / wg);
    for (let i = 0; i < per; i++) {
      const guard = groups % wg !== 0 && (i + 1) * wg > groups ? `g < ${groups}u` : 'true';
      const r = [0, 1, 2, 3].map((j) => `g${o.name}${i}_${j}`);
      for (const x of r) lines.decl.push(`  var ${x} = vec4<f32>(0.0);`);
      lines.load.push(`    { let g = tid + ${i * wg}u; if (${guard}) { let go = ${o.outer0} + (g / ${kq}u) * 4u; let gk = K0 + (g % ${kq}u) * 4u;
${r.map((x, j) => `      ${x} = vec4<f32>(0.0); if (go + ${j}u < ${o.dim} && gk < kEnd) { ${x} = ${o.name}[(${o.base} + (go + ${j}u) * ${o.ld} + gk) / 4u]; }`).join('\n')}
    } }`);
      lines.store.push(`    { let g = tid + ${i * wg}u; if (${guard}) { let ov = g / ${kq}u; let kb = (g % ${kq}u) * 4u;
${'xyzw'.split('').map((c, j) => `      ${slot('BUF', `kb + ${j}u`, 'ov')} = vec4<f32>(${r.map((x) => `${x}.${c}`).join(', ')});`).join('\n')}
    } }`);
    }
  }
  return {
    decl: lines.decl.join('\n'),
    load: (k0) => lines.load.join('\n').replaceAll('K0', k0),
    store: (buf) => lines.store.join('\n').replaceAll('BUF', buf),
  };
}

const QUAD_UNIFORM = 'm: u32, n: u32, k: u32, sa: u32, sb: u32, sc: u32, alpha: f32, beta: f32, kc: u32, splits: u32';

/** Uniform of a quadrant kernel: the matmul's, then the k range of one split and the number of splits. */
export function quadUniform(q: MatmulParams, kc: number, splits: number): Uniform {
  return matmulUniform(q).u(kc, splits);
}

/**
 * The quadrant kernel for vec4-loadable operands; `name` tells schedules and shapes apart in the
 * pipeline key. `split`: write raw partial products to a [batch * splits, m, n] scratch C (splitReduce).
 */
export function quadSpec(q: Quad, transA: boolean, transB: boolean, vecC: boolean, schedule = singleBuffer, name = 'quad16', split = false): KernelSpec {
  return {
    key: `matmul:${name}:${transA}:${transB}:${vecC}:${split}`,
    bindings: io(true, true, vecC).bindings, uniform: QUAD_UNIFORM,
    code: () => quadCode(q, transA, transB, vecC, schedule, split),
  };
}

function quadCode(q: Quad, transA: boolean, transB: boolean, vecC: boolean, schedule: QuadSchedule, split: boolean): string {
  const { qm, qn, bk } = q;
  const { gy, gx, tm, tn, wg, pad } = quadGeom(q);
  const A = quadOperand({ name: 'A', t: tm, kContig: !transA, dim: 'p.m', ld: transA ? 'p.m' : 'p.k', base: 'aBase', outer0: 'm0' }, bk, wg, pad);
  const B = quadOperand({ name: 'B', t: tn, kContig: transB, dim: 'p.n', ld: transB ? 'p.k' : 'p.n', base: 'bBase', outer0: 'n0' }, bk, wg, pad);
  const pa = tm / 4 + pad, pb = tn / 4 + pad;
  const I = [...Array(qm).keys()], J = [...Array(qn).keys()], R = [0, 1, 2, 3];
  const accs = I.flatMap((i) => R.flatMap((r) => J.map((j) => [i, r, j] as const)));
  const acc = (i: number, r: number, j: number) => `acc${i * 4 + r}_${j}`;
  // The k loop of a slice is written out: constant workgroup offsets, no loop for the compiler to judge.
  const compute = (buf: string) => [...Array(bk).keys()].map((kk) => `    {
${I.map((i) => `      let a${i} = As[(${buf} * ${bk}u + ${kk}u) * ${pa}u + ty + ${gy * i}u];`).join('\n')}
${J.map((j) => `      let b${j} = Bs[(${buf} * ${bk}u + ${kk}u) * ${pb}u + tx + ${gx * j}u];`).join('\n')}
${accs.map(([i, r, j]) => `      ${acc(i, r, j)} = fma(vec4<f32>(a${i}.${'xyzw'[r]}), b${j}, ${acc(i, r, j)});`).join('\n')}
    }`).join('\n');
  // A split's partial product is stored as it is; the reduction applies alpha and beta.
  const val = (x: string, ci: string) => split ? `let val = ${x};` : `var val = p.alpha * ${x}; if (p.beta != 0.0) { val += p.beta * C[${ci}]; }`;
  const store = I.flatMap((i) => R.map((r) => `
  {
    let gm = m0 + ty * 4u + ${4 * gy * i + r}u;
    if (gm < p.m) {
${J.map((j) => vecC
    ? `      { let gn = n0 + tx * 4u + ${4 * gx * j}u; if (gn < p.n) { let ci = (cBase + gm * p.n + gn) / 4u; ${val(acc(i, r, j), 'ci')} C[ci] = val; } }`
    : R.map((c) => `      { let gn = n0 + tx * 4u + ${4 * gx * j + c}u; if (gn < p.n) { let ci = cBase + gm * p.n + gn; ${val(`${acc(i, r, j)}.${'xyzw'[c]}`, 'ci')} C[ci] = val; } }`).join('\n')).join('\n')}
    }
  }`)).join('');
  const nbuf = schedule.buffers;
  return `
var<workgroup> As: array<vec4<f32>, ${nbuf * bk * pa}>;
var<workgroup> Bs: array<vec4<f32>, ${nbuf * bk * pb}>;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let m0 = wid.y * ${tm}u;
  let n0 = wid.x * ${tn}u;
  let zb = wid.z / p.splits;
  let kBeg = (wid.z % p.splits) * p.kc;
  let kEnd = min(p.k, kBeg + p.kc);
  let aBase = zb * p.sa;
  let bBase = zb * p.sb;
  let ty = tid / ${gx}u;
  let tx = tid % ${gx}u;
${accs.map(([i, r, j]) => `  var ${acc(i, r, j)} = vec4<f32>(0.0);`).join('\n')}
${A.decl}
${B.decl}
${schedule.loop(A, B, compute, bk)}
  let cBase = ${split ? 'wid.z * p.m * p.n' : 'zb * p.sc'};${store}
}`;
}

/**
 * How a product runs on the quadrant kernel: its shape, schedule and name, its k splits (1: none), and
 * which operands are first copied into the other storage order (`flipA`, `flipB`: the kernel then runs
 * the other transpose case, e.g. a B-transposed product as a plain one).
 */
export interface QuadPlan { quad: Quad; schedule?: QuadSchedule; name: string; splits: number; flipA?: boolean; flipB?: boolean }

/** A copy of `items` row-major [rows x cols] matrices (batch stride `stride`) stored as [cols x rows]. */
function transposeCopy(rt: Runtime, src: GpuBuf, items: number, rows: number, cols: number, stride: number): GpuBuf {
  const dst = rt.temp(items * rows * cols, 'f32');
  rt.dispatch({ key: 'matmul:transpose', bindings: [['S', 'f32', 'r'], ['D', 'f32', 'w']], uniform: 'rows: u32, cols: u32, ss: u32', code: () => `
var<workgroup> T: array<f32, ${32 * 33}>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let r0 = wid.y * 32u;
  let c0 = wid.x * 32u;
  let sBase = wid.z * p.ss;
  let dBase = wid.z * p.rows * p.cols;
  let tx = tid % 32u;
  let ty = tid / 32u;
  for (var i = 0u; i < 32u; i += 8u) {
    let r = r0 + ty + i;
    let c = c0 + tx;
    if (r < p.rows && c < p.cols) { T[(ty + i) * 33u + tx] = S[sBase + r * p.cols + c]; }
  }
  workgroupBarrier();
  for (var i = 0u; i < 32u; i += 8u) {
    let c = c0 + ty + i;
    let r = r0 + tx;
    if (r < p.rows && c < p.cols) { D[dBase + c * p.rows + r] = T[tx * 33u + ty + i]; }
  }
}` }, [src, dst], new Uniform().u(rows, cols, stride), [Math.ceil(cols / 32), Math.ceil(rows / 32), items]);
  return dst;
}

/** The product's parameters once the plan's flipped operands are stored the other way (see QuadPlan). */
export function flippedParams(plan: QuadPlan, q: MatmulParams): MatmulParams {
  const r = { ...q };
  if (plan.flipA) { r.transA = !q.transA; r.strideA = q.strideA === 0 ? 0 : q.m * q.k; }
  if (plan.flipB) { r.transB = !q.transB; r.strideB = q.strideB === 0 ? 0 : q.n * q.k; }
  return r;
}

/**
 * Which operands allow vec4 loads: the contiguous axis, the batch stride and the row pitch must be
 * multiples of 4.
 */
export function vecLoads(q: MatmulParams): { a: boolean; b: boolean } {
  return {
    a: (q.transA ? q.m % 4 === 0 : q.k % 4 === 0) && q.strideA % 4 === 0,
    b: (q.transB ? q.k % 4 === 0 : q.n % 4 === 0) && q.strideB % 4 === 0,
  };
}

/** Whether both operands of a product allow vec4 loads along their contiguous axes. */
export function vecOperands(q: MatmulParams): boolean {
  const v = vecLoads(q);
  return v.a && v.b;
}

/**
 * Runs a product on the quadrant kernel (operands, after the plan's flips, must allow vec4 loads). With
 * splits > 1 each split's k range is a whole number of slices; the partial products go to a scratch
 * buffer summed by splitReduce.
 */
export function quadMatmul(rt: Runtime, plan: QuadPlan, a: GpuBuf, b: GpuBuf, c: GpuBuf, q0: MatmulParams): void {
  const q = flippedParams(plan, q0);
  if (plan.flipA) a = transposeCopy(rt, a, q0.strideA === 0 ? 1 : q0.batch, q0.transA ? q0.k : q0.m, q0.transA ? q0.m : q0.k, q0.strideA);
  if (plan.flipB) b = transposeCopy(rt, b, q0.strideB === 0 ? 1 : q0.batch, q0.transB ? q0.n : q0.k, q0.transB ? q0.k : q0.n, q0.strideB);
  const { batch, m, n, k } = q;
  const { tm, tn } = quadGeom(plan.quad);
  const bk = plan.quad.bk;
  const kc = Math.ceil(k / plan.splits / bk) * bk;
  const splits = Math.ceil(k / kc);
  const grid: [number, number, number] = [Math.ceil(n / tn), Math.ceil(m / tm), batch * splits];
  if (splits === 1) {
    const vecC = n % 4 === 0 && q.strideC % 4 === 0;
    rt.dispatch(quadSpec(plan.quad, q.transA, q.transB, vecC, plan.schedule, plan.name), [a, b, c], quadUniform(q, k, 1), grid);
    return;
  }
  const part = rt.temp(batch * splits * m * n, 'f32');
  rt.dispatch(quadSpec(plan.quad, q.transA, q.transB, n % 4 === 0, plan.schedule, plan.name, true), [a, b, part], quadUniform(q, kc, splits), grid);
  splitReduce(rt, part, c, batch, m * n, q.strideC, splits, q.alpha, q.beta);
}

/** C[z] = alpha * sum over s of P[z * splits + s] + beta * C[z], for slabs of `per` entries. */
function splitReduce(rt: Runtime, part: GpuBuf, c: GpuBuf, batch: number, per: number, stride: number, splits: number, alpha: number, beta: number): void {
  rt.dispatch({ key: 'matmul:splitReduce',
    bindings: [['Part', 'f32', 'r'], ['C', 'f32', 'w']],
    uniform: 'total: u32, per: u32, stride: u32, splits: u32, alpha: f32, beta: f32', code: () => `
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid.x;
  if (i >= p.total) { return; }
  let z = i / p.per;
  let e = i % p.per;
  var s = 0.0;
  for (var j = 0u; j < p.splits; j++) { s += Part[(z * p.splits + j) * p.per + e]; }
  let ci = z * p.stride + e;
  var val = p.alpha * s;
  if (p.beta != 0.0) { val += p.beta * C[ci]; }
  C[ci] = val;
}` }, [part, c], new Uniform().u(batch * per, per, stride, splits).f(alpha, beta), rt.grid(Math.ceil((batch * per) / 256)));
}

/**
 * A split product runs the 64-thread 64 x 64 tile, aiming at 2112 such groups (16 per SM of an H200,
 * 132 SMs), each k range at least 256 long: on the 125M model's weight gradients this took 8-15% off
 * the 128-thread 128 x 128 tile split to 1056 groups over ranges of >= 512 (bench/NOTES.md, 2026-12-04).
 */
const SPLIT_GRID = 2112;
const SPLIT_MIN_K = 256;
/** Grids of fewer 128 x 128 tiles than the H200's 132 SMs split k (2048², 256 tiles, runs faster unsplit). */
const SPLIT_BELOW = 132;

/**
 * k splits of the 64 x 64 tile for a product whose 128 x 128 grid has `tiles` workgroups (`tiles64` of
 * 64 x 64): none unless the grid is under SPLIT_BELOW; about SPLIT_GRID groups, each k range >= SPLIT_MIN_K.
 */
export function splitsFor(tiles: number, tiles64: number, k: number): number {
  if (tiles >= SPLIT_BELOW) return 1;
  return Math.max(1, Math.min(Math.ceil(SPLIT_GRID / tiles64), Math.floor(k / SPLIT_MIN_K)));
}

/** A B-transposed product with at least this many rows copies B transposed first and runs as a plain one. */
const FLIP_B_ROWS = 4096;

/**
 * The quadrant kernel shape and k splits for a product, from the probes on an H200 (bench/NOTES.md,
 * 2026-12-02 and 12-03): B transposed (a linear layer's forward) over many rows copies B transposed
 * (n x k floats, about 1% of the product's time at 4096 rows) and runs as a plain product, up to 16%
 * faster on the 125M model's forward products; over few rows it runs the 128 x 256 tile when n >= 2048, else
 * the 64 x 64 one. The others run the 128-thread 128 x 128 tile, or the 64 x 64 one with k split when
 * the 128 x 128 grid is under one group per SM (weight gradients over the tokens).
 */
export function quadPlan(q: MatmulParams): QuadPlan {
  if (q.transB && q.m >= FLIP_B_ROWS && q.n % 4 === 0) return { ...quadPlan({ ...q, transB: false }), flipB: true };
  if (q.transB) return q.n >= 2048 ? { quad: WIDE, name: 'wide16', splits: 1 } : { quad: SMALL64, name: 'small64', splits: 1 };
  const tiles = Math.ceil(q.m / 128) * Math.ceil(q.n / 128) * q.batch;
  const splits = splitsFor(tiles, Math.ceil(q.m / 64) * Math.ceil(q.n / 64) * q.batch, q.k);
  return splits > 1 ? { quad: SMALL64, name: 'small64', splits } : { quad: TALL128, name: 'tall128', splits: 1 };
}

export function matmul(rt: Runtime, a: GpuBuf, b: GpuBuf, c: GpuBuf, q: MatmulParams): void {
  const { batch, m, n, k } = q;
  if (batch === 0 || m === 0 || n === 0) return;
  if (k === 0 || q.alpha === 0) {
    // Nothing to multiply: C = beta * C (BLAS semantics; beta = 0 clears without reading).
    scaleC(rt, c, batch, m * n, q.strideC, q.beta);
    return;
  }
  const tile = m * n * batch >= 256 * 256 ? BIG : SMALL;
  // The quadrant kernel stages whole vec4s only, so it needs vec4 loads of both operands (as it reads them).
  if (tile === BIG) {
    const plan = quadPlan(q);
    if (vecOperands(flippedParams(plan, q)) && quadSharedBytes(plan.quad, plan.schedule) <= rt.maxWorkgroupStorage) {
      quadMatmul(rt, plan, a, b, c, q);
      return;
    }
  }
  const vec = vecLoads(q);
  rt.dispatch(tiledSpec(tile, q.transA, q.transB, vec.a, vec.b), [a, b, c], matmulUniform(q),
    [Math.ceil(n / tile.tn), Math.ceil(m / tile.tm), batch]);
}

function scaleC(rt: Runtime, c: GpuBuf, batch: number, per: number, stride: number, beta: number): void {
  rt.dispatch({ key: 'matmul:scaleC',
    bindings: [['C', 'f32', 'w']],
    uniform: 'total: u32, per: u32, stride: u32, beta: f32', code: () => `
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid.x;
  if (i >= p.total) { return; }
  let ci = (i / p.per) * p.stride + i % p.per;
  C[ci] = select(0.0, p.beta * C[ci], p.beta != 0.0);
}` }, [c], new Uniform().u(batch * per, per, stride).f(beta), rt.grid(Math.ceil((batch * per) / 256)));
}
