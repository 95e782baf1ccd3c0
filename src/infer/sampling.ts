// Next-token choice from a logits row: greedy, or sampling with temperature, top-k, min-p and top-p
// (nucleus, in that order); an optional repetition penalty reshapes the logits first.
import type { Rng } from '../tensor/rng.ts';

export interface SamplingOpts {
  /** 0 = greedy (argmax). */
  temperature?: number;
  /** Keep only the k most likely tokens (0 = all). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (1 = all). */
  topP?: number;
  /** Keep only tokens whose probability is at least minP times the most likely one's (0 = off). */
  minP?: number;
  /** Divide positive logits (multiply negative ones) of tokens already seen by this (1 = off). */
  repeatPenalty?: number;
}

/** How many of the latest tokens the repetition penalty looks at. */
const REPEAT_WINDOW = 64;

export function checkSampling(o: SamplingOpts): void {
  const t = o.temperature ?? 0;
  if (!(t >= 0) || !Number.isFinite(t)) throw new Error(`temperature must be a number >= 0, got ${o.temperature}`);
  if (o.topK !== undefined && (!Number.isInteger(o.topK) || o.topK < 0)) throw new Error(`top-k must be a non-negative integer, got ${o.topK}`);
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) throw new Error(`top-p must be in (0, 1], got ${o.topP}`);
  if (o.minP !== undefined && !(o.minP >= 0 && o.minP <= 1)) throw new Error(`min-p must be in [0, 1], got ${o.minP}`);
  if (o.repeatPenalty !== undefined && !(o.repeatPenalty > 0 && Number.isFinite(o.repeatPenalty))) throw new Error(`repeat penalty must be a number > 0, got ${o.repeatPenalty}`);
}

/** Logits with the repetition penalty applied to the last REPEAT_WINDOW ids of history (a copy). */
export function penalizeRepeats(logits: Float32Array, history: readonly number[], penalty = 1): Float32Array {
  if (penalty === 1 || history.length === 0) return logits;
  const out = Float32Array.from(logits);
  for (const id of new Set(history.slice(-REPEAT_WINDOW))) {
    if (id < out.length) out[id] = out[id] > 0 ? out[id] / penalty : out[id] * penalty;
  }
  return out;
}

export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/** Picks the next token id; draws exactly one uniform from rng when sampling (none when greedy). */
export function sampleToken(logits: ArrayLike<number>, o: SamplingOpts, rng: Rng): number {
  const t = o.temperature ?? 0;
  if (t === 0) return argmax(logits);
  const n = logits.length;
  // Candidates sorted by logit, descending (ties by id for reproducibility).
  let ids = Array.from({ length: n }, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
  if (o.topK && o.topK < n) ids = ids.slice(0, o.topK);
  const max = logits[ids[0]];
  let p = ids.map((i) => Math.exp((logits[i] - max) / t));
  if (o.minP) {
    // p[0] is the most likely token's weight (exp(0) = 1): keep those at least minP of it.
    const keep = p.findIndex((x) => x < o.minP!);
    if (keep > 0) {
      ids = ids.slice(0, keep);
      p = p.slice(0, keep);
    }
  }
  let z = p.reduce((s, x) => s + x, 0);
  const topP = o.topP ?? 1;
  if (topP < 1) {
    let cum = 0;
    let keep = 0;
    while (keep < p.length && cum < topP * z) cum += p[keep++];
    ids = ids.slice(0, keep);
    p.length = keep;
    z = cum;
  }
  let u = rng.uniform() * z;
  for (let i = 0; i < ids.length; i++) {
    u -= p[i];
    if (u < 0) return ids[i];
  }
  return ids[ids.length - 1];
}
