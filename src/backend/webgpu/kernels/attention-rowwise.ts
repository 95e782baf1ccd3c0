// The first fused attention kernels, kept as a cross-check for bench/probes/webgpu-attention-probe.ts
// (attention.ts holds the production ones). One thread per query row (forward, dq) or per
// key row (dk/dv) with the other side streamed through workgroup memory in tiles; online softmax in the
// forward, recomputation of the probabilities from the saved log-sum-exp in the backward.
// Layouts match the CPU kernel: q, o, dO [B, L, H, D]; k, v [B, S, Hkv, D]; lse [B, H, L].
// Query head h reads kv head h / (H / Hkv); causal queries are the last L of S positions.
//
// The WGSL is generated per head dimension: every per-thread vector of length D is written out as
// D4 = ceil(D / 4) named vec4 registers and every inner product over D is unrolled. Shader compilers
// keep dynamically indexed per-thread arrays in slow local memory, which made the looped version
// several times slower. Workgroup tiles hold rows of D4 vec4 (zero-padded past D), so one code path
// serves any D: global accesses are vec4 when D % 4 == 0 and per-component otherwise.
import type { GpuBuf } from '../pool.ts';
import { type Binding, type Runtime, Uniform } from '../runtime.ts';
import { infFns, NEG_INF } from './common.ts';

import type { AttnParams } from './attention.ts';

const ROWS = 64; // threads (rows) per workgroup

const range = (n: number): number[] => [...Array(n).keys()];

/** Rows per tile: two tiles of D4 vec4 per row (plus `extra` bytes per row) must fit, at most 64. */
function tileRows(rt: Runtime, d4: number, extra: number): number {
  let t = 64;
  while (t > 1 && t * (2 * d4 * 16 + extra) > rt.maxWorkgroupStorage) t /= 2;
  return t;
}

function check(p: AttnParams): void {
  if (!Number.isInteger(p.d) || p.d < 1 || p.d > 256) throw new Error(`webgpu attention supports head dimensions 1..256, got ${p.d}`);
}

const uniform = 'b: u32, l: u32, s: u32, h: u32, hkv: u32, scale: f32, causal: u32';
/** Storage bindings of the q/k/v/o/grad element type (f32 or vec4<f32>). */
const io = (g: Gen, access: 'r' | 'w', ...names: string[]): Binding[] => names.map((n) => [n, g.elem, access]);
const uniformOf = (p: AttnParams) => new Uniform().u(p.b, p.l, p.s, p.h, p.hkv).f(p.scale).u(p.causal ? 1 : 0);

/** Code generation for one head dimension. Row indices count rows of D floats in a global buffer. */
class Gen {
  readonly d4: number;
  readonly vec: boolean;
  readonly cs: number[];
  constructor(readonly d: number) {
    this.d4 = Math.ceil(d / 4);
    this.vec = d % 4 === 0;
    this.cs = range(this.d4);
  }
  /** WGSL element type of the global q/k/v/o/grad buffers. */
  get elem(): string { return this.vec ? 'vec4<f32>' : 'f32'; }
  /** Expression for the c-th vec4 of global row `row` (components past D read as zero). */
  read(buf: string, row: string, c: number): string {
    if (this.vec) return `${buf}[${row} * ${this.d4}u + ${c}u]`;
    const comp = range(4).map((k) => (4 * c + k < this.d ? `${buf}[${row} * ${this.d}u + ${4 * c + k}u]` : '0.0'));
    return `vec4<f32>(${comp.join(', ')})`;
  }
  /** Statement storing vec4 expression `val` as the c-th vec4 of global row `row`. */
  write(buf: string, row: string, c: number, val: string): string {
    if (this.vec) return `${buf}[${row} * ${this.d4}u + ${c}u] = ${val};`;
    const parts = range(4).filter((k) => 4 * c + k < this.d).map((k) => `${buf}[${row} * ${this.d}u + ${4 * c + k}u] = t.${'xyzw'[k]};`);
    return `{ let t = ${val}; ${parts.join(' ')} }`;
  }
  /** Declarations `prefix0..` holding a global row (times `mul`, if given). */
  regs(prefix: string, buf: string, row: string, mul = ''): string {
    return this.cs.map((c) => `  let ${prefix}${c} = ${this.read(buf, row, c)}${mul};`).join('\n');
  }
  zeros(prefix: string): string {
    return this.cs.map((c) => `  var ${prefix}${c} = vec4<f32>(0.0);`).join('\n');
  }
  /** Unrolled inner product of registers `prefix*` with the tile row starting at vec4 index `base`. */
  dot(prefix: string, tile: string, base: string): string {
    let e = `${prefix}0 * ${tile}[${base}]`;
    for (const c of this.cs.slice(1)) e = `fma(${prefix}${c}, ${tile}[${base} + ${c}u], ${e})`;
    return `dot(${e}, vec4<f32>(1.0))`;
  }
  /** acc* += w * tile row at `base`. */
  axpy(acc: string, w: string, tile: string, base: string, indent = '      '): string {
    return this.cs.map((c) => `${indent}${acc}${c} = fma(vec4<f32>(${w}), ${tile}[${base} + ${c}u], ${acc}${c});`).join('\n');
  }
  /**
   * Cooperative load of `t` tile rows into workgroup memory; tile row r is global row `rowOf(r)`,
   * rows at or past `count` are zero.
   */
  load(dst: string, src: string, t: number, count: string, rowOf: string): string {
    const body = this.vec
      ? `v = ${src}[gr * ${this.d4}u + c];`
      : range(4).map((k) => `if (c * 4u + ${k}u < ${this.d}u) { v.${'xyzw'[k]} = ${src}[gr * ${this.d}u + c * 4u + ${k}u]; }`).join(' ');
    return `
    for (var e = lid; e < ${t * this.d4}u; e += ${ROWS}u) {
      let r = e / ${this.d4}u;
      let c = e % ${this.d4}u;
      var v = vec4<f32>(0.0);
      if (r < ${count}) { let gr = ${rowOf}; ${body} }
      ${dst}[e] = v;
    }`;
  }
}

