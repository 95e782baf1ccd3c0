// Row-wise kernels (one workgroup of 256 threads per row, tree reductions in workgroup memory):
// reductions, argmax, softmax, cross-entropy, RMSNorm/LayerNorm, sum of squares, top-k.
import type { ReduceOp } from '../../types.ts';
import { type GpuBuf, splitParts } from '../pool.ts';
import { type Binding, type KernelSpec, type Runtime, Uniform } from '../runtime.ts';
import { flatMain, NEG_INF, POS_INF, reduceFns, rowMain, WG } from './common.ts';

const combine: Record<ReduceOp, string> = { sum: 'a + b', max: 'select(a, b, b > a)', min: 'select(a, b, b < a)' };
const identity: Record<ReduceOp, string> = { sum: '0.0', max: NEG_INF, min: POS_INF };
/** Rows per thread in the first pass of a column reduction (column sums over many rows). */
const COL_CHUNK = 64;

export function reduce(rt: Runtime, op: ReduceOp, a: GpuBuf, outer: number, n: number, inner: number, out: GpuBuf): void {
  const io = { bindings: [['A', 'f32', 'r'], ['O', 'f32', 'w']], uniform: 'outer: u32, n: u32, inner: u32' } as const;
  const head = `
fn comb(a: f32, b: f32) -> f32 { return ${combine[op]}; }`;
  const u = new Uniform().u(outer, n, inner);
  if (inner === 1) {
    rt.dispatch({ key: `reduceRow:${op}`, ...io, code: () => `${head}
var<workgroup> red: array<f32, ${WG}>;
${rowMain(`  if (row >= p.outer) { return; }
  var acc = ${identity[op]};
  for (var j = t; j < p.n; j += ${WG}u) { acc = comb(acc, A[row * p.n + j]); }
  red[t] = acc;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    if (t < s) { red[t] = comb(red[t], red[t + s]); }
    workgroupBarrier();
  }
  if (t == 0u) { O[row] = red[0]; }`)}` }, [a, out], u, rt.grid(outer));
    return;
  }
  if (n > 2 * COL_CHUNK) {
    // Long columns: each thread first reduces a fixed run of COL_CHUNK entries (enough threads to
    // fill the GPU), then the runs are reduced the same way; the partition is fixed, so the result
    // is deterministic.
    const chunks = Math.ceil(n / COL_CHUNK);
    const partial = rt.temp(outer * chunks * inner, 'f32');
    rt.dispatch({ key: `reduceColChunk:${op}`, bindings: io.bindings, uniform: 'outer: u32, n: u32, inner: u32, chunks: u32', code: () => `${head}
${flatMain(`  if (i >= p.outer * p.chunks * p.inner) { return; }
  let q = i % p.inner;
  let c = (i / p.inner) % p.chunks;
  let o = i / (p.inner * p.chunks);
  let j0 = c * ${COL_CHUNK}u;
  let j1 = min(j0 + ${COL_CHUNK}u, p.n);
  var base = (o * p.n + j0) * p.inner + q;
  var acc = ${identity[op]};
  for (var j = j0; j < j1; j++) { acc = comb(acc, A[base]); base += p.inner; }
  O[i] = acc;`)}` }, [a, partial], new Uniform().u(outer, n, inner, chunks), rt.grid(Math.ceil((outer * chunks * inner) / WG)));
    reduce(rt, op, partial, outer, chunks, inner, out);
    return;
  }
  rt.dispatch({ key: `reduceCol:${op}`, ...io, code: () => `${head}
${flatMain(`  if (i >= p.outer * p.inner) { return; }
  let q = i % p.inner;
  var base = (i / p.inner) * p.n * p.inner + q;
  var acc = ${identity[op]};
  for (var j = 0u; j < p.n; j++) { acc = comb(acc, A[base]); base += p.inner; }
  O[i] = acc;`)}` }, [a, out], u, rt.grid(Math.ceil((outer * inner) / WG)));
}

