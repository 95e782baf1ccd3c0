// Packed 1-bit FBI-Linear inference on WebGPU: the webgpu FbiKernels (src/backend/contracts.ts), with
// the CPU kernel's layout: sign bits row-major in i32 words, bit j % 32 of word j / 32 (least
// significant first), rows padded with zero bits; a set bit is +1, a clear bit -1.
//   column scales: y_ti = sum_j s_ij (alpha_j x_tj) + beta . x_t
//   row scales:    y_ti = alpha_i sum_j s_ij x_tj + beta_i sum(x_t)      (single: alpha_0, beta_0)
// A first pass scales the activations once per token into a zero-padded [M, 32 * words] buffer and
// takes the per-token bias term; the main pass gives each thread one output row and up to TM tokens,
// walking the row's words and adding or subtracting each activation by its bit. A single token
// (decode) takes one fused dispatch that spreads each row over 32 lanes (fbiPackedGemv). The signed sum is
// taken directly (not as 2 * (sum over set bits) - (sum of all)), which avoids that form's cancellation.
// The int8 mode quantizes the scaled activations in the first pass (as the CPU's int8 kernel does)
// and the main pass then sums small integers, exactly. With int8 subgroup matrices on the device
// (FRUGAL_WEBGPU_SUBGROUP_MATRIX=1 and a passing self-check), 16 or more int8 tokens take tensor cores
// (fbiMmaMatmul) for the same sums.
import { type FbiKernels, type FbiMatmulArgs, unsupported } from '../contracts.ts';
import { GpuBuf } from './pool.ts';
import { type Runtime, Uniform } from './runtime.ts';
import { scratch, scratchDone } from './peer-sort.ts';
import { header as subgroupHeader, SHARED_DEFAULT, sharedBlock, sharedKernelBody } from './kernels/subgroup-int8.ts';

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
  rows: number, inF: number, outF: number, y: GpuBuf, int8 = false): void {
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
  if (int8 && 127 * kpad >= 1 << 24) throw new Error(`webgpu packed FBI: int8 activations need in features < ${Math.floor((1 << 24) / 127)} (exact f32 sums), got ${inF}`);
  if (rows === 0) return;
  const code = PATTERN_CODE[pattern];
  if (rows === 1) {
    fbiPackedGemv(rt, x, bits, alpha, beta, inF, outF, wpr, code, int8, y);
    return;
  }
  const u = scratch(rt, rows * kpad, 'f32'), bias = scratch(rt, rows, 'f32'), dq = scratch(rt, rows, 'f32');
  rt.dispatch({ key: 'fbiPackedPrep',
    bindings: [['X', 'f32', 'r'], ['ALPHA', 'f32', 'r'], ['BETA', 'f32', 'r'], ['U', 'f32', 'w'], ['BIAS', 'f32', 'w'], ['DQ', 'f32', 'w']],
    uniform: 'M: u32, K: u32, kpad: u32, pattern: u32, quant: u32', code: () => `
var<workgroup> red: array<f32, ${LANES}>;
var<workgroup> amaxs: array<f32, ${LANES}>;
@compute @workgroup_size(${LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lidv: vec3<u32>) {
  let t = wid.x + wid.y * nwg.x;
  let lid = lidv.x;
  if (t >= p.M) { return; }
  var part = 0.0;
  var amax = 0.0;
  for (var j = lid; j < p.kpad; j += ${LANES}u) {
    var uj = 0.0;
    if (j < p.K) {
      let xj = X[t * p.K + j];
      if (p.pattern == 0u) { uj = ALPHA[j] * xj; part += BETA[j] * xj; } else { uj = xj; part += xj; }
    }
    U[t * p.kpad + j] = uj;
    amax = max(amax, abs(uj));
  }
  red[lid] = part;
  amaxs[lid] = amax;
  workgroupBarrier();
  for (var s = ${LANES / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] += red[lid + s]; amaxs[lid] = max(amaxs[lid], amaxs[lid + s]); }
    workgroupBarrier();
  }
  if (lid == 0u) { BIAS[t] = red[0]; DQ[t] = select(1.0, amaxs[0] / 127.0, p.quant == 1u); }
  if (p.quant == 1u) {
    // int8 activations: q = round(u / d) in [-127, 127], d = max|u| / 127 (round half to even, as the
    // CPU kernel's nearbyint); the main pass sums the integers exactly in f32 and scales by d.
    let m = amaxs[0];
    let inv = select(0.0, 127.0 / m, m > 0.0);
    for (var j = lid; j < p.K; j += ${LANES}u) {
      let i = t * p.kpad + j;
      U[i] = clamp(round(U[i] * inv), -127.0, 127.0);
    }
  }
}` }, [x, alpha, beta, u, bias, dq], new Uniform().u(rows, inF, kpad, code, int8 ? 1 : 0), rt.grid(rows));

  if (int8 && rt.int8Mma && rows >= MMA_MIN_ROWS) {
    fbiMmaMatmul(rt, bits, u, bias, dq, alpha, beta, rows, outF, wpr, kpad, code, y);
    scratchDone(rt, u, bias, dq);
    return;
  }
  const tm = TM;
  const tiles = Math.ceil(rows / tm), blocks = Math.ceil(outF / LANES);
  if (tiles > rt.maxWorkgroups || blocks > rt.maxWorkgroups) {
    throw new Error(`webgpu packed FBI: ${rows} tokens x ${outF} outputs exceed this adapter's ${rt.maxWorkgroups} workgroups per dimension; split the batch`);
  }
  rt.dispatch({ key: `fbiPackedMatmul:${tm}`,
    bindings: [['BITS', 'i32', 'r'], ['U', 'f32', 'r'], ['BIAS', 'f32', 'r'], ['DQ', 'f32', 'r'], ['ALPHA', 'f32', 'r'], ['BETA', 'f32', 'r'],
      ['Y', 'f32', 'w']],
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
    let sv = DQ[t] * acc[a];
    var yv = sv + BIAS[t];
    if (p.pattern != 0u) { yv = ALPHA[q] * sv + BETA[q] * BIAS[t]; }
    Y[t * p.N + i] = yv;
  }
}` }, [bits, u, bias, dq, alpha, beta, y], new Uniform().u(rows, outF, wpr, kpad, code), [blocks, tiles]);
  scratchDone(rt, u, bias, dq);
}

/** Fewest tokens that take the subgroup-matrix path (its tiles are 64 tokens; below 16 most would be padding). */
const MMA_MIN_ROWS = 16;

/**
 * int8 activations on subgroup matrices (tensor cores), for prefill: the quantized activations are
 * packed 4 per word, the staged kernel of kernels/subgroup-int8.ts expands the sign bits to +-1 bytes
 * in workgroup memory and accumulates exact i32 sums, and an epilogue applies the same scaling as the
 * scalar kernel (the sums are the same integers, so the outputs are identical).
 */
function fbiMmaMatmul(rt: Runtime, bits: GpuBuf, u: GpuBuf, bias: GpuBuf, dq: GpuBuf, alpha: GpuBuf, beta: GpuBuf,
  rows: number, outF: number, wpr: number, kpad: number, code: number, y: GpuBuf): void {
  const { spelling, sg } = rt.int8Mma!;
  const { bm, bn } = sharedBlock(SHARED_DEFAULT);
  const mb = Math.ceil(rows / bm), nb = Math.ceil(outF / bn);
  if (mb > rt.maxWorkgroups || nb > rt.maxWorkgroups) {
    throw new Error(`webgpu packed FBI: ${rows} tokens x ${outF} outputs exceed this adapter's ${rt.maxWorkgroups} workgroups per dimension; split the batch`);
  }
  const np = nb * bn, kw = kpad / 4;
  const a = scratch(rt, rows * kw, 'i32'), c = scratch(rt, mb * bm * np, 'i32');
  rt.dispatch({ key: 'fbiPackInt8', bindings: [['U', 'f32', 'r'], ['A', 'i32', 'w']], uniform: 'n: u32', code: () => `
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  var w = 0u;
  for (var j = 0u; j < 4u; j++) { w |= (u32(i32(U[4u * i + j])) & 255u) << (8u * j); }
  A[i] = i32(w);
}` }, [u, a], new Uniform().u(rows * kw), rt.grid(Math.ceil((rows * kw) / 256)));
  rt.dispatch({ key: `fbiMmaBits:${spelling}:${sg}`, directives: subgroupHeader(),
    bindings: [['A', 'i32', 'r'], ['B', 'i32', 'r'], ['C', 'i32', 'w']], uniform: 'M: u32, N: u32, Kw: u32, Np: u32, Bw: u32',
    code: () => sharedKernelBody(spelling, sg, SHARED_DEFAULT, true) }, [a, bits, c], new Uniform().u(rows, outF, kw, np, wpr), [nb, mb]);
  rt.dispatch({ key: 'fbiMmaEpilogue',
    bindings: [['C', 'i32', 'r'], ['BIAS', 'f32', 'r'], ['DQ', 'f32', 'r'], ['ALPHA', 'f32', 'r'], ['BETA', 'f32', 'r'], ['Y', 'f32', 'w']],
    uniform: 'M: u32, N: u32, Np: u32, pattern: u32', code: () => `
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = gid.x + gid.y * nwg.x * 256u;
  if (e >= p.M * p.N) { return; }
  let t = e / p.N;
  let i = e % p.N;
  let sv = DQ[t] * f32(C[t * p.Np + i]);
  var yv = sv + BIAS[t];
  if (p.pattern != 0u) {
    let q = select(0u, i, p.pattern == 1u);
    yv = ALPHA[q] * sv + BETA[q] * BIAS[t];
  }
  Y[e] = yv;
}` }, [c, bias, dq, alpha, beta, y], new Uniform().u(rows, outF, np, code), rt.grid(Math.ceil((rows * outF) / 256)));
  scratchDone(rt, a, c);
}

