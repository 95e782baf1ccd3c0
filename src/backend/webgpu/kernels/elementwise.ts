// Elementwise and indexing kernels: fill, strided copies, broadcast binary ops, unary ops and their
// derivatives, gather/scatter-add, rotary embedding, causal depthwise conv1d, AdamW.
import type { BinaryOp, Strided, UnaryOp } from '../../types.ts';
import { type GpuBuf, splitParts } from '../pool.ts';
import { type KernelSpec, type Runtime, Uniform } from '../runtime.ts';
import { flatMain, ty, WG } from './common.ts';

const MAX_DIMS = 8;

export const mathFns = `
fn erf_(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return select(r - 1.0, 1.0 - r, x >= 0.0);
}
// exp(-2|x|) never overflows, unlike a direct (e^x - e^-x) / (e^x + e^-x).
fn tanh_(x: f32) -> f32 { let e = exp(-2.0 * abs(x)); return sign(x) * (1.0 - e) / (1.0 + e); }
fn sigmoid_(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
// Math.pow semantics for the cases that matter: negative bases with integer exponents, zero bases.
fn pow_(a: f32, b: f32) -> f32 {
  if (b == 0.0) { return 1.0; }
  if (a == 0.0) { return select(0.0, posInf(), b < 0.0); }
  if (a < 0.0) {
    if (b != floor(b)) { return nanF(); }
    let r = exp2(b * log2(-a));
    return select(r, -r, (abs(b) % 2.0) == 1.0);
  }
  return exp2(b * log2(a));
}
const GELU_C: f32 = 0.7978845608028654;
`;

const unaryExpr: Record<UnaryOp | 'identity', string> = {
  identity: 'x', neg: '-x', exp: 'exp(x)', log: 'log(x)', sqrt: 'sqrt(x)', rsqrt: '1.0 / sqrt(x)', tanh: 'tanh_(x)',
  sigmoid: 'sigmoid_(x)', relu: 'select(0.0, x, x > 0.0)', silu: 'x / (1.0 + exp(-x))',
  gelu: '0.5 * x * (1.0 + erf_(x * 0.7071067811865476))',
  gelu_tanh: '0.5 * x * (1.0 + tanh_(GELU_C * (x + 0.044715 * x * x * x)))',
  abs: 'abs(x)', sign: 'sign(x)', square: 'x * x', reciprocal: '1.0 / x',
};

const gradExpr: Record<UnaryOp, string> = {
  neg: '-1.0', exp: 'y', log: '1.0 / x', sqrt: '0.5 / y', rsqrt: '-0.5 * y / x', tanh: '1.0 - y * y',
  sigmoid: 'y * (1.0 - y)', relu: 'select(0.0, 1.0, x > 0.0)',
  silu: '(1.0 / (1.0 + exp(-x))) * (1.0 + x * (1.0 - 1.0 / (1.0 + exp(-x))))',
  gelu: '0.5 * (1.0 + erf_(x * 0.7071067811865476)) + x * exp(-0.5 * x * x) * 0.3989422804014327',
  gelu_tanh: 'gtanh(x)', abs: 'sign(x)', sign: '0.0', square: '2.0 * x', reciprocal: '-y * y',
};

// Builtin sin/cos may be off by 2^-11 (Vulkan's bound); rotary angles need ~1e-7. Reduce by pi/2
// with a three-part constant (Cody-Waite, exact products for |q| < 2^12) and evaluate Taylor polynomials on [-pi/4, pi/4].
const sincosFn = `
fn sincos(x: f32) -> vec2<f32> {
  let q = round(x * 0.6366197723675814);
  let r = ((x - q * 1.5703125) - q * 0.0004838705062866211) - q * -4.371138828673793e-08;
  let r2 = r * r;
  let s = r * (1.0 + r2 * (-1.0 / 6.0 + r2 * (1.0 / 120.0 + r2 * (-1.0 / 5040.0 + r2 * (1.0 / 362880.0)))));
  let c = 1.0 + r2 * (-0.5 + r2 * (1.0 / 24.0 + r2 * (-1.0 / 720.0 + r2 * (1.0 / 40320.0 - r2 / 3628800.0))));
  let qi = i32(q) & 3;
  if (qi == 0) { return vec2<f32>(s, c); }
  if (qi == 1) { return vec2<f32>(c, -s); }
  if (qi == 2) { return vec2<f32>(-s, -c); }
  return vec2<f32>(-c, s);
}`;

