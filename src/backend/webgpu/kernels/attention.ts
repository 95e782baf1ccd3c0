// Fused attention, FlashAttention-2 style (O(L) memory): a workgroup owns a block of rows (query rows
// in the forward and dq passes, key rows in the dk/dv pass) and streams the other side in blocks.
// Layouts match the CPU kernel: q, o, dO [B, L, H, D]; k, v [B, S, Hkv, D]; lse [B, H, L].
// Query head h reads kv head h / (H / Hkv); causal queries are the last L of S positions.
//
// Threads form a TY x TX grid. Thread (ty, tx) owns the RO (4 or 8) block rows RO ty .. RO ty + RO - 1 and
// the streamed rows tx + TX c (c < CT), so a block pairs BO = RO TY owned rows with BS = TX CT streamed rows.
//  - Scores (S = Q K^T, and dO V^T in the backward) are a register-tiled micro-GEMM: both sides are
//    staged in workgroup memory DC vec4 columns at a time and each thread accumulates its 4 x CT tile
//    (RO + CT vec4 reads per RO CT vec4 multiply-adds).
//  - The weights of the second product (probabilities, or dS) go to workgroup memory packed as one
//    RO / 4 vec4 per (streamed row, ty), and the rows they weight (V, K, Q or dO) are staged VC rows at
//    a time; thread (ty, tx) accumulates its RO owned rows times the vec4 columns tx + TX u.
//  - Forward: online softmax; the row maximum is reduced across the TX threads of a row through
//    workgroup memory, the row sum is kept per thread and reduced once at the end.
//  - Backward: the probabilities are recomputed from the saved log-sum-exp. dq: a workgroup owns a
//    query block and streams key blocks. dk/dv: a workgroup owns a key block of one kv head and
//    streams the query blocks of every query head of its group, so no two workgroups write a row.
//  - Causal: key (query) blocks wholly masked for the owned block are skipped; the mask is applied per
//    element only in blocks that cross the diagonal or the ragged end of the streamed side (a
//    workgroup-uniform test per block).
//  - Softmax in base 2: the scale times log2(e) is folded into one fma before exp2; the saved
//    log-sum-exp stays in natural units.
// Tiles hold vec4 columns zero-padded past D, so one code path serves any D in 1..256: global
// accesses are vec4 when D % 4 == 0 and per-component otherwise.
import type { GpuBuf } from '../pool.ts';
import { type Binding, type Runtime, Uniform } from '../runtime.ts';
import { infFns, NEG_INF } from './common.ts';

export interface AttnParams { b: number; l: number; s: number; h: number; hkv: number; d: number; scale: number; causal: boolean }

/**
 * Tile shape of one pass: TY x TX threads, CT streamed rows per thread, DC / VC staging depths; with
 * `res` the owned rows are loaded into workgroup memory once, whole, instead of DC columns per step;
 * with `pf` (without `res`) each staged tile is read into registers one step ahead, so its
 * global reads overlap the previous step's arithmetic. `am` (for timing the alternative) masks every
 * block's scores element by element and takes exp of scaled scores, as the kernels first did; without
 * it the mask is applied only in blocks that cross the causal diagonal or the ragged end, and the
 * scale is folded into one fma before exp2 (log2-domain softmax).
 */
export interface AttnTile { ty: number; tx: number; ct: number; dc: number; vc: number; res?: boolean; ro?: number; pf?: boolean; am?: boolean }
export type AttnPass = 'fwd' | 'dq' | 'dkv' | 'dqs';

const range = (n: number): number[] => [...Array(n).keys()];
const LOG2E = '1.4426950408889634';
const LN2 = '0.6931471805599453';
const R = range(4); // vec4 components

/**
 * Production tiles by pass (chosen from H200 timings, bench/NOTES.md); shrunk to fit smaller adapters.
 * `rows` is the pass's owned rows over its whole grid (batch x heads x length): 8 owned rows per thread
 * (128-row blocks) pay only when that leaves enough workgroups to fill the GPU, so grids under
 * WIDE_BLOCKS such blocks take the 64-row tiles.
 */
function defaultTile(pass: AttnPass, d4: number, rows: number): AttnTile {
  const wide = rows >= WIDE_BLOCKS * 128;
  // Register prefetch (pf) on grids of at least 16k rows. Small grids (a pass of microseconds) skip it:
  // its unrolled stages cost SwiftShader's compiler seconds per head dimension (and, at D = 128, more
  // memory than a test machine has), which the CPU-emulated test runs would pay in every file.
  const pf = rows >= 16384;
  if (pass === 'fwd') return wide ? { ty: 16, tx: 16, ct: 2, dc: 8, vc: 32, ro: 8, pf } : { ty: 16, tx: 16, ct: 4, dc: 8, vc: 32, pf };
  if (pass === 'dq') return { ty: 16, tx: 16, ct: 4, dc: 4, vc: 16, pf };
  // dQ from stored dS: one product (no scores), no prefetch; 4 owned rows timed level with or ahead of 8.
  if (pass === 'dqs') return { ty: 16, tx: 16, ct: 4, dc: 1, vc: 16 };
  // dK/dV holds two accumulator sets (dK and dV), so prefetch registers need a smaller score tile at
  // D = 128: 2 streamed rows per thread there (measured on wide grids only; narrower D = 128 grids keep
  // the tile without prefetch). 4 owned rows with prefetch beat 8 without, and 8 rows with prefetch take
  // SwiftShader's compiler more memory and minutes than a test run has.
  if (d4 <= 16 && pf) return { ty: 16, tx: 16, ct: 4, dc: 2, vc: 16, pf };
  if (d4 <= 32 && wide) return { ty: 16, tx: 16, ct: 2, dc: 2, vc: 16, pf };
  return wide ? { ty: 16, tx: 16, ct: 2, dc: 2, vc: 8, ro: 8 } : { ty: 16, tx: 16, ct: 4, dc: 2, vc: 16 };
}
const WIDE_BLOCKS = 1024;

let override: Partial<Record<AttnPass, AttnTile>> = {};
/** Replaces the tiles of some passes (for timing alternatives); `null` restores the defaults. */
export function setAttentionTiles(t: Partial<Record<AttnPass, AttnTile>> | null): void { override = t ?? {}; }

const pow2 = (n: number) => Number.isInteger(n) && n >= 1 && (n & (n - 1)) === 0;

