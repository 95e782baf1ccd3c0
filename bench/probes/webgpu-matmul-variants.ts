// WebGPU matmul kernel variants measured against the production kernel choice
// (src/backend/webgpu/kernels/matmul.ts, quadPlan): thread grids, quadrant counts, slice depths,
// padding, a register-prefetch schedule and split-k. Each is dispatched through the runtime like the
// production kernel; a shape a variant cannot take (small products, operands without vec4 loads,
// more workgroup memory than the adapter has) runs the production path instead.
import type { GpuBuf } from '../../src/backend/webgpu/pool.ts';
import type { Runtime } from '../../src/backend/webgpu/runtime.ts';
import {
  BIG, flippedParams, matmul, type MatmulParams, matmulUniform, type Quad, type QuadSchedule, quadGeom, quadMatmul, quadSharedBytes, tiledSpec, vecLoads, vecOperands,
} from '../../src/backend/webgpu/kernels/matmul.ts';

/**
 * Register prefetch: the next slice is loaded from global memory into registers while the current
 * one is multiplied, into a second workgroup buffer, so each slice needs one barrier.
 */
const prefetch: QuadSchedule = {
  buffers: 2,
  loop: (A, B, compute, bk) => `${A.load('kBeg')}
${B.load('kBeg')}
${A.store('0u')}
${B.store('0u')}
  workgroupBarrier();
  var cur = 0u;
  for (var k0 = kBeg; k0 < kEnd; k0 += ${bk}u) {
    let more = k0 + ${bk}u < kEnd;
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

/**
 * split: 'auto' picks splits so the grid reaches about `wave` workgroups (WAVE unless given), each k
 * range >= 512 long.
 * flip: operands first copied into the other storage order so the kernel reads them contiguous along
 * m or n ('B': a transposed B; 'AB': that and a plain A, so every product runs as A-transposed).
 */
interface Variant { quad: Quad; schedule?: QuadSchedule; split?: 'auto'; flip?: 'B' | 'AB'; wave?: number }
const QUADS: Record<string, Variant> = {
  quad16: { quad: { qm: 2, qn: 2, bk: 16 } },
  quad16p: { quad: { qm: 2, qn: 2, bk: 16, pad: 1 } },
  quad8: { quad: { qm: 2, qn: 2, bk: 8 } },
  quad32: { quad: { qm: 2, qn: 2, bk: 32 } },
  quad16pf: { quad: { qm: 2, qn: 2, bk: 16 }, schedule: prefetch },
  wide16: { quad: { qm: 2, qn: 4, bk: 16 } },
  tall16: { quad: { qm: 4, qn: 2, bk: 16 } },
  // 128 threads, 8 x 16 per thread, 128 x 128 tile
  w128x: { quad: { qm: 2, qn: 4, bk: 16, gy: 16, gx: 8 } },
  w128y: { quad: { qm: 4, qn: 2, bk: 16, gy: 8, gx: 16 } },
  w128x8: { quad: { qm: 2, qn: 4, bk: 8, gy: 16, gx: 8 } },
  w128y8: { quad: { qm: 4, qn: 2, bk: 8, gy: 8, gx: 16 } },
  w128y32: { quad: { qm: 4, qn: 2, bk: 32, gy: 8, gx: 16 } },
  // 64 x 64 tile, 64 threads, 8 x 8 each: more workgroups for small grids
  small64: { quad: { qm: 2, qn: 2, bk: 16, gy: 8, gx: 8 } },
  split16: { quad: { qm: 2, qn: 2, bk: 16 }, split: 'auto' },
  split16w: { quad: { qm: 2, qn: 4, bk: 16, gy: 16, gx: 8 }, split: 'auto' },
  split128y: { quad: { qm: 4, qn: 2, bk: 16, gy: 8, gx: 16 }, split: 'auto' },
  split32: { quad: { qm: 2, qn: 2, bk: 32 }, split: 'auto' },
  fb128y: { quad: { qm: 4, qn: 2, bk: 16, gy: 8, gx: 16 }, flip: 'B' },
  fab128y: { quad: { qm: 4, qn: 2, bk: 16, gy: 8, gx: 16 }, flip: 'AB' },
  fbsplit128y: { quad: { qm: 4, qn: 2, bk: 16, gy: 8, gx: 16 }, flip: 'B', split: 'auto' },
  fabsplit128y: { quad: { qm: 4, qn: 2, bk: 16, gy: 8, gx: 16 }, flip: 'AB', split: 'auto' },
  fbsplit16: { quad: { qm: 2, qn: 2, bk: 16 }, flip: 'B', split: 'auto' },
  split16h: { quad: { qm: 2, qn: 2, bk: 16 }, split: 'auto', wave: 264 },
  split16d: { quad: { qm: 2, qn: 2, bk: 16 }, split: 'auto', wave: 1056 },
  split128yh: { quad: { qm: 4, qn: 2, bk: 16, gy: 8, gx: 16 }, split: 'auto', wave: 396 },
  split128yd: { quad: { qm: 4, qn: 2, bk: 16, gy: 8, gx: 16 }, split: 'auto', wave: 1056 },
};

/** 'base' (the strided 8 x 8 kernel at every large shape), 'prod' (the library's choice) and the quadrant variants. */
export const MATMUL_VARIANTS: readonly string[] = ['prod', 'base', ...Object.keys(QUADS)];

function variant(name: string): Variant | null {
  if (!MATMUL_VARIANTS.includes(name)) throw new Error(`webgpu matmul: unknown variant '${name}'; use one of ${MATMUL_VARIANTS.join(', ')}`);
  return QUADS[name] ?? null;
}

/** Workgroup memory a variant needs (0 for 'base' and 'prod'); above the adapter's limit it runs the production path. */
export function matmulVariantSharedBytes(name: string): number {
  const v = variant(name);
  return v ? quadSharedBytes(v.quad, v.schedule) : 0;
}

/** Workgroups that fill the GPU about twice (132 SMs x 2 resident 256-thread groups on an H200). */
const WAVE = 528;

/** Splits of the k axis for a split variant: enough workgroups for WAVE, each k range at least 512. */
export function autoSplits(quad: Quad, q: MatmulParams, wave = WAVE): number {
  const { tm, tn } = quadGeom(quad);
  const tiles = Math.ceil(q.m / tm) * Math.ceil(q.n / tn) * q.batch;
  return Math.max(1, Math.min(Math.ceil(wave / tiles), Math.floor(q.k / 512)));
}

/** C = alpha * op(A) op(B) + beta * C with the named variant where it applies (see the file comment). */
export function matmulVariant(rt: Runtime, name: string, a: GpuBuf, b: GpuBuf, c: GpuBuf, q: MatmulParams): void {
  const v = variant(name);
  const { batch, m, n, k } = q;
  const large = batch > 0 && m * n * batch >= 256 * 256 && k > 0 && q.alpha !== 0;
  if (large && name === 'base') {
    const vec = vecLoads(q);
    rt.dispatch(tiledSpec(BIG, q.transA, q.transB, vec.a, vec.b), [a, b, c], matmulUniform(q),
      [Math.ceil(n / BIG.tn), Math.ceil(m / BIG.tm), batch]);
    return;
  }
  const flips = { flipA: v?.flip === 'AB' && !q.transA, flipB: v?.flip !== undefined && q.transB };
  if (large && v && matmulVariantSharedBytes(name) <= rt.maxWorkgroupStorage) {
    const plan = { quad: v.quad, schedule: v.schedule, name: `v-${name}`, splits: v.split ? autoSplits(v.quad, q, v.wave) : 1, ...flips };
    // The kernel reads the operands as stored after the flips: both must allow vec4 loads then.
    if (vecOperands(flippedParams(plan, q))) { quadMatmul(rt, plan, a, b, c, q); return; }
  }
  matmul(rt, a, b, c, q);
}
