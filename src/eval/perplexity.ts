// Perplexity over non-overlapping windows (the FBI-LLM protocol: the text is cut into consecutive
// chunks of the model's context length and each chunk is scored on its own, so no token sees more
// than its own chunk), and the same negative log-likelihoods grouped by position for long-context curves.
import type { CausalLM } from '../models/index.ts';
import { fromArray, noGrad, tidy } from '../tensor/index.ts';

export interface WindowOpts {
  /** Window length in tokens (default: the model's maxPositions, at most 2048). */
  window?: number;
  /** Stop after this many windows (default: all). */
  maxWindows?: number;
  /**
   * llama.cpp's llama-perplexity protocol: only whole windows, the first token of each replaced by
   * `bos` when given, and only the predictions of the window's second half scored (positions
   * window/2 .. window-2 predicting the next token), so each scored token sees at least window/2 tokens.
   */
  llamaCpp?: { bos?: number };
  /** Called after each window with the windows done and the total when it is known (progress output). */
  onWindow?: (done: number, total: number | undefined) => void;
}

/**
 * The tokens to score: one array, or pieces in order (e.g. streamTokens over a file), which are
 * consumed as they come so that only one window is held at a time.
 */
export type TokenSource = Int32Array | Iterable<Int32Array>;

/** Per-token negative log-likelihoods: nll[w][i] is the loss of predicting token i+1 of window w. */
export async function windowNlls(model: CausalLM, tokens: TokenSource, o: WindowOpts = {}): Promise<Float64Array[]> {
  const out: Float64Array[] = [];
  await scoreWindows(model, tokens, o, (nll) => void out.push(Float64Array.from(nll)));
  return out;
}

/**
 * Scores the windows one after another and hands each window's per-token losses to `visit` (with
 * the window's length in tokens); the buffers are reused, so memory does not grow with the length of
 * the text, and a streamed source is never held: windows are cut from its pieces as they arrive.
 * `onWindow` gets the total only when it is known beforehand (an array, or maxWindows).
 */
export async function scoreWindows(model: CausalLM, tokens: TokenSource, o: WindowOpts, visit: (nll: Float64Array, length: number) => void): Promise<number> {
  const window = o.window ?? Math.min(model.config.maxPositions, 2048);
  if (!Number.isInteger(window) || window < 2) throw new Error(`window must be an integer >= 2, got ${window}`);
  if (window > model.config.maxPositions && model.config.mixer === 'attention') {
    throw new Error(`window ${window} exceeds the model context of ${model.config.maxPositions} positions`);
  }
  const lc = o.llamaCpp;
  const tooShort = (n: number) => (n < 2
    ? new Error(`the evaluation text has ${n} token(s); perplexity needs at least 2`)
    : new Error(`the evaluation text has ${n} tokens, fewer than one window of ${window} (llama.cpp scoring uses whole windows only)`));
  const whole = tokens instanceof Int32Array ? tokens : undefined;
  let total = o.maxWindows;
  if (whole) {
    if (whole.length < 2 || (lc && whole.length < window)) throw tooShort(whole.length);
    const last = lc ? whole.length - window : whole.length - 2;
    total = Math.min(Math.floor(last / window) + 1, o.maxWindows ?? Infinity);
  }
  const max = o.maxWindows ?? Infinity;
  const v = model.config.vocabSize;
  model.eval();
  // The window buffer grows to the window length as tokens arrive (a TTT model may be given a
  // window far longer than the text; nothing that long is allocated up front).
  let chunk = new Int32Array(Math.min(window, whole ? whole.length : 1 << 16));
  let buf = new Float64Array(chunk.length);
  let done = 0;
  const score = async (len: number) => {
    const n = len - 1;
    const input = lc ? chunk.slice(0, len) : chunk.slice(0, n);
    if (lc?.bos !== undefined) input[0] = lc.bos;
    const logits = tidy(() => noGrad(() => model.forward(fromArray(input, [1, input.length], model.device))));
    const l = await logits.data();
    logits.dispose();
    const first = lc ? Math.floor(window / 2) : 0;
    const nll = buf.subarray(0, n - first);
    for (let i = first; i < n; i++) {
      let m = -Infinity;
      const row = i * v;
      for (let j = 0; j < v; j++) m = Math.max(m, l[row + j]);
      let z = 0;
      for (let j = 0; j < v; j++) z += Math.exp(l[row + j] - m);
      nll[i - first] = m + Math.log(z) - l[row + chunk[i + 1]];
    }
    visit(nll, len);
    done++;
    o.onWindow?.(done, total);
  };
  let have = 0;
  let seen = 0;
  const pieces = whole ? [whole] : (tokens as Iterable<Int32Array>);
  outer: for (const piece of pieces) {
    for (const t of piece) if (t < 0 || t >= v) throw new Error(`token id ${t} is outside the model's vocabulary of ${v}; use the model's tokenizer`);
    for (let off = 0; off < piece.length;) {
      const take = Math.min(window - have, piece.length - off);
      if (have + take > chunk.length) {
        const grown = new Int32Array(Math.min(window, Math.max(2 * chunk.length, have + take)));
        grown.set(chunk.subarray(0, have));
        chunk = grown;
        buf = new Float64Array(grown.length);
      }
      chunk.set(piece.subarray(off, off + take), have);
      have += take;
      off += take;
      seen += take;
      if (have < window) continue;
      await score(window);
      have = 0;
      if (done >= max) break outer;
    }
  }
  if (done === 0 && (seen < 2 || (lc && seen < window))) throw tooShort(seen);
  // The last, shorter window (whole windows only under llama.cpp scoring).
  if (!lc && have >= 2 && done < max) await score(have);
  return done;
}