const gtanh = `
fn gtanh(x: f32) -> f32 {
  let t = tanh_(GELU_C * (x + 0.044715 * x * x * x));
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * 0.044715 * x * x);
}`;

const binaryExpr: Record<BinaryOp, string> = {
  add: 'a + b', sub: 'a - b', mul: 'a * b', div: 'a / b', pow: 'pow_(a, b)',
  maximum: 'select(b, a, a >= b)', minimum: 'select(b, a, a <= b)',
  eq: 'select(0.0, 1.0, a == b)', gt: 'select(0.0, 1.0, a > b)',
};

/** Elements per thread of the flat binary kernel (bench/probes/webgpu-bandwidth-probe.ts). */
const FLAT_PER = 4;

function groups(rt: Runtime, n: number): [number, number] {
  return rt.grid(Math.ceil(n / WG));
}

function checkDims(v: Strided): void {
  if (v.shape.length > MAX_DIMS) throw new Error(`webgpu: views of more than ${MAX_DIMS} dimensions are not supported (got ${v.shape.length}); reshape first`);
}

function pad8(a: number[]): number[] {
  return [...a, ...new Array(MAX_DIMS - a.length).fill(0)];
}

export function fill(rt: Runtime, out: GpuBuf, value: number): void {
  if (value === 0) { rt.clear(out); return; }
  const bits = new Uint32Array(out.dtype === 'f32' ? new Float32Array([value]).buffer : new Int32Array([value]).buffer)[0];
  const spec: KernelSpec = { key: 'fill', bindings: [['o', 'u32', 'w']], uniform: 'n: u32, bits: u32', code: () => `
${flatMain('  if (i < p.n) { o[i] = p.bits; }')}` };
  rt.dispatch(spec, [out], new Uniform().u(out.length, bits), groups(rt, out.length));
}

/** Copies of at least this many elements (vec4-aligned, one buffer each) run as a shader, not copyBufferToBuffer. */
const COPY_SHADER_MIN = 1 << 16;

export function copy(rt: Runtime, src: GpuBuf, so: number, dst: GpuBuf, d0: number, n: number): void {
  if (src.buffer !== dst.buffer && !src.parts && !dst.parts && n >= COPY_SHADER_MIN && so % 4 === 0 && d0 % 4 === 0 && n % 4 === 0) {
    // copyBufferToBuffer moved 0.84-0.93 TB/s on the H200 (bench/NOTES.md); a flat shader with FLAT_PER
    // vec4s per thread reads and writes like the flat binary kernel.
    const K = [...Array(FLAT_PER).keys()], nv = n / 4;
    rt.dispatch({ key: 'copyVec4', bindings: [['S', 'vec4<u32>', 'r'], ['D', 'vec4<u32>', 'w']], uniform: 'so: u32, d0: u32, n: u32', code: () => `
${flatMain(`  let T = nwg.x * nwg.y * ${WG}u;
${K.map((k) => `  let e${k} = i + ${k}u * T;
  var v${k} = vec4<u32>(0u);
  if (e${k} < p.n) { v${k} = S[p.so + e${k}]; }`).join('\n')}
${K.map((k) => `  if (e${k} < p.n) { D[p.d0 + e${k}] = v${k}; }`).join('\n')}`)}` }, [src, dst], new Uniform().u(so / 4, d0 / 4, nv), groups(rt, Math.ceil(nv / FLAT_PER)));
    return;
  }
  if (src.buffer !== dst.buffer) { rt.copyBytes(src.buffer, so * 4, dst.buffer, d0 * 4, n * 4); return; }
  // Same buffer (possibly overlapping ranges): go through a scratch copy, like memmove.
  const t = rt.temp(n, src.dtype);
  rt.copyBytes(src.buffer, so * 4, t.buffer, 0, n * 4);
  rt.copyBytes(t.buffer, 0, dst.buffer, d0 * 4, n * 4);
}