/** First index of the maximum (ties go to the lower index, like the CPU kernel). */
export function argmax(rt: Runtime, a: GpuBuf, outer: number, n: number, inner: number, out: GpuBuf): void {
  const io = { bindings: [['A', 'f32', 'r'], ['O', 'i32', 'w']], uniform: 'outer: u32, n: u32, inner: u32' } as const;
  const u = new Uniform().u(outer, n, inner);
  if (inner === 1) {
    rt.dispatch({ key: 'argmaxRow', ...io, code: () => `
var<workgroup> rv: array<f32, ${WG}>;
var<workgroup> ri: array<u32, ${WG}>;
${rowMain(`  if (row >= p.outer) { return; }
  var bv = ${NEG_INF};
  var bi = 0xffffffffu;
  for (var j = t; j < p.n; j += ${WG}u) {
    let v = A[row * p.n + j];
    if (v > bv || bi == 0xffffffffu) { bv = v; bi = j; }
  }
  rv[t] = bv;
  ri[t] = bi;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    if (t < s) {
      let v2 = rv[t + s];
      let i2 = ri[t + s];
      if (i2 != 0xffffffffu && (ri[t] == 0xffffffffu || v2 > rv[t] || (v2 == rv[t] && i2 < ri[t]))) { rv[t] = v2; ri[t] = i2; }
    }
    workgroupBarrier();
  }
  if (t == 0u) { O[row] = i32(ri[0]); }`)}` }, [a, out], u, rt.grid(outer));
    return;
  }
  rt.dispatch({ key: 'argmaxCol', ...io, code: () => `
${flatMain(`  if (i >= p.outer * p.inner) { return; }
  let base = (i / p.inner) * p.n * p.inner + i % p.inner;
  var bv = A[base];
  var best = 0u;
  for (var j = 1u; j < p.n; j++) { let v = A[base + j * p.inner]; if (v > bv) { bv = v; best = j; } }
  O[i] = i32(best);`)}` }, [a, out], u, rt.grid(Math.ceil((outer * inner) / WG)));
}

export function softmax(rt: Runtime, a: GpuBuf, rows: number, n: number, out: GpuBuf, log: boolean): void {
  rt.dispatch({ key: `softmax:${log}`,
    bindings: [['X', 'f32', 'r'], ['O', 'f32', 'w']],
    uniform: 'rows: u32, n: u32', code: () => `
${reduceFns}
${rowMain(`  if (row >= p.rows) { return; }
  let base = row * p.n;
  var m = ${NEG_INF};
  for (var j = t; j < p.n; j += ${WG}u) { m = max(m, X[base + j]); }
  m = wgMax(m, t);
  var s = 0.0;
  for (var j = t; j < p.n; j += ${WG}u) { s += exp(X[base + j] - m); }
  s = wgSum(s, t);
  ${log ? 'let lse = m + log(s);\n  for (var j = t; j < p.n; j += 256u) { O[base + j] = X[base + j] - lse; }'
    : 'let inv = 1.0 / s;\n  for (var j = t; j < p.n; j += 256u) { O[base + j] = exp(X[base + j] - m) * inv; }'}`)}` },
  [a, out], new Uniform().u(rows, n), rt.grid(rows));
}

export function softmaxBackward(rt: Runtime, y: GpuBuf, dy: GpuBuf, rows: number, n: number, dx: GpuBuf, log: boolean): void {
  rt.dispatch({ key: `softmaxBackward:${log}`,
    bindings: [['Y', 'f32', 'r'], ['G', 'f32', 'r'], ['O', 'f32', 'w']],
    uniform: 'rows: u32, n: u32', code: () => `
${reduceFns}
${rowMain(`  if (row >= p.rows) { return; }
  let base = row * p.n;
  var s = 0.0;
  for (var j = t; j < p.n; j += ${WG}u) { s += G[base + j]${log ? '' : ' * Y[base + j]'}; }
  s = wgSum(s, t);
  for (var j = t; j < p.n; j += ${WG}u) {
    O[base + j] = ${log ? 'G[base + j] - exp(Y[base + j]) * s' : 'Y[base + j] * (G[base + j] - s)'};
  }`)}` }, [y, dy, dx], new Uniform().u(rows, n), rt.grid(rows));
}

