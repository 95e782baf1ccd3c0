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
 * Register prefetch into two workgroup buffers (timed against the library's single buffer: slower at
 * every shape on the H200, bench/NOTES.md): the next slice's global reads are issued before the
 * current slice is multiplied and stored into the other buffer after it, so each slice takes one
 * barrier and the global-memory latency hides behind the arithmetic.
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
 * Register prefetch into one workgroup buffer: as prefetch, but the registers are stored after
 * a second barrier, so the workgroup memory stays that of singleBuffer.
 */
const prefetchSingle: QuadSchedule = {
  buffers: 1,
  loop: (A, B, compute, bk) => `${A.load('kBeg')}
${B.load('kBeg')}
  for (var k0 = kBeg; k0 < kEnd; k0 += ${bk}u) {
${A.store('0u')}
${B.store('0u')}
    workgroupBarrier();
    if (k0 + ${bk}u < kEnd) {
${A.load(`(k0 + ${bk}u)`)}
${B.load(`(k0 + ${bk}u)`)}
    }
${compute('0u')}
    workgroupBarrier();
  }`,
};

/**
 * split: 'auto' picks splits so the grid reaches about `wave` workgroups (WAVE unless given), each k
 * range >= `minK` long (512 unless given).
 * flip: operands first copied into the other storage order so the kernel reads them contiguous along
 * m or n ('B': a transposed B; 'AB': that and a plain A, so every product runs as A-transposed).
 */
interface Variant { quad: Quad; schedule?: QuadSchedule; split?: 'auto'; flip?: 'B' | 'AB'; wave?: number; minK?: number }
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
  // The 128-thread tile with register prefetch: two buffers (pf) or one (pf1)
  w128ypf: { quad: { qm: 4, qn: 2, bk: 16, gy: 8, gx: 16 }, schedule: prefetch },
  w128ypf1: { quad: { qm: 4, qn: 2, bk: 16, gy: 8, gx: 16 }, schedule: prefetchSingle },
  fb128ypf: { quad: { qm: 4, qn: 2, bk: 16, gy: 8, gx: 16 }, schedule: prefetch, flip: 'B' },
  fb128ypf1: { quad: { qm: 4, qn: 2, bk: 16, gy: 8, gx: 16 }, schedule: prefetchSingle, flip: 'B' },
  split128ydpf: { quad: { qm: 4, qn: 2, bk: 16, gy: 8, gx: 16 }, schedule: prefetch, split: 'auto', wave: 1056 },
  split128ydpf1: { quad: { qm: 4, qn: 2, bk: 16, gy: 8, gx: 16 }, schedule: prefetchSingle, split: 'auto', wave: 1056 },
  w128y8pf: { quad: { qm: 4, qn: 2, bk: 8, gy: 8, gx: 16 }, schedule: prefetch },
  // Split products with shorter k ranges, so small grids (768 x 768 over 8192) reach the target groups
  split128yd256: { quad: { qm: 4, qn: 2, bk: 16, gy: 8, gx: 16 }, split: 'auto', wave: 1056, minK: 256 },
  split128yd128: { quad: { qm: 4, qn: 2, bk: 16, gy: 8, gx: 16 }, split: 'auto', wave: 1056, minK: 128 },
  split128yq256: { quad: { qm: 4, qn: 2, bk: 16, gy: 8, gx: 16 }, split: 'auto', wave: 2112, minK: 256 },
  split128yt256: { quad: { qm: 4, qn: 2, bk: 16, gy: 8, gx: 16 }, split: 'auto', wave: 792, minK: 256 },
  split64d256: { quad: { qm: 2, qn: 2, bk: 16, gy: 8, gx: 8 }, split: 'auto', wave: 2112, minK: 256 },
  // Grids of 133-264 tiles of 128 x 128 (8192 x 768 outputs: 384) fill 2 groups per SM for one wave and
  // then part of a second: two k halves make about 3 full waves instead.
  split128y2: { quad: { qm: 4, qn: 2, bk: 16, gy: 8, gx: 16 }, split: 'auto', wave: 396, minK: 256 },
  fbsplit128y2: { quad: { qm: 4, qn: 2, bk: 16, gy: 8, gx: 16 }, flip: 'B', split: 'auto', wave: 396, minK: 256 },
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

/** Splits of the k axis for a split variant: enough workgroups for `wave`, each k range at least `minK`. */
export function autoSplits(quad: Quad, q: MatmulParams, wave = WAVE, minK = 512): number {
  const { tm, tn } = quadGeom(quad);
  const tiles = Math.ceil(q.m / tm) * Math.ceil(q.n / tn) * q.batch;
  return Math.max(1, Math.min(Math.ceil(wave / tiles), Math.floor(q.k / minK)));
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
    const plan = { quad: v.quad, schedule: v.schedule, name: `v-${name}`, splits: v.split ? autoSplits(v.quad, q, v.wave, v.minK) : 1, ...flips };
    // The kernel reads the operands as stored after the flips: both must allow vec4 loads then.
    if (vecOperands(flippedParams(plan, q))) { quadMatmul(rt, plan, a, b, c, q); return; }
  }
  matmul(rt, a, b, c, q);
}