/** Workgroup bytes of a pass with tile `t` at D4 vec4 columns. */
function tileBytes(pass: AttnPass, t: AttnTile, d4: number): number {
  const rq = (t.ro ?? 4) / 4, bo = 4 * rq * t.ty, bs = t.tx * t.ct, dcp = t.dc % 2 ? t.dc : t.dc + 1, d4p = Math.ceil(d4 / t.tx) * t.tx;
  const pairs = pass === 'fwd' ? 1 : pass === 'dqs' ? 0 : 2, mats = pass === 'dkv' ? 2 : 1, weights = pass === 'dkv' ? 2 : 1;
  const sh = Math.max(pairs * ((t.res ? 0 : bo * t.dc) + bs * dcp), mats * t.vc * d4p);
  return 16 * (sh + (t.res ? pairs * bo * d4 : 0) + weights * bs * t.ty * rq + (pass === 'fwd' ? t.tx * t.ty * rq : 0));
}

/**
 * The tile a pass runs with on this adapter for `rows` owned rows over the grid (batch x heads x query
 * length for fwd and dq, batch x kv heads x key length for dkv): the chosen one, staging depths halved
 * until it fits.
 */
export function attentionTile(rt: Runtime, pass: AttnPass, d: number, rows: number): AttnTile {
  const d4 = Math.ceil(d / 4);
  const t = { ...(override[pass] ?? defaultTile(pass, d4, rows)) };
  if (![t.ty, t.tx, t.ct, t.dc, t.vc].every(pow2) || t.ty * t.tx > rt.maxInvocations || ![undefined, 4, 8].includes(t.ro)) {
    throw new Error(`webgpu attention: bad ${pass} tile ${JSON.stringify(t)} (powers of two, at most ${rt.maxInvocations} threads, 4 or 8 owned rows)`);
  }
  if (t.ro === 4) delete t.ro;
  if (!t.pf) delete t.pf;
  if (!t.am) delete t.am;
  t.dc = Math.min(t.dc, 2 ** Math.ceil(Math.log2(d4)));
  t.vc = Math.min(t.vc, t.tx * t.ct);
  // Resident owned rows are read at column c0 + step: the steps must tile D4 exactly.
  if (t.res) while (d4 % t.dc) t.dc /= 2;
  else delete t.res;
  while (tileBytes(pass, t, d4) > rt.maxWorkgroupStorage) {
    if (t.res) { delete t.res; continue; }
    const dcp = t.dc % 2 ? t.dc : t.dc + 1, d4p = Math.ceil(d4 / t.tx) * t.tx;
    const score = (t.ro ?? 4) * t.ty * t.dc + t.tx * t.ct * dcp, acc = t.vc * d4p;
    if (t.dc > 1 && (score >= acc || t.vc === 1)) t.dc /= 2;
    else if (t.vc > 1) t.vc /= 2;
    else if (t.ct > 1) { t.ct /= 2; t.vc = Math.min(t.vc, t.tx * t.ct); }
    else if (t.ro) delete t.ro;
    else throw new Error(`webgpu attention: no ${pass} tile for D=${d} fits ${rt.maxWorkgroupStorage} bytes of workgroup memory`);
  }
  return t;
}

function check(p: AttnParams): void {
  if (!Number.isInteger(p.d) || p.d < 1 || p.d > 256) throw new Error(`webgpu attention supports head dimensions 1..256, got ${p.d}`);
}

const uniform = 'b: u32, l: u32, s: u32, h: u32, hkv: u32, scale: f32, causal: u32';
const uniformOf = (p: AttnParams) => new Uniform().u(p.b, p.l, p.s, p.h, p.hkv).f(p.scale).u(p.causal ? 1 : 0);
/**
 * The dK/dV and stored-dS dQ passes run over a chunk of query rows [qa, qe): dS rows of the chunk are
 * stored at row i - qa of a qc-row scratch with row stride sp (keys rounded up to 4); `acc` adds the
 * chunk to the dK/dV partial sums already in DK/DV, `fin` (the last chunk) scales dK.
 */
const uniformChunk = `${uniform}, qa: u32, qe: u32, qc: u32, sp: u32, acc: u32, fin: u32`;
interface Chunk { qa: number; qe: number; qc: number; sp: number }
const uniformChunkOf = (p: AttnParams, c: Chunk) => uniformOf(p).u(c.qa, c.qe, c.qc, c.sp, c.qa > 0 ? 1 : 0, c.qe === p.l ? 1 : 0);
const dot4 = 'fn dot4(a: vec4<f32>, b: vec4<f32>, s: f32) -> f32 { return fma(a.w, b.w, fma(a.z, b.z, fma(a.y, b.y, fma(a.x, b.x, s)))); }';

/**
 * A tile of `rows` x `cols` vec4 of `src` staged in Sh at `off` (row stride `stride`) per k step, by the
 * plain loop (`Gen.stepLoads`) or through registers (`Gen.pipeline`); `valid` and `rowOf` take the block
 * or row base. `owned` (the pass's k-th owned tile) is instead loaded once into Ow with resident rows.
 */
interface StagedTile { src: string; rows: number; cols: number; off: number; stride: number; valid: (base: string) => string; rowOf: (base: string) => string; owned?: number }

/** A streamed key or value tile of the forward and dQ passes: rows from block base `kb` below kEnd. */
const kvTile = (src: string, off: number, rows: number, cols: number, stride: number): StagedTile =>
  ({ src, rows, cols, off, stride, valid: (kb) => `${kb} + r < kEnd`, rowOf: (kb) => kRow('r', kb) });

