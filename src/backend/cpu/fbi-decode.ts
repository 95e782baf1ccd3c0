// The fused decoder stack of packed FBI models on the native addon (native/fbi_decode.cc): one call
// runs a prefill chunk or a decoded token through every layer and the LM head. The spec's arrays are
// read in place by the native side, so a FusedStack keeps them (and a state its RoPE tables) alive.
import { nativeAddon } from './native.ts';
import type { FbiIsa } from './fbi.ts';

const ISA_CODE: Record<FbiIsa, number> = { auto: 0, scalar: 1, avx2: 2, avx512: 3 };
const PATTERN_CODE = { column: 0, row: 1, single: 2 } as const;

/** One packed linear: interleaved sign words (fbiRepack), its scales and their pattern. */
export interface FusedLinearSpec { bits: Uint32Array; alpha: Float32Array; beta: Float32Array; pattern: keyof typeof PATTERN_CODE }

export interface FusedLayerSpec {
  norm1: Float32Array;
  norm2: Float32Array;
  q: FusedLinearSpec; k: FusedLinearSpec; v: FusedLinearSpec; o: FusedLinearSpec;
  gate: FusedLinearSpec; up: FusedLinearSpec; down: FusedLinearSpec;
}

/** The head the stack ends in: f16 or int8 weights, or none (the final normed hidden states come out). */
export type FusedHeadSpec =
  | { kind: 'f16'; weight: Uint16Array }
  | { kind: 'int8'; q: Uint8Array; rowBytes: number; scale: Float32Array; rowSum: Int32Array }
  | { kind: 'none' };

export interface FusedStackSpec {
  hidden: number; heads: number; kvHeads: number; headDim: number; intermediate: number; vocab: number;
  eps: number; ropeTheta: number; ropeStyle: 'half' | 'interleaved';
  embed: Float32Array; norm: Float32Array; head: FusedHeadSpec; layers: FusedLayerSpec[];
  isa?: FbiIsa;
}

/** Whether the loaded addon has the fused decoder (an older build may not). */
export function fusedStackAvailable(): boolean {
  try {
    return typeof nativeAddon().fbiDecodeCreate === 'function';
  } catch {
    return false;
  }
}

/**
 * The RoPE table rows [capacity, D/2] of cos and sin, computed with the per-module kernel's formula
 * (src/backend/cpu/kernels.ts rope), so rotated values match it exactly.
 */
function ropeTables(capacity: number, d: number, theta: number): { cos: Float64Array; sin: Float64Array } {
  const half = d / 2;
  const cos = new Float64Array(capacity * half), sin = new Float64Array(capacity * half);
  const inv = Array.from({ length: half }, (_, i) => Math.pow(theta, (-2 * i) / d));
  for (let p = 0; p < capacity; p++) {
    for (let i = 0; i < half; i++) {
      const ang = p * inv[i];
      cos[p * half + i] = Math.cos(ang);
      sin[p * half + i] = Math.sin(ang);
    }
  }
  return { cos, sin };
}

/** A decoding state of a FusedStack: KV cache of `capacity` positions and the step buffers. */
export class FusedState {
  /** @internal */ readonly handle: unknown;
  private readonly tables: { cos: Float64Array; sin: Float64Array };
  constructor(readonly stack: FusedStack, readonly capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new Error(`fused decode: the state capacity must be a positive integer, got ${capacity}`);
    this.tables = ropeTables(capacity, stack.spec.headDim, stack.spec.ropeTheta);
    this.handle = nativeAddon().fbiDecodeState(stack.handle, capacity, this.tables.cos, this.tables.sin);
  }
  /** Positions already in the cache. */
  get position(): number {
    return nativeAddon().fbiDecodePosition(this.handle) as number;
  }
  /** Milliseconds spent per phase of the native steps so far (norms, products, attention, head, ...). */
  phaseTimes(): Record<string, number> {
    return nativeAddon().fbiDecodeTimes(this.handle) as Record<string, number>;
  }
  /** Forgets the cached positions from `position` on. */
  rewind(position: number): void {
    nativeAddon().fbiDecodePosition(this.handle, position);
  }
}

/** The native stack over a spec; step() runs tokens through it. */
export class FusedStack {
  /** @internal */ readonly handle: unknown;
  /** Width of each output row: the vocabulary, or the hidden size when the stack has no head. */
  readonly width: number;
  constructor(readonly spec: FusedStackSpec) {
    const isa = spec.isa ?? 'auto';
    if (!(isa in ISA_CODE)) throw new Error(`fused decode: isa must be one of ${Object.keys(ISA_CODE).join(', ')}`);
    if (spec.ropeStyle !== 'half' && spec.ropeStyle !== 'interleaved') throw new Error(`fused decode: ropeStyle must be half or interleaved, got ${JSON.stringify(spec.ropeStyle)}`);
    const lin = (l: FusedLinearSpec) => {
      if (!(l.pattern in PATTERN_CODE)) throw new Error(`fused decode: scale pattern must be column | row | single, got ${JSON.stringify(l.pattern)}`);
      return { bits: l.bits, alpha: l.alpha, beta: l.beta, pattern: PATTERN_CODE[l.pattern] };
    };
    const h = spec.head;
    this.handle = nativeAddon().fbiDecodeCreate({
      hidden: spec.hidden, heads: spec.heads, kvHeads: spec.kvHeads, headDim: spec.headDim, intermediate: spec.intermediate, vocab: spec.vocab,
      eps: spec.eps, interleaved: spec.ropeStyle === 'interleaved', isa: ISA_CODE[isa], embed: spec.embed, norm: spec.norm,
      head: h.kind === 'f16' ? 1 : h.kind === 'int8' ? 2 : 0,
      headF16: h.kind === 'f16' ? h.weight : undefined,
      headQ: h.kind === 'int8' ? h.q : undefined, headRowBytes: h.kind === 'int8' ? h.rowBytes : undefined,
      headScale: h.kind === 'int8' ? h.scale : undefined, headRowSum: h.kind === 'int8' ? h.rowSum : undefined,
      layers: spec.layers.map((l) => ({
        norm1: l.norm1, norm2: l.norm2, q: lin(l.q), k: lin(l.k), v: lin(l.v), o: lin(l.o), gate: lin(l.gate), up: lin(l.up), down: lin(l.down),
      })),
    });
    this.width = h.kind === 'none' ? spec.hidden : spec.vocab;
  }

  createState(capacity: number): FusedState {
    return new FusedState(this, capacity);
  }

  /**
   * Runs `ids` from the state's position (appending their keys and values) and writes the output
   * rows (logits, or final hidden states without a head) of the last token, or of every token with
   * `all`, into `out` (allocated when not given). Throws on context overflow.
   */
  step(state: FusedState, ids: Int32Array, all = false, out?: Float32Array): Float32Array {
    if (state.stack !== this) throw new Error('fused decode: the state belongs to another stack');
    const rows = all ? ids.length : 1;
    const y = out ?? new Float32Array(rows * this.width);
    nativeAddon().fbiDecodeForward(this.handle, state.handle, ids, y, all);
    return y;
  }
}
