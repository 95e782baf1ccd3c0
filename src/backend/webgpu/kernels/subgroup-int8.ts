// int8 x int8 -> i32 matrix products on subgroup matrices (Dawn's experimental
// `chromium-experimental-subgroup-matrix` feature, tensor cores on NVIDIA through Vulkan cooperative
// matrices), for the configuration M16 x N16 x K32: left subgroup_matrix_left<i8, 32, 16> (16 rows,
// 32 columns), right subgroup_matrix_right<i8, 16, 32>, result subgroup_matrix_result<i32, 16, 16>.
//
// Layouts (all row-major): A [M, K] int8 activations, 4 per i32 word, element k of a row in byte
// k % 4 (least significant first) of word k / 4; B [N, K] int8 weights in the same packing, or
// sign bits [N, ceil(K / 32)] words (bit k % 32 of word k / 32, set = +1, clear = -1); C [Mp, Np]
// i32 with Mp, Np the sizes rounded up to whole workgroup blocks. C = A B^T: the right matrix is B
// read column-major (element (k, n) at n * K + k). Offsets and strides of the builtins count i8
// elements, not words.
//
// Two WGSL spellings exist for the load and store builtins: the current one takes the majorness as a
// template argument (subgroupMatrixLoad<T, col_major>(p, offset, stride)), the older one as a bool
// argument (subgroupMatrixLoad<T>(p, offset, col_major, stride)); a given Dawn accepts one or both
// (the older one with a deprecation warning where both exist).

export type Spelling = 'template' | 'bool';

const LEFT = 'subgroup_matrix_left<i8, 32, 16>';
const RIGHT = 'subgroup_matrix_right<i8, 16, 32>';
const RESULT = 'subgroup_matrix_result<i32, 16, 16>';

function load(sp: Spelling, type: string, ptr: string, off: string, colMajor: boolean, stride: string): string {
  return sp === 'template'
    ? `subgroupMatrixLoad<${type}, ${colMajor ? 'col_major' : 'row_major'}>(${ptr}, ${off}, ${stride})`
    : `subgroupMatrixLoad<${type}>(${ptr}, ${off}, ${colMajor}, ${stride})`;
}

function store(sp: Spelling, ptr: string, off: string, val: string, stride: string): string {
  return sp === 'template'
    ? `subgroupMatrixStore<row_major>(${ptr}, ${off}, ${val}, ${stride})`
    : `subgroupMatrixStore(${ptr}, ${off}, ${val}, false, ${stride})`;
}

/** Directives every kernel starts with; subgroup-index-dependent offsets are subgroup-uniform only. */
export function header(): string {
  return `enable chromium_experimental_subgroup_matrix;
diagnostic(off, chromium.subgroup_matrix_uniformity);
diagnostic(off, subgroup_uniformity);
`;
}

/** One 16 x 16 x 32 tile: C = A B^T with A [16, 32], B [16, 32] int8, C [16, 16] i32 (one subgroup). */
export function tileKernel(sp: Spelling, sg: number): string {
  return `${header()}
@group(0) @binding(0) var<storage, read> A: array<i32>;
@group(0) @binding(1) var<storage, read> B: array<i32>;
@group(0) @binding(2) var<storage, read_write> C: array<i32>;
@compute @workgroup_size(${sg})
fn main() {
  let a = ${load(sp, LEFT, '&A', '0u', false, '32u')};
  let b = ${load(sp, RIGHT, '&B', '0u', true, '32u')};
  let c = subgroupMatrixMultiplyAccumulate(a, b, ${RESULT}());
  ${store(sp, '&C', '0u', 'c', '16u')};
}`;
}

export interface GemmShape { tm: number; tn: number }

/**
 * One subgroup per workgroup, tm x tn result tiles per subgroup, operands read straight from storage.
 * Needs M % (16 tm) == 0, N % (16 tn) == 0, K % 32 == 0. Uniform P: M, N, K (elements), Np (C stride).
 */
export function directKernel(sp: Spelling, sg: number, shape: GemmShape, baked?: { K: number; Np: number }): string {
  return `${header()}
struct P { M: u32, N: u32, K: u32, Np: u32 }
@group(0) @binding(0) var<storage, read> A: array<i32>;
@group(0) @binding(1) var<storage, read> B: array<i32>;
@group(0) @binding(2) var<storage, read_write> C: array<i32>;
@group(0) @binding(3) var<uniform> p: P;
${directKernelBody(sp, sg, shape, baked)}`;
}

/**
 * directKernel without directives and declarations; `baked` writes K and the C stride into the
 * shader as constants (strides and offsets then are compile-time values, not uniform reads).
 */