export function crossEntropy(rt: Runtime, logits: GpuBuf, target: GpuBuf, rows: number, n: number, soft: boolean,
  ignoreIndex: number, loss: GpuBuf, dlogits: GpuBuf | null): void {
  const withGrad = dlogits !== null;
  const body = soft ? `
  var tm = ${NEG_INF};
  for (var j = t; j < p.n; j += ${WG}u) { tm = max(tm, T[base + j]); }
  tm = wgMax(tm, t);
  var ts = 0.0;
  for (var j = t; j < p.n; j += ${WG}u) { ts += exp(T[base + j] - tm); }
  let tinv = 1.0 / wgSum(ts, t);
  var acc = 0.0;
  for (var j = t; j < p.n; j += ${WG}u) {
    let pj = exp(T[base + j] - tm) * tinv;
    acc -= pj * (X[base + j] - lse);
    ${withGrad ? 'D[base + j] = exp(X[base + j] - lse) - pj;' : ''}
  }
  acc = wgSum(acc, t);
  if (t == 0u) { L[row] = acc; }` : `
  let y = T[row];
  if (y == p.ignore) {
    if (t == 0u) { L[row] = 0.0; }
    ${withGrad ? `for (var j = t; j < p.n; j += ${WG}u) { D[base + j] = 0.0; }` : ''}
    return;
  }
  if (t == 0u) { L[row] = lse - X[base + u32(y)]; }
  ${withGrad ? `for (var j = t; j < p.n; j += ${WG}u) { D[base + j] = exp(X[base + j] - lse) - select(0.0, 1.0, j == u32(y)); }` : ''}`;
  const spec: KernelSpec = {
    key: `crossEntropy:${soft}:${withGrad}`,
    bindings: [['X', 'f32', 'r'], ['T', soft ? 'f32' : 'i32', 'r'], ['L', 'f32', 'w'], withGrad && ['D', 'f32', 'w']],
    uniform: 'rows: u32, n: u32, ignore: i32', code: () => `
${reduceFns}
${rowMain(`  if (row >= p.rows) { return; }
  let base = row * p.n;
  var m = ${NEG_INF};
  for (var j = t; j < p.n; j += ${WG}u) { m = max(m, X[base + j]); }
  m = wgMax(m, t);
  var s = 0.0;
  for (var j = t; j < p.n; j += ${WG}u) { s += exp(X[base + j] - m); }
  let lse = m + log(wgSum(s, t));
${body}`)}` };
  rt.dispatch(spec, withGrad ? [logits, target, loss, dlogits!] : [logits, target, loss], new Uniform().u(rows, n).i(ignoreIndex), rt.grid(rows));
}

export function norm(rt: Runtime, kind: 'rms' | 'layer', x: GpuBuf, weight: GpuBuf | null, bias: GpuBuf | null, rows: number,
  n: number, eps: number, out: GpuBuf, rstd: GpuBuf, mean: GpuBuf | null): void {
  const layer = kind === 'layer';
  const bufs = [x, weight, bias, out, rstd, mean].filter((b): b is GpuBuf => b !== null);
  const spec: KernelSpec = {
    key: `norm:${kind}:${!!weight}:${!!bias}:${!!mean}`,
    bindings: [['X', 'f32', 'r'], !!weight && ['Wt', 'f32', 'r'], !!bias && ['Bs', 'f32', 'r'], ['O', 'f32', 'w'], ['RS', 'f32', 'w'],
      !!mean && ['MU', 'f32', 'w']],
    uniform: 'rows: u32, n: u32, eps: f32', code: () => `
${reduceFns}
${rowMain(`  if (row >= p.rows) { return; }
  let base = row * p.n;
  var m = 0.0;
  ${layer ? `for (var j = t; j < p.n; j += ${WG}u) { m += X[base + j]; }\n  m = wgSum(m, t) / f32(p.n);` : ''}
  var v = 0.0;
  for (var j = t; j < p.n; j += ${WG}u) { let c = X[base + j] - m; v += c * c; }
  let inv = 1.0 / sqrt(wgSum(v, t) / f32(p.n) + p.eps);
  if (t == 0u) { RS[row] = inv; ${mean ? 'MU[row] = m;' : ''} }
  for (var j = t; j < p.n; j += ${WG}u) {
    var y = (X[base + j] - m) * inv;
    ${weight ? 'y *= Wt[j];' : ''}
    ${bias ? 'y += Bs[j];' : ''}
    O[base + j] = y;
  }`)}` };
  rt.dispatch(spec, bufs, new Uniform().u(rows, n).f(eps), rt.grid(rows));
}