const stridedIndex = `
fn srcIndex(o: u32, shape: array<vec4<u32>, 2>, strides: array<vec4<i32>, 2>, offset: i32, nd: u32) -> u32 {
  var rem = o;
  var s = offset;
  for (var d = i32(nd) - 1; d >= 0; d--) {
    let ext = shape[d / 4][d % 4];
    let c = rem % ext;
    rem = rem / ext;
    s += i32(c) * strides[d / 4][d % 4];
  }
  return u32(s);
}`;

export function copyStrided(rt: Runtime, src: GpuBuf, view: Strided, dst: GpuBuf): void {
  checkDims(view);
  const n = view.shape.reduce((p, s) => p * s, 1);
  if (n === 0) return;
  // A contiguous range (a slice along the leading axis, a reshape): a flat copy.
  if (flatKind(view) === 'c') { copy(rt, src, view.offset, dst, 0, n); return; }
  const spec: KernelSpec = { key: 'copyStrided',
    bindings: [['s', 'u32', 'r'], ['o', 'u32', 'w']],
    uniform: 'shape: array<vec4<u32>, 2>, strides: array<vec4<i32>, 2>, offset: i32, nd: u32, n: u32', code: () => `
${stridedIndex}
${flatMain('  if (i >= p.n) { return; }\n  o[i] = s[srcIndex(i, p.shape, p.strides, p.offset, p.nd)];')}` };
  const u = new Uniform().u(...pad8(view.shape.map((x) => Math.max(x, 1)))).i(...pad8(view.strides)).i(view.offset).u(view.shape.length, n);
  rt.dispatch(spec, [src, dst], u, groups(rt, n));
}

/** 'c': reads element offset + i (contiguous over the output), 's': one element (all strides 0), else null. */
function flatKind(v: Strided): 'c' | 's' | null {
  let expect = 1, contiguous = true, scalar = true;
  for (let d = v.shape.length - 1; d >= 0; d--) {
    if (v.shape[d] === 1) continue;
    if (v.strides[d] !== 0) scalar = false;
    if (v.strides[d] !== expect) contiguous = false;
    expect *= v.shape[d];
  }
  return scalar ? 's' : contiguous ? 'c' : null;
}

