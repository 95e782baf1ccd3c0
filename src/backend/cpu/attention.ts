// Fused multi-head attention on the native addon (native/attention.cc): online-softmax forward and a
// recomputing backward, never materializing the L x S score matrix.
// Layouts (row-major): q, o, dO, dq [B, L, H, D]; k, v, dk, dv [B, S, Hkv, D]; lse [B, H, L] holds
// log(sum_j exp(scale * q_i . k_j)) per query row, written by the forward and read by the backward.
// Query head h uses kv head floor(h / (H / Hkv)). With `causal`, the L queries are the last L of
// the S positions: query i sees keys j <= i + S - L.
import type { AttentionKernels } from '../contracts.ts';
import { nativeAddon } from './native.ts';

function checkShape(B: number, L: number, S: number, H: number, Hkv: number, D: number, scale: number, causal: boolean): void {
  for (const [n, v] of [['B', B], ['L', L], ['S', S], ['H', H], ['Hkv', Hkv], ['D', D]] as const) {
    if (!Number.isSafeInteger(v) || v < 1) throw new Error(`attention: ${n} must be a positive integer, got ${v}`);
  }
  if (H % Hkv !== 0) throw new Error(`attention: H = ${H} query heads must be a multiple of Hkv = ${Hkv} kv heads`);
  if (causal && S < L) throw new Error(`attention: causal attention needs S >= L (queries are the last L of S positions), got L = ${L}, S = ${S}`);
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new Error(`attention: scale must be a finite number, got ${scale}`);
}

function checkArray(name: string, a: unknown, want: number, dims: string): void {
  if (!(a instanceof Float32Array)) throw new Error(`attention: ${name} must be a Float32Array`);
  if (a.length !== want) throw new Error(`attention: ${name} has ${a.length} elements, expected ${want} for ${dims}`);
}

export function attentionForward(
  q: Float32Array, k: Float32Array, v: Float32Array, o: Float32Array, lse: Float32Array,
  B: number, L: number, S: number, H: number, Hkv: number, D: number, scale: number, causal: boolean,
): void {
  checkShape(B, L, S, H, Hkv, D, scale, causal);
  const qn = B * L * H * D, kn = B * S * Hkv * D;
  checkArray('q', q, qn, '[B, L, H, D]');
  checkArray('k', k, kn, '[B, S, Hkv, D]');
  checkArray('v', v, kn, '[B, S, Hkv, D]');
  checkArray('o', o, qn, '[B, L, H, D]');
  checkArray('lse', lse, B * H * L, '[B, H, L]');
  nativeAddon().attentionForward(q, k, v, o, lse, B, L, S, H, Hkv, D, scale, causal);
}

/** dq, dk and dv are overwritten. `o` and `lse` must come from attentionForward on the same inputs. */
export function attentionBackward(
  q: Float32Array, k: Float32Array, v: Float32Array, o: Float32Array, dO: Float32Array, lse: Float32Array,
  dq: Float32Array, dk: Float32Array, dv: Float32Array,
  B: number, L: number, S: number, H: number, Hkv: number, D: number, scale: number, causal: boolean,
): void {
  checkShape(B, L, S, H, Hkv, D, scale, causal);
  const qn = B * L * H * D, kn = B * S * Hkv * D;
  checkArray('q', q, qn, '[B, L, H, D]');
  checkArray('k', k, kn, '[B, S, Hkv, D]');
  checkArray('v', v, kn, '[B, S, Hkv, D]');
  checkArray('o', o, qn, '[B, L, H, D]');
  checkArray('dO', dO, qn, '[B, L, H, D]');
  checkArray('lse', lse, B * H * L, '[B, H, L]');
  checkArray('dq', dq, qn, '[B, L, H, D]');
  checkArray('dk', dk, kn, '[B, S, Hkv, D]');
  checkArray('dv', dv, kn, '[B, S, Hkv, D]');
  nativeAddon().attentionBackward(q, k, v, o, dO, lse, dq, dk, dv, B, L, S, H, Hkv, D, scale, causal);
}

/** Which vector path the attention kernels dispatch to: 'avx512' | 'avx2' | 'scalar'. */
export function attentionIsa(): string {
  return nativeAddon().attentionIsa() as string;
}

function view(b: unknown, n: number): Float32Array {
  const a = b as Float32Array;
  return a.length === n ? a : a.subarray(0, n);
}

/** The CPU's attention table. Buffers may be longer than the tensors they hold (a KV cache's filled prefix): exact views are passed. */
export const cpuAttention: AttentionKernels = {
  forward(q, k, v, o, lse, p) {
    const nq = p.b * p.l * p.h * p.d, nk = p.b * p.s * p.hkv * p.d;
    attentionForward(view(q, nq), view(k, nk), view(v, nk), view(o, nq), view(lse, p.b * p.h * p.l),
      p.b, p.l, p.s, p.h, p.hkv, p.d, p.scale, p.causal);
  },
  backward(q, k, v, o, dO, lse, dq, dk, dv, p) {
    const nq = p.b * p.l * p.h * p.d, nk = p.b * p.s * p.hkv * p.d;
    attentionBackward(view(q, nq), view(k, nk), view(v, nk), view(o, nq), view(dO, nq), view(lse, p.b * p.h * p.l),
      view(dq, nq), view(dk, nk), view(dv, nk), p.b, p.l, p.s, p.h, p.hkv, p.d, p.scale, p.causal);
  },
};