/** Code generation for one head dimension and tile. */
class Gen {
  readonly d4: number;
  readonly vec: boolean;
  readonly nt: number;
  readonly bo: number;
  readonly bs: number;
  readonly dcp: number;
  readonly d4p: number;
  readonly cs: number[];
  readonly us: number[];
  readonly res: boolean;
  /** Register prefetch (`pf`, which resident owned rows exclude). */
  readonly pf: boolean;
  /** Every block masked element by element, natural exp (`am`). */
  readonly am: boolean;
  /** Owned rows per thread and their vec4 count. */
  readonly ro: number;
  readonly rq: number;
  readonly rs: number[];
  constructor(readonly d: number, readonly t: AttnTile) {
    this.res = !!t.res;
    this.pf = !!t.pf && !this.res;
    this.am = !!t.am;
    this.ro = t.ro ?? 4;
    this.rq = this.ro / 4;
    this.rs = range(this.ro);
    this.d4 = Math.ceil(d / 4);
    this.vec = d % 4 === 0;
    this.nt = t.ty * t.tx;
    this.bo = this.ro * t.ty;
    this.bs = t.tx * t.ct;
    this.dcp = t.dc % 2 ? t.dc : t.dc + 1;
    this.d4p = Math.ceil(this.d4 / t.tx) * t.tx;
    this.cs = range(t.ct);
    this.us = range(this.d4p / t.tx);
  }
  get elem(): string { return this.vec ? 'vec4<f32>' : 'f32'; }
  io(access: 'r' | 'w', ...names: string[]): Binding[] { return names.map((n) => [n, this.elem, access]); }
  /** Thread ids, uniform helpers and the dot4 function shared by the passes. */
  header(sh: number, extra: string, owned = 0): string {
    return `
var<workgroup> Sh: array<vec4<f32>, ${sh}>;${this.res ? `\nvar<workgroup> Ow: array<vec4<f32>, ${owned * this.bo * this.d4}>;` : ''}
${extra}
${infFns}
${dot4}
@compute @workgroup_size(${this.nt})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let ty = lid / ${this.t.tx}u;
  let tx = lid % ${this.t.tx}u;
  let shift = p.s - p.l;
  let sc2 = p.scale * ${LOG2E};`;
  }
  /**
   * Applies `mask` (statements) only where `full` (a workgroup-uniform condition: no element of the
   * block is masked) fails, or everywhere with `am`.
   */
  edge(full: string, mask: string): string {
    return this.am ? mask : `    if (!(${full})) {\n${mask}\n    }`;
  }
  /** Statements setting vec4 `v` to vec4 column `col` of global row `gr` of `src` (components past D stay). */
  read(src: string): string {
    return this.vec
      ? `v = ${src}[gr * ${this.d4}u + col];`
      : R.map((k) => `if (col * 4u + ${k}u < ${this.d}u) { v.${'xyzw'[k]} = ${src}[gr * ${this.d}u + col * 4u + ${k}u]; }`).join(' ');
  }
  /**
   * Cooperative load of `rows` x `cols` vec4 (columns c0.. of global rows `rowOf`) into Sh at `off`
   * with row stride `stride`; rows failing `valid` and columns past D are zero.
   */
  load(src: string, off: number, rows: number, cols: number, stride: number, c0: string, valid: string, rowOf: string, dst = 'Sh'): string {
    const body = this.read(src);
    return `
      for (var e = lid; e < ${rows * cols}u; e += ${this.nt}u) {
        let r = e / ${cols}u;
        let col = ${c0} + e % ${cols}u;
        var v = vec4<f32>(0.0);
        if (${valid} && col < ${this.d4}u) { let gr = ${rowOf}; ${body} }
        ${dst}[${off}u + r * ${stride}u + e % ${cols}u] = v;
      }`;
  }
  /** Statement storing vec4 `val` as vec4 column `col` of global row `row` (components past D dropped). */
  write(buf: string, row: string, col: string, val: string): string {
    if (this.vec) return `${buf}[${row} * ${this.d4}u + ${col}] = ${val};`;
    const parts = R.map((k) => `if ((${col}) * 4u + ${k}u < ${this.d}u) { ${buf}[${row} * ${this.d}u + (${col}) * 4u + ${k}u] = t.${'xyzw'[k]}; }`);
    return `{ let t = ${val}; ${parts.join(' ')} }`;
  }
  /** The k-th owned tile of a pass (rows `valid` at global rows `rowOf`): DC columns per step in Sh. */
  ownedTile(k: number, src: string, valid: string, rowOf: string): StagedTile {
    return { src, rows: this.bo, cols: this.t.dc, off: k * this.bo * this.t.dc, stride: this.t.dc, valid: () => valid, rowOf: () => rowOf, owned: k };
  }
  /** Loads of the tiles of one k step at block base `blk` and column `c0` (owned ones only if not resident). */
  stepLoads(tiles: StagedTile[], blk: string, c0: string): string {
    return tiles.filter((x) => !(this.res && x.owned !== undefined))
      .map((x) => this.load(x.src, x.off, x.rows, x.cols, x.stride, c0, x.valid(blk), x.rowOf(blk))).join('');
  }
  /** With resident owned rows, the loads of every owned tile's whole rows into Ow, once. */
  onceLoads(tiles: StagedTile[]): string {
    if (!this.res) return '';
    return tiles.filter((x) => x.owned !== undefined)
      .map((x) => this.load(x.src, x.owned! * this.bo * this.d4, this.bo, this.d4, this.d4, '0u', x.valid(''), x.rowOf(''), 'Ow')).join('');
  }
  decl(prefix: string, init: string, perC = true): string {
    return this.rs.flatMap((r) => (perC ? this.cs : [0]).map((c) => `  var ${prefix}${r}_${c} = ${init};`)).join('\n');
  }
  /**
   * Score micro-GEMM over D: for each pair, s{k}_r_c = sum over D of owned tile row r x streamed tile row c.
   * `loads` stage the chunk; pair k reads its owned side at oOff[k] and streamed side at sOff[k].
   */
  scores(loads: string, oOff: number[], sOff: number[]): string {
    return `
${this.scoreDecl(oOff.length)}
    for (var c0 = 0u; c0 < ${this.d4}u; c0 += ${this.t.dc}u) {
      workgroupBarrier();${loads}
      workgroupBarrier();
${this.scoreBody('c0', oOff, sOff)}
    }`;
  }
  scoreDecl(pairs: number): string { return range(pairs).map((k) => this.decl(`s${k}_`, '0.0')).join('\n'); }
  /** One staged chunk of the score micro-GEMM: columns c0 .. c0 + DC of D4. */
  scoreBody(c0: string, oOff: number[], sOff: number[]): string {
    const { dc, tx } = this.t;
    // Owned tile row r, column c0 + dd: in Sh (DC columns per step) or resident in Ow (all D4).
    const own = (k: number, r: number, dd: number) => (this.res ? `Ow[${k * this.bo * this.d4 + r * this.d4 + dd}u + ob]` : `Sh[${oOff[k] + r * dc + dd}u + ob]`);
    const step = (dd: number) => oOff.map((_, k) => [
      ...this.rs.map((r) => `        let a${k}_${r} = ${own(k, r, dd)};`),
      ...this.cs.map((c) => `        let b${k}_${c} = Sh[${sOff[k]}u + sb${c} + ${dd}u];`),
      ...this.rs.flatMap((r) => this.cs.map((c) => `        s${k}_${r}_${c} = dot4(a${k}_${r}, b${k}_${c}, s${k}_${r}_${c});`)),
    ].join('\n')).join('\n');
    return `      let ob = ${this.res ? `ty * ${this.ro * this.d4}u + ${c0}` : `ty * ${this.ro * dc}u`};
${this.cs.map((c) => `      let sb${c} = (tx + ${tx * c}u) * ${this.dcp}u;`).join('\n')}
${range(dc).map((dd) => `      {\n${step(dd)}\n      }`).join('\n')}`;
  }
  /**
   * A tile of `rows` x `cols` vec4 staged through registers: `issue` reads it from global memory
   * (columns c0.., rows failing `valid` and columns past D zero), `store` writes it into Sh at `off`
   * with row stride `stride`, so a global read can be in flight while the previous tile is multiplied.
   */
  regTile(tag: string, src: string, rows: number, cols: number): { decl: string; issue: (c0: string, valid: string, rowOf: string) => string; store: (off: number, stride: number) => string } {
    const total = rows * cols, I = range(Math.ceil(total / this.nt));
    const guard = (i: number) => (total % this.nt && (i + 1) * this.nt > total ? `e < ${total}u` : 'true');
    const body = this.read(src);
    return {
      decl: I.map((i) => `  var ${tag}${i} = vec4<f32>(0.0);`).join('\n'),
      issue: (c0, valid, rowOf) => I.map((i) => `      { let e = lid + ${i * this.nt}u; let r = e / ${cols}u; let col = ${c0} + e % ${cols}u; var v = vec4<f32>(0.0);
        if (${guard(i)} && ${valid} && col < ${this.d4}u) { let gr = ${rowOf}; ${body} }
        ${tag}${i} = v; }`).join('\n'),
      store: (off, stride) => I.map((i) => `      { let e = lid + ${i * this.nt}u; if (${guard(i)}) { Sh[${off}u + (e / ${cols}u) * ${stride}u + e % ${cols}u] = ${tag}${i}; } }`).join('\n'),
    };
  }
  /** Packs weights w_r_c of the RO owned rows per streamed row into Wt at `off` (RO / 4 vec4 each). */
  pack(w: string, off: number): string {
    const { tx, ty } = this.t;
    return this.cs.flatMap((c) => range(this.rq).map((q) => `    Wt[${off}u + ((tx + ${tx * c}u) * ${ty}u + ty) * ${this.rq}u + ${q}u] = vec4<f32>(${R.map((r) => `${w}${4 * q + r}_${c}`).join(', ')});`)).join('\n');
  }
  /** acc{k}_r_u += sum over streamed rows j of Wt[wOff[k]] weight x staged row j (at mOff[k]) column tx + TX u. */
  accumulate(loads: string, acc: string[], wOff: number[], mOff: number[]): string {
    return `
    for (var j0 = 0u; j0 < ${this.bs}u; j0 += ${this.t.vc}u) {
      workgroupBarrier();${loads}
      workgroupBarrier();
${this.accBody('j0', acc, wOff, mOff)}
    }`;
  }
  /** One staged chunk of the accumulation: streamed rows j0 .. j0 + VC. */
  accBody(j0: string, acc: string[], wOff: number[], mOff: number[]): string {
    const { tx, ty, vc } = this.t;
    const step = (j: number) => acc.map((a, k) => [
      ...range(this.rq).map((q) => `        let w${k}_${q} = Wt[${wOff[k]}u + ((${j0} + ${j}u) * ${ty}u + ty) * ${this.rq}u + ${q}u];`),
      ...this.us.map((u) => `        let m${k}_${u} = Sh[${mOff[k] + j * this.d4p + tx * u}u + tx];`),
      ...this.rs.flatMap((r) => this.us.map((u) => `        ${a}${r}_${u} = fma(vec4<f32>(w${k}_${r >> 2}[${r & 3}]), m${k}_${u}, ${a}${r}_${u});`)),
    ].join('\n')).join('\n');
    return range(vc).map((j) => `      {\n${step(j)}\n      }`).join('\n');
  }
  /**
   * The register-prefetched k loop of a pass (`pf`): per block, the DC-column score chunks, then the
   * VC-row accumulation chunks, unrolled; each stage stores the tiles read during the previous stage,
   * then reads the next stage's (the next block's first chunk after the last one). Score tiles are
   * read at (c0, block start `blk`; `first` before the loop, `next` in the last stage), accumulation
   * tiles at rows from `blk + j`.
   */
  pipeline(o: {
    score: StagedTile[]; acc: StagedTile[]; blk: string; first: string; next: string; oOff: number[]; sOff: number[];
    accArgs: [string[], number[], number[]];
  }): { prologue: string; scores: string; acc: string } {
    const { dc, vc } = this.t;
    const nC = Math.ceil(this.d4 / dc), nJ = this.bs / vc;
    const tiles = [...o.score, ...o.acc].map((x, i) => ({ ...x, rt: this.regTile(`pf${i}_`, x.src, x.rows, x.cols) }));
    const sc = tiles.slice(0, o.score.length), ac = tiles.slice(o.score.length);
    const issueS = (c0: string, blk: string) => sc.map((x) => x.rt.issue(c0, x.valid(blk), x.rowOf(blk))).join('\n');
    const issueA = (j: number) => ac.map((x) => x.rt.issue('0u', x.valid(`${o.blk} + ${j * vc}u`), x.rowOf(`${o.blk} + ${j * vc}u`))).join('\n');
    const stage = (list: typeof tiles, next: string, body: string) => `
    {
      workgroupBarrier();
${list.map((x) => x.rt.store(x.off, x.stride)).join('\n')}
      workgroupBarrier();
${next}
${body}
    }`;
    return {
      prologue: `${tiles.map((x) => x.rt.decl).join('\n')}\n${issueS('0u', o.first)}`,
      scores: `\n${this.scoreDecl(o.oOff.length)}${range(nC).map((cc) => stage(sc, cc + 1 < nC ? issueS(`${(cc + 1) * dc}u`, o.blk) : issueA(0),
        this.scoreBody(`${cc * dc}u`, o.oOff, o.sOff))).join('')}`,
      acc: range(nJ).map((jj) => stage(ac, jj + 1 < nJ ? issueA(jj + 1) : issueS('0u', o.next),
        this.accBody(`${jj * vc}u`, ...o.accArgs))).join(''),
    };
  }
  accs(prefix: string): string {
    return this.rs.flatMap((r) => this.us.map((u) => `  var ${prefix}${r}_${u} = vec4<f32>(0.0);`)).join('\n');
  }
  /** Sets acc_r_u to rows rowOf(r) of `buf` where valid(r), columns tx + TX u below D4 (the inverse of store). */
  loadAcc(buf: string, acc: string, valid: (r: number) => string, rowOf: (r: number) => string): string {
    return this.rs.map((r) => `  if (${valid(r)}) {
    let gr = ${rowOf(r)};
${this.us.map((u) => `    if (tx + ${this.t.tx * u}u < ${this.d4}u) { let col = tx + ${this.t.tx * u}u; var v = vec4<f32>(0.0); ${this.read(buf)} ${acc}${r}_${u} = v; }`).join('\n')}
  }`).join('\n');
  }
  /** Writes acc_r_u (times `mul`) to rows rowOf(r) where valid(r), columns tx + TX u below D4. */
  store(buf: string, acc: string, valid: (r: number) => string, rowOf: (r: number) => string, mul: (r: number) => string): string {
    return this.rs.map((r) => `  if (${valid(r)}) {
    let row = ${rowOf(r)};
${this.us.map((u) => `    if (tx + ${this.t.tx * u}u < ${this.d4}u) { ${this.write(buf, 'row', `tx + ${this.t.tx * u}u`, `${acc}${r}_${u}${mul(r)}`)} }`).join('\n')}
  }`).join('\n');
  }
}