export function directKernelBody(sp: Spelling, sg: number, { tm, tn }: GemmShape, baked?: { K: number; Np: number }): string {
  const K = baked ? `${baked.K}u` : 'p.K', NP = baked ? `${baked.Np}u` : 'p.Np';
  const lines: string[] = [];
  for (let i = 0; i < tm; i++) for (let j = 0; j < tn; j++) lines.push(`  var c${i}_${j} = ${RESULT}();`);
  const body: string[] = [];
  for (let i = 0; i < tm; i++) body.push(`    let a${i} = ${load(sp, LEFT, '&A', `(m0 + ${16 * i}u) * ${K} + k`, false, K)};`);
  for (let j = 0; j < tn; j++) body.push(`    let b${j} = ${load(sp, RIGHT, '&B', `(n0 + ${16 * j}u) * ${K} + k`, true, K)};`);
  for (let i = 0; i < tm; i++) for (let j = 0; j < tn; j++) body.push(`    c${i}_${j} = subgroupMatrixMultiplyAccumulate(a${i}, b${j}, c${i}_${j});`);
  const st: string[] = [];
  for (let i = 0; i < tm; i++) for (let j = 0; j < tn; j++) st.push(`  ${store(sp, '&C', `(m0 + ${16 * i}u) * ${NP} + n0 + ${16 * j}u`, `c${i}_${j}`, NP)};`);
  return `@compute @workgroup_size(${sg})
fn main(@builtin(workgroup_id) wid: vec3<u32>) {
  let m0 = wid.y * ${16 * tm}u;
  let n0 = wid.x * ${16 * tn}u;
${lines.join('\n')}
  _ = p.M;
  for (var k = 0u; k < ${K}; k += 32u) {
${body.join('\n')}
  }
${st.join('\n')}
}`;
}

export interface SharedShape {
  /** Subgroups per workgroup along M and N. */
  sgm: number; sgn: number;
  /** Result tiles per subgroup along M and N. */
  tm: number; tn: number;
  /** K elements staged per step (a multiple of 32). */
  kb: number;
}
export const SHARED_DEFAULT: SharedShape = { sgm: 2, sgn: 2, tm: 2, tn: 4, kb: 64 };

/** Workgroup block sizes (rows of A, rows of B) of a shared kernel. */
export function sharedBlock(s: SharedShape): { bm: number; bn: number; threads: (sg: number) => number } {
  return { bm: s.sgm * s.tm * 16, bn: s.sgn * s.tn * 16, threads: (sg) => sg * s.sgm * s.sgn };
}

/**
 * A and B staged through workgroup memory, kb elements of K at a time; several subgroups share each
 * staged block. B is int8 words (`bits` false) or sign bits expanded to +-1 bytes while staging
 * (`bits` true). Any M, N; K % 4 == 0 (int8 B) or any K (bits, with A zero past K up to a multiple
 * of 4). Uniform P: M, N, Kw (A words per row), Np (C stride), Bw (B words per row).
 * Dispatch [ceil(N / bn), ceil(M / bm)] workgroups; C needs ceil(M / bm) bm rows of Np =
 * ceil(N / bn) bn.
 */
export function sharedKernel(sp: Spelling, sg: number, s: SharedShape, bits: boolean): string {
  return `${header()}
${SHARED_DECLS}
${sharedKernelBody(sp, sg, s, bits)}`;
}

/** The bindings sharedKernelBody expects, in order (as the runtime declares them from a KernelSpec). */
export const SHARED_DECLS = `@group(0) @binding(0) var<storage, read> A: array<i32>;
@group(0) @binding(1) var<storage, read> B: array<i32>;
@group(0) @binding(2) var<storage, read_write> C: array<i32>;
struct P { M: u32, N: u32, Kw: u32, Np: u32, Bw: u32 }
@group(0) @binding(3) var<uniform> p: P;`;