function forwardCode(g: Gen, t: number): string {
  const D4 = g.d4;
  // Keys scored together per online-softmax step: enough independent dot products to hide latency,
  // few enough that the unrolled code stays moderate for large D.
  const C = Math.min(t, D4 >= 32 ? 8 : 16);
  const ks = range(C);
  const kRow = '(b * p.s + k0 + r) * p.hkv + hk';
  let cmax = 's0';
  for (const u of ks.slice(1)) cmax = `max(${cmax}, s${u})`;
  return `
var<workgroup> Ks: array<vec4<f32>, ${t * D4}>;
var<workgroup> Vs: array<vec4<f32>, ${t * D4}>;
${infFns}
@compute @workgroup_size(${ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wid.y;
  let b = wid.z;
  let hk = h / (p.h / p.hkv);
  let i = wid.x * ${ROWS}u + lid;
  let valid = i < p.l;
  let shift = p.s - p.l;
  // Last key any row of this block may see (the loop bound is uniform across the workgroup).
  var kEnd = p.s;
  if (p.causal == 1u) { kEnd = min(p.s, wid.x * ${ROWS}u + ${ROWS - 1}u + shift + 1u); }
  let lim = i + shift;
  let qr = (b * p.l + min(i, p.l - 1u)) * p.h + h;
${g.regs('q', 'Q', 'qr', ' * p.scale')}
${g.zeros('acc')}
  var m = ${NEG_INF};
  var l = 0.0;
  for (var k0 = 0u; k0 < kEnd; k0 += ${t}u) {
    workgroupBarrier();
    ${g.load('Ks', 'K', t, 'kEnd - k0', kRow)}
    ${g.load('Vs', 'V', t, 'kEnd - k0', kRow)}
    workgroupBarrier();
    let n = min(${t}u, kEnd - k0);
    for (var jc = 0u; jc < n; jc += ${C}u) {
${ks.map((u) => `      let kb${u} = (jc + ${u}u) * ${D4}u;
      let j${u} = k0 + jc + ${u}u;
      let s${u} = select(${NEG_INF}, ${g.dot('q', 'Ks', `kb${u}`)}, valid && j${u} < kEnd && (p.causal == 0u || j${u} <= lim));`).join('\n')}
      let cm = ${cmax};
      if (cm > ${NEG_INF}) {
        let mNew = max(m, cm);
        let corr = exp(m - mNew);
${ks.map((u) => `        let p${u} = exp(s${u} - mNew);`).join('\n')}
        l = l * corr + ${ks.map((u) => `p${u}`).join(' + ')};
${g.cs.map((c) => `        acc${c} *= corr;`).join('\n')}
${ks.map((u) => g.axpy('acc', `p${u}`, 'Vs', `kb${u}`, '        ')).join('\n')}
        m = mNew;
      }
    }
  }
  if (!valid) { return; }
  let inv = 1.0 / l;
${g.cs.map((c) => `  ${g.write('O', 'qr', c, `acc${c} * inv`)}`).join('\n')}
  LSE[(b * p.h + h) * p.l + i] = m + log(l);
}`;
}