/** Output rows per workgroup of the one-token kernel (8 warps of 32 lanes, GEMV_ROWS / 8 rows each). */
const GEMV_ROWS = 16;
/** Words of a row per staged chunk of the one-token kernel (32 inputs each). */
const GEMV_CHUNK = 64;

/**
 * One token (decode), in one dispatch of 256 threads per GEMV_ROWS output rows:
 *  1. the token's bias term and absmax over all 256 threads (a tree in workgroup memory);
 *  2. per chunk of GEMV_CHUNK words (32 GEMV_CHUNK inputs): the activations, scaled (and quantized in
 *     int8 mode) once, staged in workgroup memory bit-major (input 32 w + b at b * (GEMV_CHUNK + 1) + w,
 *     so the lanes of a warp, which take consecutive words, read consecutive banks);
 *  3. each warp takes GEMV_ROWS / 8 rows, lane l the words l, l + 32, ... of the chunk: one
 *     coalesced read of the row's sign words, 32 signed adds per word from workgroup memory;
 *  4. the 32 lanes' sums in a fixed tree, scaled as the batched kernel's epilogue does.
 * In int8 mode the sums are of integers (exact in f32), so only the bias term's order differs from
 * the batched kernel. The previous one-token kernel gave each row 32 lanes that walked its words one
 * by one and re-scaled the activations for every row: 57 us per product at the fbi-1.3b shapes on
 * an H200, the whole of a replayed token's GPU time (bench/NOTES.md).
 */
