// Packed 1-bit FBI-Linear inference on WebGPU, with the CPU kernel's argument order and layout
// (src/backend/cpu/fbi.ts): sign bits row-major in i32 words, bit j % 32 of word j / 32 (least
// significant first), rows padded with zero bits; a set bit is +1, a clear bit -1.
//   column scales: y_ti = sum_j s_ij (alpha_j x_tj) + beta . x_t
//   row scales:    y_ti = alpha_i sum_j s_ij x_tj + beta_i sum(x_t)      (single: alpha_0, beta_0)
// A first pass scales the activations once per token into a zero-padded [M, 32 * words] buffer and
// takes the per-token bias term; the main pass gives each thread one output row and up to TM tokens,
// walking the row's words and adding or subtracting each activation by its bit. The signed sum is
// taken directly (not as 2 * (sum over set bits) - (sum of all)), which avoids that form's cancellation.
import { GpuBuf } from './pool.ts';
import { type Runtime, Uniform } from './runtime.ts';
import { scratch, scratchDone } from './peer-sort.ts';

const PATTERN_CODE = { column: 0, row: 1, single: 2 } as const;
type Pattern = keyof typeof PATTERN_CODE;
const LANES = 64;
/** Tokens per thread when more than one token comes in (each sign bit is then used TM times). */
const TM = 4;

function buf(b: unknown, what: string): GpuBuf {
  if (!(b instanceof GpuBuf)) throw new Error(`webgpu packed FBI: ${what} is not a webgpu buffer; move the tensor with toDevice() first`);
  if (b.released) throw new Error(`webgpu packed FBI: ${what} was freed (a disposed tensor was read)`);
  return b;
}

function checkLen(what: string, b: GpuBuf, need: number): void {
  if (b.length < need) throw new Error(`packed FBI: ${what} has ${b.length} elements, needs ${need}`);
}

/** y [rows, out] = x [rows, in] @ (alpha * S + beta)^T from sign bits [out, ceil(in / 32)] (all webgpu buffers). */
export function fbiPackedMatmul(rt: Runtime, x: GpuBuf, bits: GpuBuf, alpha: GpuBuf, beta: GpuBuf, pattern: Pattern,
  rows: number, inF: number, outF: number, y: GpuBuf): void {
  for (const [n, v] of [['in', inF], ['out', outF]] as const) {
    if (!Number.isSafeInteger(v) || v <= 0) throw new Error(`packed FBI: ${n} features must be a positive integer, got ${v}`);
  }
  if (!Number.isSafeInteger(rows) || rows < 0) throw new Error(`packed FBI: rows must be a non-negative integer, got ${rows}`);
  if (!(pattern in PATTERN_CODE)) throw new Error(`packed FBI: scale pattern must be column | row | single, got ${JSON.stringify(pattern)}`);
  const wpr = Math.ceil(inF / 32), kpad = wpr * 32;
  const ns = pattern === 'column' ? inF : pattern === 'row' ? outF : 1;
  checkLen('x', x, rows * inF);
  checkLen('sign bits', bits, outF * wpr);
  checkLen('wscale', alpha, ns);
  checkLen('wbias', beta, ns);
  checkLen('y', y, rows * outF);
  if (rows === 0) return;
  const code = PATTERN_CODE[pattern];
  const u = scratch(rt, rows * kpad, 'f32'), bias = scratch(rt, rows, 'f32');
  rt.dispatch({ key: 'fbiPackedPrep',
    bindings: [['X', 'f32', 'r'], ['ALPHA', 'f32', 'r'], ['BETA', 'f32', 'r'], ['U', 'f32', 'w'], ['BIAS', 'f32', 'w']],
    uniform: 'M: u32, K: u32, kpad: u32, pattern: u32', code: () => `
var<workgroup> red: array<f32, ${LANES}>;
@compute @workgroup_size(${LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lidv: vec3<u32>) {
  let t = wid.x + wid.y * nwg.x;
  let lid = lidv.x;
  if (t >= p.M) { return; }
  var part = 0.0;
  for (var j = lid; j < p.kpad; j += ${LANES}u) {
    var uj = 0.0;
    if (j < p.K) {
      let xj = X[t * p.K + j];
      if (p.pattern == 0u) { uj = ALPHA[j] * xj; part += BETA[j] * xj; } else { uj = xj; part += xj; }
    }
    U[t * p.kpad + j] = uj;
  }
  red[lid] = part;
  workgroupBarrier();
  for (var s = ${LANES / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) { BIAS[t] = red[0]; }
}` }, [x, alpha, beta, u, bias], new Uniform().u(rows, inF, kpad, code), rt.grid(rows));

  const tm = rows === 1 ? 1 : TM;
  const tiles = Math.ceil(rows / tm), blocks = Math.ceil(outF / LANES);
  if (tiles > rt.maxWorkgroups || blocks > rt.maxWorkgroups) {
    throw new Error(`webgpu packed FBI: ${rows} tokens x ${outF} outputs exceed this adapter's ${rt.maxWorkgroups} workgroups per dimension; split the batch`);
  }
  rt.dispatch({ key: `fbiPackedMatmul:${tm}`,
    bindings: [['BITS', 'i32', 'r'], ['U', 'f32', 'r'], ['BIAS', 'f32', 'r'], ['ALPHA', 'f32', 'r'], ['BETA', 'f32', 'r'], ['Y', 'f32', 'w']],
    uniform: 'M: u32, N: u32, wpr: u32, kpad: u32, pattern: u32', code: () => `
@compute @workgroup_size(${LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lidv: vec3<u32>) {
  let i = wid.x * ${LANES}u + lidv.x;
  if (i >= p.N) { return; }
  let t0 = wid.y * ${tm}u;
  // Tokens past the batch repeat the last one (reads stay in range); their results are dropped.
  var ub: array<u32, ${tm}>;
  for (var a = 0u; a < ${tm}u; a++) { ub[a] = min(t0 + a, p.M - 1u) * p.kpad; }
  var acc: array<f32, ${tm}>;
  for (var w = 0u; w < p.wpr; w++) {
    let word = u32(BITS[i * p.wpr + w]);
    let base = w * 32u;
    for (var b = 0u; b < 32u; b++) {
      let plus = ((word >> b) & 1u) == 1u;
      for (var a = 0u; a < ${tm}u; a++) {
        let uj = U[ub[a] + base + b];
        acc[a] += select(-uj, uj, plus);
      }
    }
  }
  let q = select(0u, i, p.pattern == 1u);
  for (var a = 0u; a < ${tm}u; a++) {
    let t = t0 + a;
    if (t >= p.M) { break; }
    var yv = acc[a] + BIAS[t];
    if (p.pattern != 0u) { yv = ALPHA[q] * acc[a] + BETA[q] * BIAS[t]; }
    Y[t * p.N + i] = yv;
  }
}` }, [bits, u, bias, alpha, beta, y], new Uniform().u(rows, outF, wpr, kpad, code), [blocks, tiles]);
  scratchDone(rt, u, bias);
}

/** The packed FBI entry of the webgpu extra table, bound to a runtime. */
export function fbiKernels(rt: Runtime): Record<string, (...args: any[]) => any> {
  return {
    fbiPackedMatmul: (x: unknown, bits: unknown, alpha: unknown, beta: unknown, pattern: Pattern, rows: number, inF: number,
      outF: number, y: unknown) =>
      fbiPackedMatmul(rt, buf(x, 'x'), buf(bits, 'sign bits'), buf(alpha, 'wscale'), buf(beta, 'wbias'), pattern, rows, inF, outF, buf(y, 'y')),
  };
}