export function binary(rt: Runtime, op: BinaryOp, a: GpuBuf, av: Strided, b: GpuBuf, bv: Strided, out: GpuBuf): void {
  checkDims(av); checkDims(bv);
  const n = out.length;
  const ka = flatKind(av), kb = flatKind(bv);
  if (ka && kb) {
    // Same-shape and scalar operands (residual adds, gradient sums, scalings): no per-element index math.
    // Each thread takes FLAT_PER elements one grid apart (coalesced), all loads issued before the
    // stores: on the H200 twice the throughput of one element per thread on the logits' 262M.
    const at = (v: string, k: 'c' | 's', off: string, e: string) => `${v}[${k === 'c' ? `${off} + ${e}` : off}]`;
    const K = [...Array(FLAT_PER).keys()];
    const flat: KernelSpec = { key: `binary:${op}:${a.dtype}${b.dtype}${out.dtype}:${ka}${kb}`,
      bindings: [['A', `${ty(a.dtype)}`, 'r'], ['B', `${ty(b.dtype)}`, 'r'], ['O', `${ty(out.dtype)}`, 'w']],
      uniform: 'oa: u32, ob: u32, n: u32', code: () => `
${mathFns}
fn bop(a: f32, b: f32) -> f32 { return ${binaryExpr[op]}; }
${flatMain(`  let T = nwg.x * nwg.y * ${WG}u;
${K.map((k) => `  let e${k} = i + ${k}u * T;
  var a${k} = 0.0;
  var b${k} = 0.0;
  if (e${k} < p.n) { a${k} = f32(${at('A', ka, 'p.oa', `e${k}`)}); b${k} = f32(${at('B', kb, 'p.ob', `e${k}`)}); }`).join('\n')}
${K.map((k) => `  if (e${k} < p.n) { O[e${k}] = ${ty(out.dtype)}(bop(a${k}, b${k})); }`).join('\n')}`)}` };
    rt.dispatch(flat, [a, b, out], new Uniform().u(av.offset, bv.offset, n), groups(rt, Math.ceil(n / FLAT_PER)));
    return;
  }
  const spec: KernelSpec = { key: `binary:${op}:${a.dtype}${b.dtype}${out.dtype}`,
    bindings: [['A', `${ty(a.dtype)}`, 'r'], ['B', `${ty(b.dtype)}`, 'r'], ['O', `${ty(out.dtype)}`, 'w']],
    uniform: 'shape: array<vec4<u32>, 2>, sa: array<vec4<i32>, 2>, sb: array<vec4<i32>, 2>, oa: i32, ob: i32, nd: u32, n: u32', code: () => `
${mathFns}
${stridedIndex}
${flatMain(`  if (i >= p.n) { return; }
  let a = f32(A[srcIndex(i, p.shape, p.sa, p.oa, p.nd)]);
  let b = f32(B[srcIndex(i, p.shape, p.sb, p.ob, p.nd)]);
  O[i] = ${ty(out.dtype)}(${binaryExpr[op]});`)}` };
  const u = new Uniform().u(...pad8(av.shape.map((x) => Math.max(x, 1)))).i(...pad8(av.strides)).i(...pad8(bv.strides))
    .i(av.offset, bv.offset).u(av.shape.length, n);
  rt.dispatch(spec, [a, b, out], u, groups(rt, n));
}

export function unary(rt: Runtime, op: UnaryOp | 'identity', a: GpuBuf, out: GpuBuf, alpha: number, beta: number): void {
  const n = out.length;
  const spec: KernelSpec = { key: `unary:${op}:${a.dtype}${out.dtype}`,
    bindings: [['A', `${ty(a.dtype)}`, 'r'], ['O', `${ty(out.dtype)}`, 'w']],
    uniform: 'n: u32, alpha: f32, beta: f32', code: () => `
${mathFns}
${flatMain(`  if (i >= p.n) { return; }
  let x = p.alpha * f32(A[i]) + p.beta;
  O[i] = ${ty(out.dtype)}(${unaryExpr[op]});`)}` };
  rt.dispatch(spec, [a, out], new Uniform().u(n).f(alpha, beta), groups(rt, n));
}

export function unaryBackward(rt: Runtime, op: UnaryOp, x: GpuBuf, y: GpuBuf, dy: GpuBuf, dx: GpuBuf): void {
  const n = dx.length;
  const spec: KernelSpec = { key: `unaryBackward:${op}`,
    bindings: [['X', 'f32', 'r'], ['Y', 'f32', 'r'], ['G', 'f32', 'r'], ['O', 'f32', 'w']],
    uniform: 'n: u32', code: () => `
${mathFns}
${gtanh}
${flatMain(`  if (i >= p.n) { return; }
  let x = X[i];
  let y = Y[i];
  O[i] = G[i] * (${gradExpr[op]});`)}` };
  rt.dispatch(spec, [x, y, dy, dx], new Uniform().u(n), groups(rt, n));
}

/** SwiGLU forward in one pass (silu as in the unary kernel). */
export function swiglu(rt: Runtime, gate: GpuBuf, up: GpuBuf, n: number, out: GpuBuf): void {
  const spec: KernelSpec = { key: 'swiglu', bindings: [['A', 'f32', 'r'], ['B', 'f32', 'r'], ['O', 'f32', 'w']], uniform: 'n: u32', code: () => `
${flatMain(`  if (i >= p.n) { return; }
  let x = A[i];
  O[i] = (x / (1.0 + exp(-x))) * B[i];`)}` };
  rt.dispatch(spec, [gate, up, out], new Uniform().u(n), groups(rt, n));
}

