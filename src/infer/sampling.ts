// Next-token choice from a logits row: greedy, or sampling with temperature, top-k and top-p (nucleus).
import type { Rng } from '../tensor/rng.ts';

export interface SamplingOpts {
  /** 0 = greedy (argmax). */
  temperature?: number;
  /** Keep only the k most likely tokens (0 = all). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (1 = all). */
  topP?: number;
}

export function checkSampling(o: SamplingOpts): void {
  const t = o.temperature ?? 0;
  if (!(t >= 0) || !Number.isFinite(t)) throw new Error(`temperature must be a number >= 0, got ${o.temperature}`);
  if (o.topK !== undefined && (!Number.isInteger(o.topK) || o.topK < 0)) throw new Error(`top-k must be a non-negative integer, got ${o.topK}`);
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) throw new Error(`top-p must be in (0, 1], got ${o.topP}`);
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
  const p = ids.map((i) => Math.exp((logits[i] - max) / t));
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