/** sharedKernel without its directives and declarations. */
export function sharedKernelBody(sp: Spelling, sg: number, s: SharedShape, bits: boolean): string {
  const { bm, bn } = sharedBlock(s);
  const threads = sg * s.sgm * s.sgn;
  const kw = s.kb / 4; // staged words per row
  if (s.kb % 32 !== 0) throw new Error(`subgroup int8 kernel: kb must be a multiple of 32, got ${s.kb}`);
  const decl: string[] = [];
  for (let i = 0; i < s.tm; i++) for (let j = 0; j < s.tn; j++) decl.push(`  var c${i}_${j} = ${RESULT}();`);
  const mma: string[] = [];
  for (let kk = 0; kk < s.kb; kk += 32) {
    for (let i = 0; i < s.tm; i++) mma.push(`    let a${i}_${kk} = ${load(sp, LEFT, '&As', `(sm + ${16 * i}u) * ${s.kb}u + ${kk}u`, false, `${s.kb}u`)};`);
    for (let j = 0; j < s.tn; j++) mma.push(`    let b${j}_${kk} = ${load(sp, RIGHT, '&Bs', `(sn + ${16 * j}u) * ${s.kb}u + ${kk}u`, true, `${s.kb}u`)};`);
    for (let i = 0; i < s.tm; i++) for (let j = 0; j < s.tn; j++) mma.push(`    c${i}_${j} = subgroupMatrixMultiplyAccumulate(a${i}_${kk}, b${j}_${kk}, c${i}_${j});`);
  }
  const st: string[] = [];
  for (let i = 0; i < s.tm; i++) for (let j = 0; j < s.tn; j++) {
    st.push(`  ${store(sp, '&C', `(m0 + sm + ${16 * i}u) * p.Np + n0 + sn + ${16 * j}u`, `c${i}_${j}`, 'p.Np')};`);
  }
  const stageB = bits ? `
  // Sign bits: each staged row takes kb / 32 words; a nibble of 4 bits becomes 4 bytes of +1 / -1:
  // spread the bits to the low bit of each byte (s), then ~(s * 254) maps 1 -> 0x01, 0 -> 0xff.
  for (var r = lidx; r < ${bn * (s.kb / 32)}u; r += ${threads}u) {
    let row = r / ${s.kb / 32}u;
    let wsub = r % ${s.kb / 32}u;
    let n = n0 + row;
    let wi = k0 / 32u + wsub;
    var word = 0u;
    if (n < p.N && wi < p.Bw) { word = u32(B[n * p.Bw + wi]); }
    for (var q = 0u; q < 8u; q++) {
      let nib = (word >> (4u * q)) & 15u;
      let spread = (nib & 1u) | ((nib & 2u) << 7u) | ((nib & 4u) << 14u) | ((nib & 8u) << 21u);
      Bs[row * ${kw}u + wsub * 8u + q] = i32(~(spread * 254u));
    }
  }` : `
  for (var w = lidx; w < ${bn * kw}u; w += ${threads}u) {
    let row = w / ${kw}u;
    let n = n0 + row;
    let wi = k0 / 4u + w % ${kw}u;
    var v = 0;
    if (n < p.N && wi < p.Bw) { v = B[n * p.Bw + wi]; }
    Bs[w] = v;
  }`;
  return `var<workgroup> As: array<i32, ${bm * kw}>;
var<workgroup> Bs: array<i32, ${bn * kw}>;
@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let m0 = wid.y * ${bm}u;
  let n0 = wid.x * ${bn}u;
  let g = lidx / ${sg}u;
  let sm = (g / ${s.sgn}u) * ${s.tm * 16}u;
  let sn = (g % ${s.sgn}u) * ${s.tn * 16}u;
${decl.join('\n')}
  for (var k0 = 0u; k0 < p.Kw * 4u; k0 += ${s.kb}u) {
    for (var w = lidx; w < ${bm * kw}u; w += ${threads}u) {
      let m = m0 + w / ${kw}u;
      let wi = k0 / 4u + w % ${kw}u;
      var v = 0;
      if (m < p.M && wi < p.Kw) { v = A[m * p.Kw + wi]; }
      As[w] = v;
    }${stageB}
    workgroupBarrier();
${mma.join('\n')}
    workgroupBarrier();
  }
${st.join('\n')}
}`;
}

/**
 * Whether `device` runs the int8 subgroup-matrix kernels correctly, and in which spelling: compiles
 * the one-tile kernel in each spelling (errors scoped, nothing raised) and runs it on random values
 * against the host's integer product, then the staged sign-bit kernel on a small odd shape. Null when the feature, the M16 N16 K32 i8 configuration or a
 * fixed subgroup size is missing, or no spelling gives the exact product.
 */