export interface PerplexityResult {
  perplexity: number;
  /** Mean negative log-likelihood in nats per token. */
  nll: number;
  tokens: number;
  windows: number;
  window: number;
}

export interface PositionBucket {
  /** Predicted-token positions [from, to) within a window (position p predicts token p from tokens < p). */
  from: number;
  to: number;
  nll: number;
  perplexity: number;
  tokens: number;
}

/**
 * Perplexity and, with `buckets`, perplexity by position, in one pass over the tokens (a streamed
 * source is read once for both).
 */
export async function evaluatePerplexity(model: CausalLM, tokens: TokenSource, o: WindowOpts & { buckets?: number } = {}): Promise<PerplexityResult & { byPosition?: PositionBucket[] }> {
  if (o.buckets !== undefined && (!Number.isInteger(o.buckets) || o.buckets < 1)) throw new Error(`buckets must be a positive integer, got ${o.buckets}`);
  let sum = 0;
  let count = 0;
  // Buckets split the predicted positions 1..longest of the longest window, which is the first one
  // (only the last can be shorter).
  let longest = 0;
  let width = 1;
  let sums = new Float64Array(0);
  let counts = new Float64Array(0);
  const windows = await scoreWindows(model, tokens, o, (w, length) => {
    for (const x of w) sum += x;
    count += w.length;
    if (o.buckets === undefined) return;
    if (!longest) {
      longest = length - 1;
      const nb = Math.min(o.buckets, Math.max(longest, 1));
      width = Math.ceil(longest / nb);
      sums = new Float64Array(nb);
      counts = new Float64Array(nb);
    }
    for (let i = 0; i < w.length; i++) {
      const b = Math.floor(i / width);
      sums[b] += w[i];
      counts[b]++;
    }
  });
  const nll = sum / count;
  const result = { perplexity: Math.exp(nll), nll, tokens: count, windows, window: o.window ?? Math.min(model.config.maxPositions, 2048) };
  if (o.buckets === undefined) return result;
  const byPosition: PositionBucket[] = [];
  for (let b = 0; b < sums.length; b++) {
    if (!counts[b]) continue;
    const bn = sums[b] / counts[b];
    byPosition.push({ from: b * width + 1, to: Math.min((b + 1) * width, longest) + 1, nll: bn, perplexity: Math.exp(bn), tokens: counts[b] });
  }
  return { ...result, byPosition };
}

export async function perplexity(model: CausalLM, tokens: TokenSource, o: WindowOpts = {}): Promise<PerplexityResult> {
  return evaluatePerplexity(model, tokens, { ...o, buckets: undefined });
}

/** Perplexity by position: the window's predicted positions 1..window-1 split into equal-width buckets. */
export async function perplexityByPosition(model: CausalLM, tokens: TokenSource, o: WindowOpts & { buckets?: number } = {}): Promise<PositionBucket[]> {
  return (await evaluatePerplexity(model, tokens, { ...o, buckets: o.buckets ?? 8 })).byPosition!;
}