const qRow = (r: string, i0: string) => `(b * p.l + ${i0} + ${r}) * p.h + h`;
const kRow = (r: string, j0: string) => `(b * p.s + ${j0} + ${r}) * p.hkv + hk`;

function forwardCode(g: Gen): string {
  const { dc, tx, ty, vc } = g.t;
  const bo = g.bo, bs = g.bs, rq = g.rq, Q = range(rq);
  const so = g.res ? 0 : bo * dc;
  const sh = Math.max(so + bs * g.dcp, vc * g.d4p);
  const score = [g.ownedTile(0, 'Q', 'i0 + r < p.l', qRow('r', 'i0')), kvTile('K', so, bs, dc, g.dcp)];
  const acc = [kvTile('V', 0, vc, g.d4p, g.d4p)];
  const pl = g.pf ? g.pipeline({
    score, acc, blk: 'k0', first: '0u', next: `(k0 + ${bs}u)`, oOff: [0], sOff: [so], accArgs: [['o'], [0], [0]],
  }) : null;
  const rowMax = (r: number) => g.cs.slice(1).reduce((e, c) => `max(${e}, s0_${r}_${c})`, `s0_${r}_0`);
  // Running maxima m are in the exponent's units: scaled scores (am), or scaled by log2(e) (exp2).
  const am = g.am, ex = am ? 'exp' : 'exp2';
  const keyOk = (r: number, c: number) => `k0 + tx + ${tx * c}u < kEnd && (p.causal == 0u || k0 + tx + ${tx * c}u <= ib + ${r}u + shift)`;
  // Component r of the per-row vec4 values (m, l, corr, ...) of owned row r.
  const of = (name: string, r: number) => `${name}${r >> 2}[${r & 3}]`;
  const rows4 = (q: number) => R.map((k) => 4 * q + k);
  // Reduces per-thread vec4 values val_q across the TX threads of a row through Rm into acc_q.
  const reduce = (val: string, acc: string, op: (a: string, b: string) => string) => `
${Q.map((q) => `  Rm[(tx * ${ty}u + ty) * ${rq}u + ${q}u] = ${val}${q};`).join('\n')}
  workgroupBarrier();
${Q.map((q) => `  var ${acc}${q} = Rm[ty * ${rq}u + ${q}u];`).join('\n')}
  for (var t = 1u; t < ${tx}u; t++) {
${Q.map((q) => `    ${acc}${q} = ${op(`${acc}${q}`, `Rm[(t * ${ty}u + ty) * ${rq}u + ${q}u]`)};`).join('\n')}
  }`;
  return `${g.header(sh, `var<workgroup> Wt: array<vec4<f32>, ${bs * ty * rq}>;\nvar<workgroup> Rm: array<vec4<f32>, ${tx * ty * rq}>;`, 1)}
  let h = wid.y;
  let b = wid.z;
  let hk = h / (p.h / p.hkv);
  // Heaviest blocks (last queries under the causal mask) first.
  let i0 = (nwg.x - 1u - wid.x) * ${bo}u;
  var kEnd = p.s;
  if (p.causal == 1u) { kEnd = min(p.s, i0 + ${bo}u + shift); }
  let ib = i0 + ty * ${g.ro}u;
${Q.map((q) => `  var m${q} = vec4<f32>(${NEG_INF});\n  var l${q} = vec4<f32>(0.0);`).join('\n')}
${g.accs('o')}${g.onceLoads(score)}
${pl ? pl.prologue : ''}
  for (var k0 = 0u; k0 < kEnd; k0 += ${bs}u) {${pl ? pl.scores : g.scores(g.stepLoads(score, 'k0', 'c0'), [0], [so])}
${am ? g.rs.flatMap((r) => g.cs.map((c) => `    s0_${r}_${c} = select(${NEG_INF}, s0_${r}_${c} * p.scale, ${keyOk(r, c)});`)).join('\n')
    : g.edge(`k0 + ${bs}u <= kEnd && (p.causal == 0u || k0 + ${bs}u <= i0 + shift + 1u)`, g.rs.flatMap((r) => g.cs.map((c) => `      s0_${r}_${c} = select(${NEG_INF}, s0_${r}_${c}, ${keyOk(r, c)});`)).join('\n'))}
${Q.map((q) => `    let rm${q} = vec4<f32>(${rows4(q).map(rowMax).join(', ')});`).join('\n')}${reduce('rm', 'mt', (a, b) => `max(${a}, ${b})`).replaceAll('\n  ', '\n    ')}
${Q.map((q) => `    let mNew${q} = max(m${q}, mt${q}${am ? '' : ' * sc2'});
    let mUse${q} = select(mNew${q}, vec4<f32>(0.0), mNew${q} == vec4<f32>(${NEG_INF}));
    let corr${q} = ${ex}(m${q} - mUse${q});
    m${q} = mNew${q};`).join('\n')}
${g.rs.flatMap((r) => g.cs.map((c) => `    let e${r}_${c} = ${am ? `exp(s0_${r}_${c} - ${of('mUse', r)})` : `exp2(fma(s0_${r}_${c}, sc2, -${of('mUse', r)}))`};`)).join('\n')}
${Q.map((q) => `    l${q} = l${q} * corr${q} + vec4<f32>(${rows4(q).map((r) => g.cs.map((c) => `e${r}_${c}`).join(' + ')).join(', ')});`).join('\n')}
${g.rs.flatMap((r) => g.us.map((u) => `    o${r}_${u} *= ${of('corr', r)};`)).join('\n')}
${g.pack('e', 0)}${pl ? pl.acc : g.accumulate(g.stepLoads(acc, 'k0 + j0', '0u'), ['o'], [0], [0])}
  }
  workgroupBarrier();${reduce('l', 'lt', (a, b) => `${a} + ${b}`)}
${Q.map((q) => `  let inv${q} = 1.0 / lt${q};`).join('\n')}
${g.store('O', 'o', (r) => `ib + ${r}u < p.l`, (r) => qRow(`${r}u`, 'ib'), (r) => ` * ${of('inv', r)}`)}
  if (tx == 0u) {
${g.rs.map((r) => `    if (ib + ${r}u < p.l) { LSE[(b * p.h + h) * p.l + ib + ${r}u] = ${of('m', r)}${am ? '' : ` * ${LN2}`} + log(${of('lt', r)}); }`).join('\n')}
  }
}`;
}

