// The fused decoder stack of packed FBI models on the native addon (native/fbi_decode.cc): one call
// runs a prefill chunk or a decoded token through every layer and the LM head. The spec's arrays are
// read in place by the native side, so a FusedStack keeps them (and a state its RoPE tables) alive.
import { type FbiDecodeStack, type FbiDecodeState, type FbiStackLinear, type FbiStackSpec, int8RowBytes, KernelUnavailableError } from '../contracts.ts';
import type { Buf } from '../types.ts';
import { int8Weight, interleavedBitsOf } from './fbi.ts';
import { nativeAddon } from './native.ts';

const PATTERN_CODE = { column: 0, row: 1, single: 2 } as const;
const f32 = (b: Buf) => b as unknown as Float32Array;

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
export class FusedState implements FbiDecodeState {
  /** @internal */ readonly handle: unknown;
  private readonly tables: { cos: Float64Array; sin: Float64Array };
  // The output rows of the last step, reused by the next (a fresh 100+ KB array per token costs far
  // more than its size: V8 counts it as external memory and collects garbage more often).
  private out: Float32Array;
  /** @internal */ outFor(n: number): Float32Array {
    if (this.out.length !== n) this.out = new Float32Array(n);
    return this.out;
  }
  constructor(readonly stack: FusedStack, readonly capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new Error(`fused decode: the state capacity must be a positive integer, got ${capacity}`);
    this.tables = ropeTables(capacity, stack.headDim, stack.ropeTheta);
    this.handle = nativeAddon().fbiDecodeState(stack.handle, capacity, this.tables.cos, this.tables.sin);
    this.out = new Float32Array(stack.width);  // one row: every decode step and a prefill's last token
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

/** The native stack over a spec (the backend's fbi.decodeStack); step() runs tokens through it. */
export class FusedStack implements FbiDecodeStack {
  /** @internal */ readonly handle: unknown;
  readonly width: number;
  readonly headDim: number;
  readonly ropeTheta: number;
  // The arrays the native side reads in place, kept alive with the stack.
  private readonly arrays: unknown;
  constructor(spec: FbiStackSpec) {
    if (!fusedStackAvailable()) throw new KernelUnavailableError('cpu', 'fbi.decodeStack (rebuild the native addon)');
    if (spec.ropeStyle !== 'half' && spec.ropeStyle !== 'interleaved') throw new Error(`fused decode: ropeStyle must be half or interleaved, got ${JSON.stringify(spec.ropeStyle)}`);
    const lin = (l: FbiStackLinear) => {
      if (!(l.pattern in PATTERN_CODE)) throw new Error(`fused decode: scale pattern must be column | row | single, got ${JSON.stringify(l.pattern)}`);
      return { bits: interleavedBitsOf(l.bits, l.inF, l.outF), alpha: f32(l.alpha), beta: f32(l.beta), pattern: PATTERN_CODE[l.pattern] };
    };
    const h = spec.head;
    let head: Record<string, unknown> = { head: 0 };
    if (h.kind === 'f16') {
      const words = h.w as unknown as Int32Array;
      head = { head: 1, headF16: new Uint16Array(words.buffer, words.byteOffset, spec.vocab * spec.hidden) };
    } else if (h.kind === 'int8') {
      const w = int8Weight(h.q, h.scale, spec.hidden, spec.vocab);
      head = { head: 2, headQ: w.q, headRowBytes: int8RowBytes(spec.hidden), headScale: w.scale, headRowSum: w.rowSum };
    }
    const arrays = {
      hidden: spec.hidden, heads: spec.heads, kvHeads: spec.kvHeads, headDim: spec.headDim, intermediate: spec.intermediate, vocab: spec.vocab,
      eps: spec.eps, interleaved: spec.ropeStyle === 'interleaved', isa: 0, embed: f32(spec.embed), norm: f32(spec.norm), ...head,
      layers: spec.layers.map((l) => ({
        norm1: f32(l.norm1), norm2: f32(l.norm2), q: lin(l.q), k: lin(l.k), v: lin(l.v), o: lin(l.o), gate: lin(l.gate), up: lin(l.up), down: lin(l.down),
      })),
    };
    this.handle = nativeAddon().fbiDecodeCreate(arrays);
    this.arrays = arrays;
    this.width = h.kind === 'none' ? spec.hidden : spec.vocab;
    this.headDim = spec.headDim;
    this.ropeTheta = spec.ropeTheta;
  }

  createState(capacity: number): FusedState {
    return new FusedState(this, capacity);
  }

  step(state: FbiDecodeState, ids: Int32Array, all = false): Float32Array {
    if (!(state instanceof FusedState) || state.stack !== this) throw new Error('fused decode: the state belongs to another stack');
    const y = state.outFor((all ? ids.length : 1) * this.width);
    nativeAddon().fbiDecodeForward(this.handle, state.handle, ids, y, all);
    return y;
  }
}