export function normBackward(rt: Runtime, kind: 'rms' | 'layer', x: GpuBuf, weight: GpuBuf | null, rstd: GpuBuf, mean: GpuBuf | null,
  dy: GpuBuf, rows: number, n: number, dx: GpuBuf, dweight: GpuBuf | null, dbias: GpuBuf | null): void {
  const layer = kind === 'layer';
  const hasMean = mean !== null;
  const xhat = hasMean ? '(X[base + j] - MU[row]) * RS[row]' : 'X[base + j] * RS[row]';
  const inputs = [x, rstd, dy, ...(hasMean ? [mean!] : []), ...(weight ? [weight] : [])];
  const read = (name: string): Binding => [name, 'f32', 'r'];
  const u = () => new Uniform().u(rows, n);
  rt.dispatch({
    key: `normBackward:dx:${kind}:${hasMean}:${!!weight}`,
    bindings: [read('X'), read('RS'), read('G'), hasMean && read('MU'), !!weight && read('Wt'), ['DX', 'f32', 'w']],
    uniform: 'rows: u32, n: u32', code: () => `
${reduceFns}
${rowMain(`  if (row >= p.rows) { return; }
  let base = row * p.n;
  var sg = 0.0;
  var sgx = 0.0;
  for (var j = t; j < p.n; j += ${WG}u) {
    let gh = G[base + j]${weight ? ' * Wt[j]' : ''};
    sg += gh;
    sgx += gh * ${xhat};
  }
  sg = wgSum(sg, t) / f32(p.n);
  sgx = wgSum(sgx, t) / f32(p.n);
  for (var j = t; j < p.n; j += ${WG}u) {
    let gh = G[base + j]${weight ? ' * Wt[j]' : ''};
    DX[base + j] = RS[row] * (gh - ${layer ? 'sg' : '0.0'} - ${xhat} * sgx);
  }`)}` }, [...inputs, dx], u(), rt.grid(rows));
  if (!dweight && !dbias) return;
  // Column sums over rows: each thread sums a fixed run of COL_CHUNK rows of one column into a
  // partial (enough threads to fill the GPU), then the partials are summed per column by reduce().
  // Fixed partition, fixed order: deterministic.
  const cols = [x, rstd, dy, ...(hasMean ? [mean!] : [])];
  const chunks = rows > 2 * COL_CHUNK ? Math.ceil(rows / COL_CHUNK) : 1;
  const pw = dweight && chunks > 1 ? rt.temp(chunks * n, 'f32') : dweight;
  const pb = dbias && chunks > 1 ? rt.temp(chunks * n, 'f32') : dbias;
  const outs = [...(pw ? [pw] : []), ...(pb ? [pb] : [])];
  rt.dispatch({
    key: `normBackward:dw:${hasMean}:${!!dweight}:${!!dbias}`,
    bindings: [read('X'), read('RS'), read('G'), hasMean && read('MU'), !!dweight && ['DW', 'f32', 'w'], !!dbias && ['DB', 'f32', 'w']],
    uniform: 'rows: u32, n: u32, chunk: u32, chunks: u32', code: () => `
${flatMain(`  if (i >= p.n * p.chunks) { return; }
  let j = i % p.n;
  let c = i / p.n;
  let r1 = min((c + 1u) * p.chunk, p.rows);
  var dw = 0.0;
  var db = 0.0;
  for (var row = c * p.chunk; row < r1; row++) {
    let base = row * p.n;
    let g = G[base + j];
    dw += g * ${xhat};
    db += g;
  }
  ${dweight ? 'DW[i] = dw;' : ''}
  ${dbias ? 'DB[i] = db;' : ''}`)}` }, [...cols, ...outs], new Uniform().u(rows, n, chunks > 1 ? COL_CHUNK : rows, chunks), rt.grid(Math.ceil((n * chunks) / WG)));
  if (chunks === 1) return;
  if (dweight) reduce(rt, 'sum', pw!, 1, chunks, n, dweight);
  if (dbias) reduce(rt, 'sum', pb!, 1, chunks, n, dbias);
}