export function attentionForwardRowwise(rt: Runtime, q: GpuBuf, k: GpuBuf, v: GpuBuf, o: GpuBuf, lse: GpuBuf, p: AttnParams): void {
  check(p);
  const g = new Gen(p.d), T = tileRows(rt, g.d4, 0);
  rt.dispatch({
    key: `attnRwFwd:${p.d}:${T}`, bindings: [...io(g, 'r', 'Q', 'K', 'V'), ...io(g, 'w', 'O'), ['LSE', 'f32', 'w']], uniform,
    code: () => forwardCode(g, T),
  },
    [q, k, v, o, lse], uniformOf(p), [Math.ceil(p.l / ROWS), p.h, p.b]);
}

function dsumCode(g: Gen): string {
  return `
@compute @workgroup_size(${ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = wid.x * ${ROWS}u + lid;
  if (i >= p.l) { return; }
  let h = wid.y;
  let b = wid.z;
  let row = (b * p.l + i) * p.h + h;
  var s = vec4<f32>(0.0);
${g.cs.map((c) => `  s = fma(${g.read('O', 'row', c)}, ${g.read('G', 'row', c)}, s);`).join('\n')}
  DS[(b * p.h + h) * p.l + i] = dot(s, vec4<f32>(1.0));
}`;
}

function dqCode(g: Gen, t: number): string {
  const D4 = g.d4;
  const kRow = '(b * p.s + k0 + r) * p.hkv + hk';
  return `
var<workgroup> Ks: array<vec4<f32>, ${t * D4}>;
var<workgroup> Vs: array<vec4<f32>, ${t * D4}>;
@compute @workgroup_size(${ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wid.y;
  let b = wid.z;
  let hk = h / (p.h / p.hkv);
  let i = wid.x * ${ROWS}u + lid;
  let valid = i < p.l;
  let ic = min(i, p.l - 1u);
  let shift = p.s - p.l;
  var kEnd = p.s;
  if (p.causal == 1u) { kEnd = min(p.s, wid.x * ${ROWS}u + ${ROWS - 1}u + shift + 1u); }
  let lim = i + shift;
  let qr = (b * p.l + ic) * p.h + h;
${g.regs('qv', 'Q', 'qr', ' * p.scale')}
${g.regs('gv', 'G', 'qr')}
${g.zeros('acc')}
  let li = LSE[(b * p.h + h) * p.l + ic];
  let di = DS[(b * p.h + h) * p.l + ic];
  for (var k0 = 0u; k0 < kEnd; k0 += ${t}u) {
    workgroupBarrier();
    ${g.load('Ks', 'K', t, 'kEnd - k0', kRow)}
    ${g.load('Vs', 'V', t, 'kEnd - k0', kRow)}
    workgroupBarrier();
    let n = min(${t}u, kEnd - k0);
    for (var jj = 0u; jj < n; jj++) {
      let kb = jj * ${D4}u;
      let j = k0 + jj;
      let s = ${g.dot('qv', 'Ks', 'kb')};
      let dp = ${g.dot('gv', 'Vs', 'kb')};
      let ds = select(0.0, exp(s - li) * (dp - di), valid && (p.causal == 0u || j <= lim));
${g.axpy('acc', 'ds', 'Ks', 'kb')}
    }
  }
  if (!valid) { return; }
${g.cs.map((c) => `  ${g.write('DQ', 'qr', c, `acc${c} * p.scale`)}`).join('\n')}
}`;
}