/** SwiGLU backward in one pass: both input gradients from gate, up and dy. */
export function swigluBackward(rt: Runtime, gate: GpuBuf, up: GpuBuf, dy: GpuBuf, n: number, dgate: GpuBuf, dup: GpuBuf): void {
  const spec: KernelSpec = { key: 'swigluBackward',
    bindings: [['A', 'f32', 'r'], ['B', 'f32', 'r'], ['G', 'f32', 'r'], ['DA', 'f32', 'w'], ['DB', 'f32', 'w']], uniform: 'n: u32', code: () => `
${flatMain(`  if (i >= p.n) { return; }
  let x = A[i];
  let g = G[i];
  let s = 1.0 / (1.0 + exp(-x));
  DA[i] = g * B[i] * (s * (1.0 + x * (1.0 - s)));
  DB[i] = g * (x / (1.0 + exp(-x)));`)}` };
  rt.dispatch(spec, [gate, up, dy, dgate, dup], new Uniform().u(n), groups(rt, n));
}

/** Rows whose index is out of range are written as zeros (a GPU kernel cannot throw). */
export function gather(rt: Runtime, table: GpuBuf, idx: GpuBuf, n: number, width: number, out: GpuBuf): void {
  const rows = Math.floor(table.length / width);
  const spec: KernelSpec = { key: 'gather',
    bindings: [['T', 'u32', 'r'], ['I', 'i32', 'r'], ['O', 'u32', 'w']],
    uniform: 'total: u32, width: u32, rows: i32', code: () => `
${flatMain(`  if (i >= p.total) { return; }
  let r = I[i / p.width];
  O[i] = select(0u, T[u32(r) * p.width + i % p.width], r >= 0 && r < p.rows);`)}` };
  rt.dispatch(spec, [table, idx, out], new Uniform().u(n * width, width).i(rows), groups(rt, n * width));
}

/** Count, first position and value of the indices outside [lo, hi) (see Kernels.findOutOfRange). */
export function findOutOfRange(rt: Runtime, idx: GpuBuf, n: number, lo: number, hi: number, skip: number | null, found: GpuBuf): void {
  const u = new Uniform().u(n, skip === null ? 0 : 1).i(lo, hi, skip ?? 0);
  const io = { bindings: [['I', 'i32', 'r'], ['F', 'atomic<i32>', 'w']], uniform: 'n: u32, hasSkip: u32, lo: i32, hi: i32, skip: i32' } as const;
  rt.dispatch({ key: 'findOutOfRange:init', ...io, code: () => `
${flatMain('  if (i == 0u) { atomicStore(&F[0], 0); atomicStore(&F[1], 2147483647); atomicStore(&F[2], 0); }')}` }, [idx, found], u, [1]);
  rt.dispatch({ key: 'findOutOfRange', ...io, code: () => `
${flatMain(`  if (i >= p.n) { return; }
  let v = I[i];
  if ((p.hasSkip == 1u && v == p.skip) || (v >= p.lo && v < p.hi)) { return; }
  atomicAdd(&F[0], 1);
  atomicMin(&F[1], i32(i));`)}` }, [idx, found], u, groups(rt, n));
  rt.dispatch({ key: 'findOutOfRange:value', ...io, code: () => `
${flatMain('  if (i == 0u && atomicLoad(&F[0]) > 0) { atomicStore(&F[2], I[atomicLoad(&F[1])]); }')}` }, [idx, found], u, [1]);
}

/** Above this many rows the O(n^2) link pass of scatterAdd costs more than walking the rows per column. */
const SCATTER_LINK_MAX = 32768;

/**
 * table[idx[r], :] += src[r, :] with duplicates added in row order, so the result is the serial loop's
 * to the bit. A link pass gives each row the next row with the same index (-1: none) and whether an
 * earlier row has it; then one thread per (first row of an index, column) walks that chain, adding in
 * order. Up to SCATTER_LINK_MAX rows; above, one thread per column walks all the rows.
 */
