// The WebGPU matmul kernel shapes and k-loop schedules that were measured against the production
// kernel (src/backend/webgpu/kernels/matmul.ts, quadrant 2 x 2, BK 16, one slice buffer) and lost:
// kept here so a benchmark can compare them on a new GPU. Each is dispatched through the runtime
// like the production kernel; a shape a variant cannot take (small products, operands without vec4
// loads, more workgroup memory than the adapter has) runs the production path instead.
import type { GpuBuf } from '../../src/backend/webgpu/pool.ts';
import type { Runtime } from '../../src/backend/webgpu/runtime.ts';
import {
  BIG, matmul, type MatmulParams, matmulUniform, type Quad, type QuadSchedule, quadSharedBytes, quadSpec, tiledSpec,
} from '../../src/backend/webgpu/kernels/matmul.ts';

/**
 * Register prefetch: the next slice is loaded from global memory into registers while the current
 * one is multiplied, into a second workgroup buffer, so each slice needs one barrier.
 */
const prefetch: QuadSchedule = {
  buffers: 2,
  loop: (A, B, compute, bk) => `${A.load('0u')}
${B.load('0u')}
${A.store('0u')}
${B.store('0u')}
  workgroupBarrier();
  var cur = 0u;
  for (var k0 = 0u; k0 < p.k; k0 += ${bk}u) {
    let more = k0 + ${bk}u < p.k;
    if (more) {
${A.load(`(k0 + ${bk}u)`)}
${B.load(`(k0 + ${bk}u)`)}
    }
${compute('cur')}
    if (more) {
${A.store('(cur ^ 1u)')}
${B.store('(cur ^ 1u)')}
    }
    workgroupBarrier();
    cur ^= 1u;
  }`,
};

interface Variant { quad: Quad; schedule?: QuadSchedule }
const QUADS: Record<string, Variant> = {
  quad16: { quad: { qm: 2, qn: 2, bk: 16 } },
  quad8pf: { quad: { qm: 2, qn: 2, bk: 8 }, schedule: prefetch },
  quad16pf: { quad: { qm: 2, qn: 2, bk: 16 }, schedule: prefetch },
  wide8pf: { quad: { qm: 2, qn: 4, bk: 8 }, schedule: prefetch },
  tall8pf: { quad: { qm: 4, qn: 2, bk: 8 }, schedule: prefetch },
  wide16: { quad: { qm: 2, qn: 4, bk: 16 } },
};

/** 'base' (the strided 8 x 8 kernel at every large shape) and the quadrant variants; quad16 is production's. */
export const MATMUL_VARIANTS: readonly string[] = ['base', ...Object.keys(QUADS)];

function variant(name: string): Variant | null {
  if (!MATMUL_VARIANTS.includes(name)) throw new Error(`webgpu matmul: unknown variant '${name}'; use one of ${MATMUL_VARIANTS.join(', ')}`);
  return QUADS[name] ?? null;
}

/** Workgroup memory a variant needs (0 for 'base'); above the adapter's limit it runs the production path. */
export function matmulVariantSharedBytes(name: string): number {
  const v = variant(name);
  return v ? quadSharedBytes(v.quad, v.schedule) : 0;
}

/** C = alpha * op(A) op(B) + beta * C with the named variant where it applies (see the file comment). */
export function matmulVariant(rt: Runtime, name: string, a: GpuBuf, b: GpuBuf, c: GpuBuf, q: MatmulParams): void {
  const v = variant(name);
  const { batch, m, n, k } = q;
  const vecA = (q.transA ? m % 4 === 0 : k % 4 === 0) && q.strideA % 4 === 0;
  const vecB = (q.transB ? k % 4 === 0 : n % 4 === 0) && q.strideB % 4 === 0;
  const large = batch > 0 && m * n * batch >= 256 * 256 && k > 0 && q.alpha !== 0;
  if (large && !v) {
    rt.dispatch(tiledSpec(BIG, q.transA, q.transB, vecA, vecB), [a, b, c], matmulUniform(q),
      [Math.ceil(n / BIG.tn), Math.ceil(m / BIG.tm), batch]);
    return;
  }
  if (large && v && vecA && vecB && matmulVariantSharedBytes(name) <= rt.maxWorkgroupStorage) {
    const vecC = n % 4 === 0 && q.strideC % 4 === 0;
    rt.dispatch(quadSpec(v.quad, q.transA, q.transB, vecC, v.schedule, name), [a, b, c], matmulUniform(q),
      [Math.ceil(n / (64 * v.quad.qn)), Math.ceil(m / (64 * v.quad.qm)), batch]);
    return;
  }
  matmul(rt, a, b, c, q);
}
