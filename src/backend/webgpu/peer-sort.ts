// Device-side grouping for the PEER backward passes: a bitonic sort of (key, position) pairs, so the
// occurrences of each expert (or sub-key) row end up adjacent, in ascending position order. Sums over
// such a group then run in a fixed order (deterministic, and the order the CPU kernels use) without
// float atomics or reading indices back to the host.
import type { GpuBuf } from './pool.ts';
import { type KernelSpec, type Runtime, Uniform } from './runtime.ts';
import { flatMain, WG } from './kernels/common.ts';

/** Key given to the padding slots of the power-of-two sort: above every real key. */
const PAD_KEY = 0x7fffffff;

export interface SortedPairs {
  /** i32 [P]: keys ascending, PAD_KEY past the m real ones. */
  keys: GpuBuf;
  /** i32 [P]: the original position of each sorted key. */
  pos: GpuBuf;
  /** The padded length (a power of two >= m). */
  P: number;
}

const nextPow2 = (m: number) => 2 ** Math.ceil(Math.log2(Math.max(m, 1)));

/** WGSL: first sorted slot whose key is >= key (SK must be bound as the sorted keys, P in p.P). */
export const lowerBoundFn = `
fn lowerBound(key: i32) -> u32 {
  var lo = 0u;
  var hi = p.P;
  while (lo < hi) {
    let mid = (lo + hi) / 2u;
    if (SK[mid] < key) { lo = mid + 1u; } else { hi = mid; }
  }
  return lo;
}`;

/**
 * Scratch that outlives several dispatches. Runtime.temp() returns buffers to the pool at the next
 * submit, which any dispatch may trigger, so multi-dispatch scratch is allocated plainly and released
 * (scratchDone) once its last use is encoded: later reuse is ordered after it on the queue.
 */
export const scratch = (rt: Runtime, n: number, dtype: 'f32' | 'i32'): GpuBuf => rt.alloc(n, dtype);
export function scratchDone(rt: Runtime, ...bufs: GpuBuf[]): void {
  for (const b of bufs) rt.pool.release(b);
}

/**
 * Sorts m keys (i32 >= 0 in `keys`) with their positions. The outputs are scratch buffers: the
 * caller passes them to scratchDone after encoding its last use.
 */
export function sortPairs(rt: Runtime, keys: GpuBuf, m: number): SortedPairs {
  const P = nextPow2(m);
  const sk = scratch(rt, P, 'i32'), sp = scratch(rt, P, 'i32');
  rt.dispatch({ key: 'peerSortInit',
    bindings: [['KEYS', 'i32', 'r'], ['K', 'i32', 'w'], ['V', 'i32', 'w']],
    uniform: 'm: u32, P: u32', code: () => `
${flatMain(`  if (i >= p.P) { return; }
  K[i] = select(${PAD_KEY}, KEYS[min(i, p.m - 1u)], i < p.m);
  V[i] = i32(i);`)}` }, [keys, sk, sp], new Uniform().u(m, P), rt.grid(Math.ceil(P / WG)));
  const step: KernelSpec = { key: 'peerBitonicStep',
    bindings: [['K', 'i32', 'w'], ['V', 'i32', 'w']],
    uniform: 'P: u32, j: u32, kk: u32', code: () => `
${flatMain(`  if (i >= p.P) { return; }
  let l = i ^ p.j;
  if (l <= i) { return; }
  let a = K[i];
  let b = K[l];
  let va = V[i];
  let vb = V[l];
  // Positions are distinct, so (key, position) is a total order: the result is unique.
  let greater = a > b || (a == b && va > vb);
  if (greater == ((i & p.kk) == 0u)) {
    K[i] = b; K[l] = a;
    V[i] = vb; V[l] = va;
  }`)}` };
  for (let kk = 2; kk <= P; kk *= 2) {
    for (let j = kk / 2; j >= 1; j /= 2) rt.dispatch(step, [sk, sp], new Uniform().u(P, j, kk), rt.grid(Math.ceil(P / WG)));
  }
  return { keys: sk, pos: sp, P };
}