export function scatterAdd(rt: Runtime, src: GpuBuf, idx: GpuBuf, n: number, width: number, table: GpuBuf): void {
  if (n > SCATTER_LINK_MAX) {
    const spec: KernelSpec = { key: 'scatterAdd:serial',
      bindings: [['S', 'f32', 'r'], ['I', 'i32', 'r'], ['T', 'f32', 'w']],
      uniform: 'n: u32, width: u32', code: () => `
${flatMain(`  if (i >= p.width) { return; }
  for (var r = 0u; r < p.n; r++) {
    let dst = u32(I[r]) * p.width + i;
    T[dst] = T[dst] + S[r * p.width + i];
  }`)}` };
    rt.dispatch(spec, [src, idx, table], new Uniform().u(n, width), groups(rt, width));
    return;
  }
  const links = rt.temp(2 * n, 'i32');
  rt.dispatch({ key: 'scatterAdd:links', bindings: [['I', 'i32', 'r'], ['L', 'i32', 'w']], uniform: 'n: u32', code: () => `
${flatMain(`  if (i >= p.n) { return; }
  let v = I[i];
  var next = -1;
  for (var j = i + 1u; j < p.n; j++) { if (I[j] == v) { next = i32(j); break; } }
  var first = 1;
  for (var j = i; j > 0u; j--) { if (I[j - 1u] == v) { first = 0; break; } }
  L[i] = next;
  L[p.n + i] = first;`)}` }, [idx, links], new Uniform().u(n), groups(rt, n));
  rt.dispatch({ key: 'scatterAdd', bindings: [['S', 'f32', 'r'], ['I', 'i32', 'r'], ['L', 'i32', 'r'], ['T', 'f32', 'w']],
    uniform: 'n: u32, width: u32', code: () => `
${flatMain(`  if (i >= p.n * p.width) { return; }
  let r = i / p.width;
  let c = i % p.width;
  if (L[p.n + r] == 0) { return; }
  let dst = u32(I[r]) * p.width + c;
  var acc = T[dst];
  var j = i32(r);
  loop {
    acc = acc + S[u32(j) * p.width + c];
    j = L[u32(j)];
    if (j < 0) { break; }
  }
  T[dst] = acc;`)}` }, [src, idx, links, table], new Uniform().u(n, width), groups(rt, n * width));
}

export function rope(rt: Runtime, x: GpuBuf, pos: GpuBuf, b: number, l: number, h: number, d: number, theta: number,
  interleaved: boolean, sign: number, out: GpuBuf): void {
  const half = d / 2;
  const total = b * l * h * half;
  const spec: KernelSpec = { key: `rope:${interleaved}`,
    bindings: [['X', 'f32', 'r'], ['POS', 'i32', 'r'], ['O', 'f32', 'w']],
    uniform: 'total: u32, l: u32, h: u32, d: u32, log2theta: f32, sign: f32', code: () => `
${sincosFn}
${flatMain(`  if (i >= p.total) { return; }
  let half = p.d / 2u;
  let k = i % half;
  let row = i / half;
  let t = (row / p.h) % p.l;
  let cs = sincos(f32(POS[t]) * exp2(-2.0 * f32(k) / f32(p.d) * p.log2theta));
  let c = cs.y;
  let s = p.sign * cs.x;
  let base = row * p.d;
  ${interleaved ? 'let i0 = base + 2u * k; let i1 = i0 + 1u;' : 'let i0 = base + k; let i1 = i0 + half;'}
  let x0 = X[i0];
  let x1 = X[i1];
  O[i0] = x0 * c - x1 * s;
  O[i1] = x1 * c + x0 * s;`)}` };
  rt.dispatch(spec, [x, pos, out], new Uniform().u(total, l, h, d).f(Math.log2(theta), sign), groups(rt, total));
}