export function attentionForward(rt: Runtime, q: GpuBuf, k: GpuBuf, v: GpuBuf, o: GpuBuf, lse: GpuBuf, p: AttnParams): void {
  check(p);
  const t = attentionTile(rt, 'fwd', p.d, p.b * p.h * p.l), g = new Gen(p.d, t);
  rt.dispatch({
    key: `attnFwd:${p.d}:${JSON.stringify(t)}`, bindings: [...g.io('r', 'Q', 'K', 'V'), ...g.io('w', 'O'), ['LSE', 'f32', 'w']], uniform,
    code: () => forwardCode(g),
  },
    [q, k, v, o, lse], uniformOf(p), [Math.ceil(p.l / g.bo), p.h, p.b],
    // A replayed decode step attends over more keys each token: only the key count changes.
    { name: 'attentionKeys', uniformFor: (s) => uniformOf({ ...p, s: s as number }) });
}

function dsumCode(g: Gen): string {
  const read = (buf: string, c: number): string => {
    if (g.vec) return `${buf}[row * ${g.d4}u + ${c}u]`;
    return `vec4<f32>(${R.map((k) => (4 * c + k < g.d ? `${buf}[row * ${g.d}u + ${4 * c + k}u]` : '0.0')).join(', ')})`;
  };
  return `
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = wid.x * 64u + lid;
  if (i >= p.l) { return; }
  let h = wid.y;
  let b = wid.z;
  let row = (b * p.l + i) * p.h + h;
  var s = vec4<f32>(0.0);
${range(g.d4).map((c) => `  s = fma(${read('O', c)}, ${read('G', c)}, s);`).join('\n')}
  DS[(b * p.h + h) * p.l + i] = dot(s, vec4<f32>(1.0));
}`;
}