/** Two passes: per-workgroup partial sums, then one workgroup adds the partials. */
export function sumSquares(rt: Runtime, a: GpuBuf, n: number, out: GpuBuf, at = 0): void {
  if (at < 0 || at >= out.length) throw new Error(`sumSquares: output index ${at} outside a buffer of ${out.length}`);
  // Split storage: each part's partial sums go to their own slots of one partial buffer.
  const parts = splitParts(a).map((q) => ({ ...q, n: Math.max(0, Math.min(q.length, n - q.start)) })).filter((q) => q.n > 0 || q.start === 0);
  const per = parts.map((q) => Math.max(1, Math.min(1024, Math.ceil(q.n / WG))));
  const groups = per.reduce((s, x) => s + x, 0);
  const partial = rt.temp(groups, 'f32');
  let o0 = 0;
  parts.forEach((q, j) => {
    rt.dispatch({ key: 'sumSquares:partial',
      bindings: [['A', 'f32', 'r'], ['O', 'f32', 'w']],
      uniform: 'n: u32, groups: u32, o0: u32', code: () => `
${reduceFns}
${rowMain(`  var s = 0.0;
  for (var j = row * ${WG}u + t; j < p.n; j += p.groups * ${WG}u) { let v = A[j]; s += v * v; }
  s = wgSum(s, t);
  if (t == 0u) { O[p.o0 + row] = s; }`)}` }, [q.buf, partial], new Uniform().u(q.n, per[j], o0), [per[j]]);
    o0 += per[j];
  });
  rt.dispatch({ key: 'sumSquares:final', bindings: [['A', 'f32', 'r'], ['O', 'f32', 'w']], uniform: 'n: u32, at: u32', code: () => `
${reduceFns}
${rowMain(`  var s = 0.0;
  for (var j = t; j < p.n; j += ${WG}u) { s += A[j]; }
  s = wgSum(s, t);
  if (t == 0u) { O[p.at] = s; }`)}` }, [partial, out], new Uniform().u(groups, at), [1]);
}

/** One workgroup adds the per-tensor sums of squares and writes the clip factor and the norm. */
export function clipScale(rt: Runtime, sumSq: GpuBuf, count: number, maxNorm: number, scale: number, out: GpuBuf): void {
  if (count > sumSq.length || out.length < 2) throw new Error(`clipScale: ${count} sums in a buffer of ${sumSq.length}, output of ${out.length} (needs 2)`);
  rt.dispatch({ key: 'clipScale', bindings: [['A', 'f32', 'r'], ['O', 'f32', 'w']], uniform: 'n: u32, maxNorm: f32, scale: f32', code: () => `
${reduceFns}
${rowMain(`  var s = 0.0;
  for (var j = t; j < p.n; j += ${WG}u) { s += A[j]; }
  s = wgSum(s, t);
  if (t == 0u) {
    let norm = sqrt(s) * p.scale;
    var f = 1.0;
    if (p.maxNorm > 0.0 && norm > p.maxNorm) { f = p.maxNorm / (norm + 1e-6); }
    O[0] = p.scale * f;
    O[1] = norm;
  }`)}` }, [sumSq, out], new Uniform().u(count).f(maxNorm, scale), [1]);
}

/** One thread per row keeps a sorted list of the best k (insertion, earlier index wins ties). */
export function topk(rt: Runtime, a: GpuBuf, rows: number, n: number, k: number, values: GpuBuf, indices: GpuBuf): void {
  const K = 2 ** Math.ceil(Math.log2(Math.max(k, 1)));
  if (K > 256) throw new Error(`webgpu topk supports k <= 256, got ${k}`);
  rt.dispatch({ key: `topk:${K}`,
    bindings: [['A', 'f32', 'r'], ['VAL', 'f32', 'w'], ['IDX', 'i32', 'w']],
    uniform: 'rows: u32, n: u32, k: u32', code: () => `
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let r = (wid.x + wid.y * nwg.x) * 64u + lid.x;
  if (r >= p.rows) { return; }
  var bv: array<f32, ${K}>;
  var bi: array<i32, ${K}>;
  var cnt = 0u;
  let base = r * p.n;
  for (var j = 0u; j < p.n; j++) {
    let val = A[base + j];
    if (cnt == p.k && !(val > bv[p.k - 1u])) { continue; }
    var q = p.k - 1u;
    if (cnt < p.k) { q = cnt; cnt++; }
    while (q > 0u && bv[q - 1u] < val) { bv[q] = bv[q - 1u]; bi[q] = bi[q - 1u]; q--; }
    bv[q] = val;
    bi[q] = i32(j);
  }
  for (var i = 0u; i < p.k; i++) { VAL[r * p.k + i] = bv[i]; IDX[r * p.k + i] = bi[i]; }
}` }, [a, values, indices], new Uniform().u(rows, n, k), rt.grid(Math.ceil(rows / 64)));
}