export function conv1d(rt: Runtime, x: GpuBuf, w: GpuBuf, bias: GpuBuf | null, b: number, l: number, c: number, k: number, out: GpuBuf): void {
  const total = b * l * c;
  const hasBias = bias !== null;
  const spec: KernelSpec = {
    key: `conv1d:${hasBias}`, bindings: [['X', 'f32', 'r'], ['W', 'f32', 'r'], hasBias && ['BIAS', 'f32', 'r'], ['O', 'f32', 'w']],
    uniform: 'total: u32, l: u32, c: u32, k: u32', code: () => `
${flatMain(`  if (i >= p.total) { return; }
  let ch = i % p.c;
  let t = (i / p.c) % p.l;
  let bi = i / (p.c * p.l);
  var acc = ${hasBias ? 'BIAS[ch]' : '0.0'};
  for (var j = 0u; j < p.k; j++) {
    let src = i32(t) - i32(p.k - 1u) + i32(j);
    if (src >= 0) { acc += W[ch * p.k + j] * X[(bi * p.l + u32(src)) * p.c + ch]; }
  }
  O[i] = acc;`)}` };
  rt.dispatch(spec, hasBias ? [x, w, bias!, out] : [x, w, out], new Uniform().u(total, l, c, k), groups(rt, total));
}

export function conv1dBackward(rt: Runtime, x: GpuBuf, w: GpuBuf, dy: GpuBuf, b: number, l: number, c: number, k: number,
  dx: GpuBuf, dw: GpuBuf, dbias: GpuBuf | null): void {
  const u = () => new Uniform().u(b, l, c, k);
  const uniform = 'b: u32, l: u32, c: u32, k: u32';
  // dx[src] = sum_j dy[src + (k - 1) - j] * w[j]: each thread owns one dx element.
  rt.dispatch({ key: 'conv1dBackward:dx', bindings: [['W', 'f32', 'r'], ['G', 'f32', 'r'], ['DX', 'f32', 'w']], uniform, code: () => `
${flatMain(`  if (i >= p.b * p.l * p.c) { return; }
  let ch = i % p.c;
  let s = (i / p.c) % p.l;
  let bi = i / (p.c * p.l);
  var acc = 0.0;
  for (var j = 0u; j < p.k; j++) {
    let t = s + (p.k - 1u) - j;
    if (t < p.l) { acc += G[(bi * p.l + t) * p.c + ch] * W[ch * p.k + j]; }
  }
  DX[i] = acc;`)}` }, [w, dy, dx], u(), groups(rt, b * l * c));
  rt.dispatch({ key: 'conv1dBackward:dw', bindings: [['X', 'f32', 'r'], ['G', 'f32', 'r'], ['DW', 'f32', 'w']], uniform, code: () => `
${flatMain(`  if (i >= p.c * p.k) { return; }
  let ch = i / p.k;
  let j = i % p.k;
  var acc = 0.0;
  for (var bi = 0u; bi < p.b; bi++) {
    for (var t = 0u; t < p.l; t++) {
      let src = i32(t) - i32(p.k - 1u) + i32(j);
      if (src >= 0) { acc += G[(bi * p.l + t) * p.c + ch] * X[(bi * p.l + u32(src)) * p.c + ch]; }
    }
  }
  DW[i] = acc;`)}` }, [x, dy, dw], u(), groups(rt, c * k));
  if (!dbias) return;
  rt.dispatch({ key: 'conv1dBackward:db', bindings: [['G', 'f32', 'r'], ['DB', 'f32', 'w']], uniform, code: () => `
${flatMain(`  if (i >= p.c) { return; }
  var acc = 0.0;
  for (var r = 0u; r < p.b * p.l; r++) { acc += G[r * p.c + i]; }
  DB[i] = acc;`)}` }, [dy, dbias], u(), groups(rt, c));
}

export interface AdamHyper { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number; gradScale: number }

/**
 * The uniform block of an AdamW update (also rebuilt by replays whose step or lr changes). Row-sparse
 * updates: q0 is the first gradient row of the dispatch's gradient part, [r0, r1) the parameter rows its
 * parameter part holds (the whole table when it is not split); dense updates ignore the three.
 */