export async function checkSubgroupInt8(device: GPUDevice): Promise<{ spelling: Spelling; sg: number } | null> {
  if (!device.features.has('chromium-experimental-subgroup-matrix' as GPUFeatureName)) return null;
  const info = (device as unknown as { adapterInfo?: Record<string, unknown> }).adapterInfo ?? {};
  const sg = Number(info.subgroupMaxSize), sgMin = Number(info.subgroupMinSize);
  if (!Number.isInteger(sg) || sg !== sgMin) return null;
  const configs = (info.subgroupMatrixConfigs as { componentType: string; resultComponentType: string; M: number; N: number; K: number }[] | undefined) ?? [];
  if (!configs.some((c) => c.componentType === 'i8' && c.resultComponentType === 'i32' && c.M === 16 && c.N === 16 && c.K === 32)) return null;
  const a = new Int8Array(16 * 32), b = new Int8Array(16 * 32);
  let x = 12345;
  for (const v of [a, b]) for (let i = 0; i < v.length; i++) { x = (Math.imul(x, 1103515245) + 12345) >>> 0; v[i] = ((x >>> 16) % 255) - 127; }
  const want = new Int32Array(256);
  for (let i = 0; i < 16; i++) for (let n = 0; n < 16; n++) { let s = 0; for (let k = 0; k < 32; k++) s += a[i * 32 + k] * b[n * 32 + k]; want[i * 16 + n] = s; }
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
  const A = device.createBuffer({ size: a.byteLength, usage }), B = device.createBuffer({ size: b.byteLength, usage });
  const C = device.createBuffer({ size: 1024, usage }), R = device.createBuffer({ size: 1024, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
  device.queue.writeBuffer(A, 0, a);
  device.queue.writeBuffer(B, 0, b);
  try {
    for (const sp of ['template', 'bool'] as Spelling[]) {
      device.pushErrorScope('validation');
      const module = device.createShaderModule({ code: tileKernel(sp, sg) });
      const pipe = await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } }).catch(() => null);
      const err = await device.popErrorScope();
      if (!pipe || err) continue;
      const group = device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries: [A, B, C].map((buffer, binding) => ({ binding, resource: { buffer } })) });
      const enc = device.createCommandEncoder();
      enc.clearBuffer(C);
      const pass = enc.beginComputePass();
      pass.setPipeline(pipe);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(1);
      pass.end();
      enc.copyBufferToBuffer(C, 0, R, 0, 1024);
      device.queue.submit([enc.finish()]);
      await R.mapAsync(GPUMapMode.READ);
      const got = new Int32Array(R.getMappedRange().slice(0));
      R.unmap();
      if (got.every((v, i) => v === want[i]) && await checkSharedBits(device, sp, sg)) return { spelling: sp, sg };
    }
    return null;
  } finally {
    for (const buf of [A, B, C, R]) buf.destroy();
  }
}

/** The staged sign-bit kernel (the one packed FBI prefill runs) on a small odd shape, every entry exact. */
async function checkSharedBits(device: GPUDevice, sp: Spelling, sg: number): Promise<boolean> {
  const M = 70, N = 130, K = 100, kw = Math.ceil(K / 4), wpr = Math.ceil(K / 32);
  const { bm, bn } = sharedBlock(SHARED_DEFAULT);
  const mb = Math.ceil(M / bm), nb = Math.ceil(N / bn), np = nb * bn;
  const a = new Int8Array(M * kw * 4), bits = new Int32Array(N * wpr);
  let x = 987654321;
  const next = () => { x = (Math.imul(x, 1103515245) + 12345) >>> 0; return x; };
  for (let i = 0; i < M; i++) for (let k = 0; k < K; k++) a[i * kw * 4 + k] = ((next() >>> 16) % 255) - 127;
  for (let i = 0; i < bits.length; i++) bits[i] = next() | 0;
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ code: sharedKernel(sp, sg, SHARED_DEFAULT, true) });
  const pipe = await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } }).catch(() => null);
  if (await device.popErrorScope() || !pipe) return false;
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
  const bytes = mb * bm * np * 4;
  const A = device.createBuffer({ size: a.byteLength, usage }), B = device.createBuffer({ size: bits.byteLength, usage });
  const C = device.createBuffer({ size: bytes, usage }), R = device.createBuffer({ size: bytes, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
  const U = device.createBuffer({ size: 32, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  try {
    device.queue.writeBuffer(A, 0, a);
    device.queue.writeBuffer(B, 0, bits);
    device.queue.writeBuffer(U, 0, new Uint32Array([M, N, kw, np, wpr, 0, 0, 0]));
    const group = device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries: [A, B, C, U].map((buffer, binding) => ({ binding, resource: { buffer } })) });
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipe);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(nb, mb);
    pass.end();
    enc.copyBufferToBuffer(C, 0, R, 0, bytes);
    device.queue.submit([enc.finish()]);
    await R.mapAsync(GPUMapMode.READ);
    const got = new Int32Array(R.getMappedRange().slice(0));
    R.unmap();
    for (let i = 0; i < M; i++) for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += a[i * kw * 4 + k] * (((bits[n * wpr + (k >> 5)] >>> (k & 31)) & 1) ? 1 : -1);
      if (got[i * np + n] !== acc) return false;
    }
    return true;
  } finally {
    for (const buf of [A, B, C, R, U]) buf.destroy();
  }
}