function dqCode(g: Gen): string {
  const { dc, tx, ty, vc } = g.t;
  const bo = g.bo, bs = g.bs;
  const sOff = g.res ? 0 : 2 * bo * dc;
  const sh = Math.max(sOff + 2 * bs * g.dcp, vc * g.d4p);
  const score = [
    g.ownedTile(0, 'Q', 'i0 + r < p.l', qRow('r', 'i0')), g.ownedTile(1, 'G', 'i0 + r < p.l', qRow('r', 'i0')),
    kvTile('K', sOff, bs, dc, g.dcp), kvTile('V', sOff + bs * g.dcp, bs, dc, g.dcp),
  ];
  const acc = [kvTile('K', 0, vc, g.d4p, g.d4p)];
  const keyOk = (r: number, c: number) => `k0 + tx + ${tx * c}u < kEnd && (p.causal == 0u || k0 + tx + ${tx * c}u <= ib + ${r}u + shift)`;
  const pl = g.pf ? g.pipeline({
    score, acc, blk: 'k0', first: '0u', next: `(k0 + ${bs}u)`, oOff: [0, bo * dc], sOff: [sOff, sOff + bs * g.dcp], accArgs: [['acc'], [0], [0]],
  }) : null;
  return `${g.header(sh, `var<workgroup> Wt: array<vec4<f32>, ${bs * ty * g.rq}>;`, 2)}
  let h = wid.y;
  let b = wid.z;
  let hk = h / (p.h / p.hkv);
  let i0 = (nwg.x - 1u - wid.x) * ${bo}u;
  var kEnd = p.s;
  if (p.causal == 1u) { kEnd = min(p.s, i0 + ${bo}u + shift); }
  let ib = i0 + ty * ${g.ro}u;
${g.rs.map((r) => `  let li${r} = LSE[(b * p.h + h) * p.l + min(ib + ${r}u, p.l - 1u)];
  let di${r} = DS[(b * p.h + h) * p.l + min(ib + ${r}u, p.l - 1u)];
  let li2${r} = li${r} * ${LOG2E};`).join('\n')}
${g.accs('acc')}${g.onceLoads(score)}${pl ? `\n${pl.prologue}` : ''}
  for (var k0 = 0u; k0 < kEnd; k0 += ${bs}u) {${pl ? pl.scores : g.scores(g.stepLoads(score, 'k0', 'c0'), [0, bo * dc], [sOff, sOff + bs * g.dcp])}
${g.am ? g.rs.flatMap((r) => g.cs.map((c) => `    let w${r}_${c} = select(0.0, exp(s0_${r}_${c} * p.scale - li${r}) * (s1_${r}_${c} - di${r}), ${keyOk(r, c)});`)).join('\n')
    : `${g.rs.flatMap((r) => g.cs.map((c) => `    var w${r}_${c} = exp2(fma(s0_${r}_${c}, sc2, -li2${r})) * (s1_${r}_${c} - di${r});`)).join('\n')}
${g.edge(`k0 + ${bs}u <= kEnd && (p.causal == 0u || k0 + ${bs}u <= i0 + shift + 1u)`, g.rs.flatMap((r) => g.cs.map((c) => `      w${r}_${c} = select(0.0, w${r}_${c}, ${keyOk(r, c)});`)).join('\n'))}`}
${g.pack('w', 0)}${pl ? pl.acc : g.accumulate(g.stepLoads(acc, 'k0 + j0', '0u'), ['acc'], [0], [0])}
  }
${g.store('DQ', 'acc', (r) => `ib + ${r}u < p.l`, (r) => qRow(`${r}u`, 'ib'), () => ' * p.scale')}
}`;
}