export function adamUniform(n: number, width: number, h: AdamHyper, q0: number, r0: number, r1: number): Uniform {
  const bc1 = 1 - Math.pow(h.beta1, h.step), bc2 = 1 - Math.pow(h.beta2, h.step);
  return new Uniform().u(n, width, q0, r0, r1).f(h.beta1, h.beta2, h.lr / bc1, 1 - h.lr * h.weightDecay, bc2, h.eps, h.gradScale);
}

/**
 * AdamW over a dense gradient or a coalesced row-sparse one (rows [nRows], sorted, repeats after a
 * row's first entry skipped). Split storage: the parameter and its moments share one split, a dense
 * gradient the same one; a row-sparse update runs once per (parameter part, gradient part).
 */
export function adamw(rt: Runtime, param: GpuBuf, grad: GpuBuf, m: GpuBuf, v: GpuBuf, rows: GpuBuf | null, nRows: number,
  width: number, h: AdamHyper, scale: GpuBuf | null = null): void {
  const sparse = rows !== null, scaled = scale !== null;
  const pp = splitParts(param), mp = splitParts(m), vp = splitParts(v), gp = splitParts(grad);
  const same = (a: typeof pp) => a.length === pp.length && a.every((q, j) => q.length === pp[j].length);
  if (!same(mp) || !same(vp)) throw new Error('internal: adamw moments are not split like their parameter');
  if (!sparse && !same(gp)) throw new Error(`adamw: the gradient (${grad.length} values) is not stored like its parameter (${param.length})`);
  const spec: KernelSpec = {
    key: `adamw:${sparse}:${scaled}`,
    bindings: [['W', 'f32', 'w'], ['G', 'f32', 'r'], ['M', 'f32', 'w'], ['V', 'f32', 'w'], sparse && ['R', 'i32', 'r'], scaled && ['S', 'f32', 'r']],
    uniform: 'n: u32, width: u32, q0: u32, r0: u32, r1: u32, b1: f32, b2: f32, stepSize: f32, decay: f32, bc2: f32, eps: f32, scale: f32', code: () => `
${flatMain(`  if (i >= p.n) { return; }
  ${sparse ? `let r = p.q0 + i / p.width;
  if (r > 0u && R[r] == R[r - 1u]) { return; }
  let row = u32(R[r]);
  if (row < p.r0 || row >= p.r1) { return; }` : ''}
  let pi = ${sparse ? '(row - p.r0) * p.width + i % p.width' : 'i'};
  let g = G[i] * ${scaled ? '(p.scale * S[0])' : 'p.scale'};
  let m = p.b1 * M[pi] + (1.0 - p.b1) * g;
  let v = p.b2 * V[pi] + (1.0 - p.b2) * g * g;
  M[pi] = m;
  V[pi] = v;
  W[pi] = W[pi] * p.decay - p.stepSize * m / (sqrt(v / p.bc2) + p.eps);`)}` };
  const base = { ...h };
  const one = (j: number, g: GpuBuf, n: number, q0: number, r0: number, r1: number) => {
    const bufs = [pp[j].buf, g, mp[j].buf, vp[j].buf];
    if (sparse) bufs.push(rows!);
    if (scaled) bufs.push(scale!);
    rt.dispatch(spec, bufs, adamUniform(n, width, h, q0, r0, r1), groups(rt, n), {
      name: 'adam',
      uniformFor: (o) => {
        const a = o as { step: number; lr?: number };
        return adamUniform(n, width, { ...base, step: a.step, lr: a.lr ?? base.lr }, q0, r0, r1);
      },
    });
  };
  if (!sparse) { pp.forEach((q, j) => one(j, gp[j].buf, q.length, 0, 0, 0)); return; }
  pp.forEach((q, j) => {
    const r0 = q.start / width, r1 = r0 + q.length / width;
    for (const gq of gp) {
      const q0 = gq.start / width, q1 = Math.min(nRows, (gq.start + gq.length) / width);
      if (q1 > q0) one(j, gq.buf, (q1 - q0) * width, q0, r0, r1);
    }
  });
}