function dkvCode(g: Gen, t: number): string {
  const D4 = g.d4;
  const qRow = '(b * p.l + q0 + r) * p.h + h';
  return `
var<workgroup> Qs: array<vec4<f32>, ${t * D4}>;
var<workgroup> Gs: array<vec4<f32>, ${t * D4}>;
var<workgroup> Ls: array<f32, ${t}>;
var<workgroup> Dl: array<f32, ${t}>;
@compute @workgroup_size(${ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let hk = wid.y;
  let b = wid.z;
  let j = wid.x * ${ROWS}u + lid;
  let valid = j < p.s;
  let jc = min(j, p.s - 1u);
  let shift = p.s - p.l;
  let group = p.h / p.hkv;
  // First query that sees any key of this block (uniform across the workgroup).
  var qStart = 0u;
  let j0 = wid.x * ${ROWS}u;
  if (p.causal == 1u && j0 > shift) { qStart = j0 - shift; }
  let kr = (b * p.s + jc) * p.hkv + hk;
${g.regs('kv', 'K', 'kr', ' * p.scale')}
${g.regs('vv', 'V', 'kr')}
${g.zeros('dk')}
${g.zeros('dv')}
  for (var gi = 0u; gi < group; gi++) {
    let h = hk * group + gi;
    for (var q0 = qStart - qStart % ${t}u; q0 < p.l; q0 += ${t}u) {
      workgroupBarrier();
      ${g.load('Qs', 'Q', t, 'p.l - q0', qRow)}
      ${g.load('Gs', 'G', t, 'p.l - q0', qRow)}
      for (var e = lid; e < ${t}u; e += ${ROWS}u) {
        let qi = min(q0 + e, p.l - 1u);
        Ls[e] = LSE[(b * p.h + h) * p.l + qi];
        Dl[e] = DS[(b * p.h + h) * p.l + qi];
      }
      workgroupBarrier();
      let n = min(${t}u, p.l - q0);
      for (var ii = 0u; ii < n; ii++) {
        let qb = ii * ${D4}u;
        let i = q0 + ii;
        let s = ${g.dot('kv', 'Qs', 'qb')};
        let dp = ${g.dot('vv', 'Gs', 'qb')};
        let pr = select(0.0, exp(s - Ls[ii]), valid && (p.causal == 0u || j <= i + shift));
        let ds = pr * (dp - Dl[ii]);
${g.axpy('dv', 'pr', 'Gs', 'qb', '        ')}
${g.axpy('dk', 'ds', 'Qs', 'qb', '        ')}
      }
    }
  }
  if (!valid) { return; }
${g.cs.map((c) => `  ${g.write('DK', 'kr', c, `dk${c} * p.scale`)}\n  ${g.write('DV', 'kr', c, `dv${c}`)}`).join('\n')}
}`;
}

export function attentionBackwardRowwise(rt: Runtime, q: GpuBuf, k: GpuBuf, v: GpuBuf, o: GpuBuf, dO: GpuBuf, lse: GpuBuf,
  dq: GpuBuf, dk: GpuBuf, dv: GpuBuf, p: AttnParams): void {
  check(p);
  const g = new Gen(p.d);
  // D_i = rowsum(dO * o) per (b, h, i).
  const dsum = rt.temp(p.b * p.h * p.l, 'f32');
  rt.dispatch({ key: `attnRwDsum:${p.d}`, bindings: [...io(g, 'r', 'O', 'G'), ['DS', 'f32', 'w']], uniform, code: () => dsumCode(g) },
    [o, dO, dsum], uniformOf(p), [Math.ceil(p.l / ROWS), p.h, p.b]);

  // dq: one thread per query row, key/value tiles streamed.
  const tq = tileRows(rt, g.d4, 0);
  rt.dispatch({
    key: `attnRwDq:${p.d}:${tq}`, bindings: [...io(g, 'r', 'Q', 'K', 'V', 'G'), ['LSE', 'f32', 'r'], ['DS', 'f32', 'r'], ...io(g, 'w', 'DQ')],
    uniform, code: () => dqCode(g, tq),
  },
    [q, k, v, dO, lse, dsum, dq], uniformOf(p), [Math.ceil(p.l / ROWS), p.h, p.b]);

  // dk, dv: one thread per key row of a kv head; every query head of its group and every query that
  // sees the key is streamed through workgroup memory, so no two threads write the same row.
  const tk = tileRows(rt, g.d4, 8);
  rt.dispatch({
    key: `attnRwDkv:${p.d}:${tk}`, bindings: [...io(g, 'r', 'Q', 'K', 'V', 'G'), ['LSE', 'f32', 'r'], ['DS', 'f32', 'r'], ...io(g, 'w', 'DK', 'DV')],
    uniform, code: () => dkvCode(g, tk),
  },
    [q, k, v, dO, lse, dsum, dk, dv], uniformOf(p), [Math.ceil(p.s / ROWS), p.hkv, p.b]);
}