function fbiPackedGemv(rt: Runtime, x: GpuBuf, bits: GpuBuf, alpha: GpuBuf, beta: GpuBuf, inF: number, outF: number, wpr: number,
  code: number, int8: boolean, y: GpuBuf): void {
  const groups = Math.ceil(outF / GEMV_ROWS);
  const per = GEMV_ROWS / 8, pitch = GEMV_CHUNK + 1;
  const R = [...Array(per).keys()];
  rt.dispatch({ key: 'fbiPackedGemv',
    bindings: [['X', 'f32', 'r'], ['BITS', 'i32', 'r'], ['ALPHA', 'f32', 'r'], ['BETA', 'f32', 'r'], ['Y', 'f32', 'w']],
    uniform: 'N: u32, K: u32, wpr: u32, pattern: u32, quant: u32', code: () => `
var<workgroup> xs: array<f32, ${32 * pitch}>;
var<workgroup> red: array<f32, 256>;
var<workgroup> amaxs: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  var bsum = 0.0;
  var amax = 0.0;
  for (var j = lid; j < p.K; j += 256u) {
    let xj = X[j];
    var uj = xj;
    if (p.pattern == 0u) { uj = ALPHA[j] * xj; bsum += BETA[j] * xj; } else { bsum += xj; }
    amax = max(amax, abs(uj));
  }
  red[lid] = bsum;
  amaxs[lid] = amax;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] += red[lid + s]; amaxs[lid] = max(amaxs[lid], amaxs[lid + s]); }
    workgroupBarrier();
  }
  let bias = red[0];
  let m = amaxs[0];
  let dq = select(1.0, m / 127.0, p.quant == 1u);
  let inv = select(0.0, 127.0 / m, m > 0.0);
  let g = wid.x + wid.y * nwg.x;
  let warp = lid / 32u;
  let lane = lid % 32u;
${R.map((r) => `  let r${r} = g * ${GEMV_ROWS}u + warp * ${per}u + ${r}u;
  let i${r} = min(r${r}, p.N - 1u) * p.wpr;
  var acc${r} = 0.0;`).join('\n')}
  for (var w0 = 0u; w0 < p.wpr; w0 += ${GEMV_CHUNK}u) {
    let cw = min(${GEMV_CHUNK}u, p.wpr - w0);
    workgroupBarrier();
    for (var e = lid; e < cw * 32u; e += 256u) {
      let j = w0 * 32u + e;
      var uj = 0.0;
      if (j < p.K) {
        uj = X[j];
        if (p.pattern == 0u) { uj = ALPHA[j] * uj; }
        if (p.quant == 1u) { uj = clamp(round(uj * inv), -127.0, 127.0); }
      }
      xs[(e % 32u) * ${pitch}u + e / 32u] = uj;
    }
    workgroupBarrier();
    for (var wl = lane; wl < cw; wl += 32u) {
${R.map((r) => `      let word${r} = u32(BITS[i${r} + w0 + wl]);`).join('\n')}
      for (var b = 0u; b < 32u; b++) {
        let v = xs[b * ${pitch}u + wl];
${R.map((r) => `        acc${r} += select(-v, v, ((word${r} >> b) & 1u) == 1u);`).join('\n')}
      }
    }
  }
${R.map((r) => `  workgroupBarrier();
  red[lid] = acc${r};
  workgroupBarrier();
  for (var s = 16u; s > 0u; s = s >> 1u) {
    if (lane < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  if (lane == 0u && r${r} < p.N) {
    let sv = dq * red[lid];
    var yv = sv + bias;
    if (p.pattern != 0u) {
      let q = select(0u, r${r}, p.pattern == 1u);
      yv = ALPHA[q] * sv + BETA[q] * bias;
    }
    Y[r${r}] = yv;
  }`).join('\n')}
}` }, [x, bits, alpha, beta, y], new Uniform().u(outF, inF, wpr, code, int8 ? 1 : 0), rt.grid(groups));
}

/** The webgpu FBI table, bound to a runtime (packing, the f16/int8 heads and GGUF blocks have no webgpu kernel). */
export function webgpuFbi(rt: Runtime): FbiKernels {
  const run = (a: FbiMatmulArgs, int8: boolean) => fbiPackedMatmul(rt, buf(a.x, 'x'), buf(a.bits, 'sign bits'), buf(a.alpha, 'wscale'),
    buf(a.beta, 'wbias'), a.pattern, a.rows, a.inF, a.outF, buf(a.y, 'y'), int8);
  return {
    packedMatmul: (a) => run(a, false),
    int8Matmul: (a) => run(a, true),
    packSigns: unsupported('webgpu', 'fbi.packSigns'),
    f16Matmul: unsupported('webgpu', 'fbi.f16Matmul'),
    int8HeadMatmul: unsupported('webgpu', 'fbi.int8HeadMatmul'),
    quantMatmul: unsupported('webgpu', 'fbi.quantMatmul'),
    decodeStack: unsupported('webgpu', 'fbi.decodeStack'),
  };
}