function dkvCode(g: Gen, stored: boolean): string {
  const { dc, tx, ty, vc } = g.t;
  const bo = g.bo, bs = g.bs;
  const sOff = g.res ? 0 : 2 * bo * dc;
  const sh = Math.max(sOff + 2 * bs * g.dcp, 2 * vc * g.d4p);
  // With prefetch the next block read in the last stage may be the next head's first (qNext, hNext below).
  const qr = (qb: string) => (qb === 'qNext' ? '(b * p.l + qNext + r) * p.h + hNext' : qb === 'qFirst' ? '(b * p.l + qStart + r) * p.h + hk * group' : qRow('r', qb));
  const qv = (qb: string) => (qb === 'qNext' ? 'vNext && qNext + r < p.qe' : qb === 'qFirst' ? 'qStart + r < p.qe' : `${qb} + r < p.qe`);
  const q = (src: string, off: number, rows: number, cols: number, stride: number): StagedTile => ({ src, rows, cols, off, stride, valid: qv, rowOf: qr });
  const score = [
    g.ownedTile(0, 'K', 'j0k + r < p.s', kRow('r', 'j0k')), g.ownedTile(1, 'V', 'j0k + r < p.s', kRow('r', 'j0k')),
    q('Q', sOff, bs, dc, g.dcp), q('G', sOff + bs * g.dcp, bs, dc, g.dcp),
  ];
  const acc = [q('G', 0, vc, g.d4p, g.d4p), q('Q', vc * g.d4p, vc, g.d4p, g.d4p)];
  const pairOk = (r: number, c: number) => `qi${c} < p.qe && kb + ${r}u < p.s && (p.causal == 0u || kb + ${r}u <= qi${c} + shift)`;
  // dS of (key kb + r, query qi_c) to the chunk's scratch row qi_c - qa: one vec4 per 4 owned keys.
  const storeDs = g.cs.map((c) => `      if (qi${c} < p.qe) {
        let dr = ((b * p.h + h) * p.qc + qi${c} - p.qa) * (p.sp / 4u) + kb / 4u;
${range(g.rq).map((q) => `        if (kb + ${4 * q}u < p.s) { DSM[dr + ${q}u] = vec4<f32>(${R.map((k) => `w${4 * q + k}_${c}`).join(', ')}); }`).join('\n')}
      }`).join('\n');
  const pl = g.pf ? g.pipeline({
    score, acc, blk: 'q0', first: 'qFirst', next: 'qNext', oOff: [0, bo * dc], sOff: [sOff, sOff + bs * g.dcp],
    accArgs: [['dv', 'dk'], [0, bs * ty * g.rq], [0, vc * g.d4p]],
  }) : null;
  return `${g.header(sh, `var<workgroup> Wt: array<vec4<f32>, ${2 * bs * ty * g.rq}>;`, 2)}
  let hk = wid.y;
  let b = wid.z;
  let group = p.h / p.hkv;
  // Heaviest blocks (first keys under the causal mask) first.
  let j0k = wid.x * ${bo}u;
  let kb = j0k + ty * ${g.ro}u;
  var qStart = p.qa;
  if (p.causal == 1u && j0k > shift) { qStart = max(qStart, j0k - shift); }
${g.accs('dk')}
${g.accs('dv')}
  if (p.acc == 1u) {
${g.loadAcc('DK', 'dk', (r) => `kb + ${r}u < p.s`, (r) => kRow(`${r}u`, 'kb'))}
${g.loadAcc('DV', 'dv', (r) => `kb + ${r}u < p.s`, (r) => kRow(`${r}u`, 'kb'))}
  }${g.onceLoads(score)}${pl ? `\n${pl.prologue}` : ''}
${pl ? `  // One loop over (head of the group, query block), so the block read ahead may be the next head's.
  let nq = select(0u, (p.qe - qStart + ${bs - 1}u) / ${bs}u, qStart < p.qe);
  for (var it = 0u; it < group * nq; it++) {
    let h = hk * group + it / nq;
    let q0 = qStart + (it % nq) * ${bs}u;
    {
      let vNext = it + 1u < group * nq;
      let qNext = qStart + ((it + 1u) % nq) * ${bs}u;
      let hNext = hk * group + (it + 1u) / nq;${pl.scores}` : `  for (var gi = 0u; gi < group; gi++) {
    let h = hk * group + gi;
    for (var q0 = qStart; q0 < p.qe; q0 += ${bs}u) {${g.scores(g.stepLoads(score, 'q0', 'c0'), [0, bo * dc], [sOff, sOff + bs * g.dcp])}`}
${g.cs.map((c) => `      let qi${c} = q0 + tx + ${tx * c}u;
      let lq${c} = LSE[(b * p.h + h) * p.l + min(qi${c}, p.l - 1u)];
      let dq${c} = DS[(b * p.h + h) * p.l + min(qi${c}, p.l - 1u)];`).join('\n')}
${g.am ? g.rs.flatMap((r) => g.cs.map((c) => `      let e${r}_${c} = select(0.0, exp(s0_${r}_${c} * p.scale - lq${c}), ${pairOk(r, c)});`)).join('\n')
    : `${g.rs.flatMap((r) => g.cs.map((c) => `      var e${r}_${c} = exp2(fma(s0_${r}_${c}, sc2, -lq${c} * ${LOG2E}));`)).join('\n')}
${g.edge(`q0 + ${bs}u <= p.qe && j0k + ${bo}u <= p.s && (p.causal == 0u || j0k + ${bo}u <= q0 + shift + 1u)`, g.rs.flatMap((r) => g.cs.map((c) => `      e${r}_${c} = select(0.0, e${r}_${c}, ${pairOk(r, c)});`)).join('\n'))}`}
${g.rs.flatMap((r) => g.cs.map((c) => `      let w${r}_${c} = e${r}_${c} * (s1_${r}_${c} - dq${c});`)).join('\n')}${stored ? `\n${storeDs}` : ''}
${g.pack('e', 0)}
${g.pack('w', bs * ty * g.rq)}${pl ? pl.acc : g.accumulate(g.stepLoads(acc, 'q0 + j0', '0u'), ['dv', 'dk'], [0, bs * ty * g.rq], [0, vc * g.d4p])}
    }
  }
  let dkMul = select(1.0, p.scale, p.fin == 1u);
${g.store('DK', 'dk', (r) => `kb + ${r}u < p.s`, (r) => kRow(`${r}u`, 'kb'), () => ' * dkMul')}
${g.store('DV', 'dv', (r) => `kb + ${r}u < p.s`, (r) => kRow(`${r}u`, 'kb'), () => '')}
}`;
}

/**
 * dQ of a chunk of query rows from the dS the dK/dV pass stored: dQ_i = scale sum_j dS_ij K_j, one
 * product, with no scores recomputed. Keys outside a row's causal range are never read (the dK/dV pass
 * skips whole blocks there, so those scratch entries are not written).
 */
function dqsCode(g: Gen): string {
  const { tx, ty, vc } = g.t;
  const bo = g.bo, bs = g.bs;
  const acc = [kvTile('K', 0, vc, g.d4p, g.d4p)];
  const keyOk = (r: number, c: number) => `k0 + tx + ${tx * c}u < kEnd && (p.causal == 0u || k0 + tx + ${tx * c}u <= ib + ${r}u + shift)`;
  const read = (r: number, c: number) => `DSM[dr${r} + k0 + tx + ${tx * c}u]`;
  return `${g.header(vc * g.d4p, `var<workgroup> Wt: array<vec4<f32>, ${bs * ty * g.rq}>;`)}
  let h = wid.y;
  let b = wid.z;
  let hk = h / (p.h / p.hkv);
  // Heaviest blocks (last queries of the chunk under the causal mask) first.
  let i0 = p.qa + (nwg.x - 1u - wid.x) * ${bo}u;
  var kEnd = p.s;
  if (p.causal == 1u) { kEnd = min(p.s, i0 + ${bo}u + shift); }
  let ib = i0 + ty * ${g.ro}u;
${g.rs.map((r) => `  let dr${r} = ((b * p.h + h) * p.qc + min(ib + ${r}u, p.qe - 1u) - p.qa) * p.sp;`).join('\n')}
${g.accs('acc')}
  for (var k0 = 0u; k0 < kEnd; k0 += ${bs}u) {
${g.rs.flatMap((r) => g.cs.map((c) => `    var w${r}_${c} = 0.0;`)).join('\n')}
    if (k0 + ${bs}u <= kEnd && (p.causal == 0u || k0 + ${bs}u <= i0 + shift + 1u)) {
${g.rs.flatMap((r) => g.cs.map((c) => `      w${r}_${c} = ${read(r, c)};`)).join('\n')}
    } else {
${g.rs.flatMap((r) => g.cs.map((c) => `      if (${keyOk(r, c)}) { w${r}_${c} = ${read(r, c)}; }`)).join('\n')}
    }
    workgroupBarrier();
${g.pack('w', 0)}${g.accumulate(g.stepLoads(acc, 'k0 + j0', '0u'), ['acc'], [0], [0])}
  }
${g.store('DQ', 'acc', (r) => `ib + ${r}u < p.qe`, (r) => qRow(`${r}u`, 'ib'), () => ' * p.scale')}
}`;
}

/** Scratch for stored dS: `FRUGAL_WEBGPU_ATTN_DS_MB` (Node; 0 = always recompute), else 1024 MiB; read once. */
let storedCap: number | undefined;
const storedBytes = (): number => (storedCap ??= parseStoredBytes());
function parseStoredBytes(): number {
  const env = typeof process !== 'undefined' ? process.env?.FRUGAL_WEBGPU_ATTN_DS_MB : undefined;
  if (env === undefined || env === '') return 1024 * 2 ** 20;
  const v = Number(env);
  if (!(Number.isFinite(v) && v >= 0)) throw new Error(`FRUGAL_WEBGPU_ATTN_DS_MB must be a number of MiB >= 0, got ${JSON.stringify(env)}`);
  return v * 2 ** 20;
}
let chunkOverride: number | null = null;
/**
 * Query rows per chunk of the stored-dS backward (rounded down to the dQ pass's block), 0 for the
 * recomputing backward, `null` for the default (as many rows as the scratch allows).
 */
export function setAttentionChunkRows(rows: number | null): void { chunkOverride = rows; }

/**
 * Query rows per chunk of the backward that stores dS (0: the backward that recomputes the scores in
 * the dQ pass). Whole query rows of every head and batch go in one chunk; a chunk is a multiple of the
 * dQ pass's block unless it is the whole length. Stored dS needs the chunk's rows x keys (times batch
 * and heads) in one binding; below 256 rows the default falls back to recomputing.
 */
export function attentionChunkRows(rt: Runtime, p: AttnParams, bo: number): number {
  const perRow = p.b * p.h * Math.ceil(p.s / 4) * 4 * 4;
  const cap = Math.min(rt.maxBindingBytes, storedBytes());
  let rows = chunkOverride ?? Math.floor(cap / perRow);
  if (rows <= 0) return 0;
  if (rows >= p.l && p.l * perRow <= rt.maxBindingBytes) return p.l;
  rows = Math.floor(Math.min(rows, rt.maxBindingBytes / perRow) / bo) * bo;
  if (rows <= 0 || (chunkOverride === null && rows < 256)) return 0;
  return Math.min(rows, p.l);
}

export function attentionBackward(rt: Runtime, q: GpuBuf, k: GpuBuf, v: GpuBuf, o: GpuBuf, dO: GpuBuf, lse: GpuBuf,
  dq: GpuBuf, dk: GpuBuf, dv: GpuBuf, p: AttnParams): void {
  check(p);
  // D_i = rowsum(dO * o) per (b, h, i).
  const gs = new Gen(p.d, { ty: 1, tx: 1, ct: 1, dc: 1, vc: 1 });
  const dsum = rt.temp(p.b * p.h * p.l, 'f32');
  rt.dispatch({ key: `attnDsum:${p.d}`, bindings: [...gs.io('r', 'O', 'G'), ['DS', 'f32', 'w']], uniform, code: () => dsumCode(gs) },
    [o, dO, dsum], uniformOf(p), [Math.ceil(p.l / 64), p.h, p.b]);

  const tk = attentionTile(rt, 'dkv', p.d, p.b * p.hkv * p.s), gk = new Gen(p.d, tk);
  const dkv = (stored: boolean, c: Chunk, dsm: GpuBuf[]) => rt.dispatch({
    key: `attnDkv:${p.d}:${stored ? 'ds:' : ''}${JSON.stringify(tk)}`,
    bindings: [...gk.io('r', 'Q', 'K', 'V', 'G'), ['LSE', 'f32', 'r'], ['DS', 'f32', 'r'], ...gk.io('w', 'DK', 'DV'), ...(stored ? [['DSM', 'vec4<f32>', 'w'] as Binding] : [])],
    uniform: uniformChunk, code: () => dkvCode(gk, stored),
  },
    [q, k, v, dO, lse, dsum, dk, dv, ...dsm], uniformChunkOf(p, c), [Math.ceil(p.s / gk.bo), p.hkv, p.b]);

  // Stored dS: per chunk of query rows, the dK/dV pass also writes dS, and dQ is one product over it.
  const ts = attentionTile(rt, 'dqs', p.d, p.b * p.h * p.l), gs2 = new Gen(p.d, ts);
  const qc = attentionChunkRows(rt, p, gs2.bo);
  if (qc > 0) {
    const sp = Math.ceil(p.s / 4) * 4;
    const dsm = rt.temp(p.b * p.h * qc * sp, 'f32');
    for (let qa = 0; qa < p.l; qa += qc) {
      const c = { qa, qe: Math.min(p.l, qa + qc), qc, sp };
      dkv(true, c, [dsm]);
      rt.dispatch({
        key: `attnDqs:${p.d}:${JSON.stringify(ts)}`, bindings: [...gs2.io('r', 'K'), ['DSM', 'f32', 'r'], ...gs2.io('w', 'DQ')],
        uniform: uniformChunk, code: () => dqsCode(gs2),
      },
        [k, dsm, dq], uniformChunkOf(p, c), [Math.ceil((c.qe - qa) / gs2.bo), p.h, p.b]);
    }
    return;
  }

  const tq = attentionTile(rt, 'dq', p.d, p.b * p.h * p.l), gq = new Gen(p.d, tq);
  rt.dispatch({
    key: `attnDq:${p.d}:${JSON.stringify(tq)}`, bindings: [...gq.io('r', 'Q', 'K', 'V', 'G'), ['LSE', 'f32', 'r'], ['DS', 'f32', 'r'], ...gq.io('w', 'DQ')],
    uniform, code: () => dqCode(gq),
  },
    [q, k, v, dO, lse, dsum, dq], uniformOf(p), [Math.ceil(p.l / gq.bo), p.h, p.b]);
  dkv(false, { qa: 0, qe: p.l, qc: 0, sp: 0 }, []);
}
