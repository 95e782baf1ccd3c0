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
  /** Called after each window with the windows done and the total (progress output). */
  onWindow?: (done: number, total: number) => void;
}

/** Per-token negative log-likelihoods: nll[w][i] is the loss of predicting token i+1 of window w. */
export async function windowNlls(model: CausalLM, tokens: Int32Array, o: WindowOpts = {}): Promise<Float64Array[]> {
  const out: Float64Array[] = [];
  await scoreWindows(model, tokens, o, (nll) => void out.push(Float64Array.from(nll)));
  return out;
}

/**
 * Scores the windows one after another and hands each window's per-token losses to `visit`; the
 * buffer is reused, so memory does not grow with the length of the text.
 */
async function scoreWindows(model: CausalLM, tokens: Int32Array, o: WindowOpts, visit: (nll: Float64Array) => void): Promise<number> {
  const window = o.window ?? Math.min(model.config.maxPositions, 2048);
  if (!Number.isInteger(window) || window < 2) throw new Error(`window must be an integer >= 2, got ${window}`);
  if (window > model.config.maxPositions && model.config.mixer === 'attention') {
    throw new Error(`window ${window} exceeds the model context of ${model.config.maxPositions} positions`);
  }
  if (tokens.length < 2) throw new Error(`the evaluation text has ${tokens.length} token(s); perplexity needs at least 2`);
  const v = model.config.vocabSize;
  for (const t of tokens) if (t < 0 || t >= v) throw new Error(`token id ${t} is outside the model's vocabulary of ${v}; use the model's tokenizer`);
  model.eval();
  const lc = o.llamaCpp;
  if (lc && tokens.length < window) throw new Error(`the evaluation text has ${tokens.length} tokens, fewer than one window of ${window} (llama.cpp scoring uses whole windows only)`);
  const last = lc ? tokens.length - window : tokens.length - 2;
  const total = Math.min(Math.floor(last / window) + 1, o.maxWindows ?? Infinity);
  const buf = new Float64Array(window);
  let done = 0;
  for (let start = 0; start <= last; start += window) {
    if (done >= total) break;
    const chunk = tokens.subarray(start, Math.min(start + window, tokens.length));
    const n = chunk.length - 1;
    const input = lc ? chunk.slice() : chunk.slice(0, n);
    if (lc?.bos !== undefined) input[0] = lc.bos;
    const logits = tidy(() => noGrad(() => model.forward(fromArray(input, [1, input.length], model.device))));
    const l = await logits.data();
    logits.dispose();
    const first = lc ? Math.floor(window / 2) : 0;
    const nll = buf.subarray(0, n - first);
    for (let i = first; i < n; i++) {
      let max = -Infinity;
      const row = i * v;
      for (let j = 0; j < v; j++) max = Math.max(max, l[row + j]);
      let z = 0;
      for (let j = 0; j < v; j++) z += Math.exp(l[row + j] - max);
      nll[i - first] = max + Math.log(z) - l[row + chunk[i + 1]];
    }
    visit(nll);
    done++;
    o.onWindow?.(done, total);
  }
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

export async function perplexity(model: CausalLM, tokens: Int32Array, o: WindowOpts = {}): Promise<PerplexityResult> {
  let sum = 0;
  let count = 0;
  const windows = await scoreWindows(model, tokens, o, (w) => {
    for (const x of w) sum += x;
    count += w.length;
  });
  const nll = sum / count;
  return { perplexity: Math.exp(nll), nll, tokens: count, windows, window: o.window ?? Math.min(model.config.maxPositions, 2048) };
}

export interface PositionBucket {
  /** Predicted-token positions [from, to) within a window (position p predicts token p from tokens < p). */
  from: number;
  to: number;
  nll: number;
  perplexity: number;
  tokens: number;
}

/** Perplexity by position: the window's predicted positions 1..window-1 split into equal-width buckets. */
export async function perplexityByPosition(model: CausalLM, tokens: Int32Array, o: WindowOpts & { buckets?: number } = {}): Promise<PositionBucket[]> {
  // The longest window is the first one (only the last can be shorter).
  const window = o.window ?? Math.min(model.config.maxPositions, 2048);
  const longest = Math.min(window, tokens.length) - 1;
  const nb = Math.min(o.buckets ?? 8, Math.max(longest, 1));
  if (!Number.isInteger(nb) || nb < 1) throw new Error(`buckets must be a positive integer, got ${o.buckets}`);
  const width = Math.ceil(longest / nb);
  const sums = new Float64Array(nb);
  const counts = new Float64Array(nb);
  await scoreWindows(model, tokens, o, (w) => {
    for (let i = 0; i < w.length; i++) {
      const b = Math.floor(i / width);
      sums[b] += w[i];
      counts[b]++;
    }
  });
  const out: PositionBucket[] = [];
  for (let b = 0; b < nb; b++) {
    if (!counts[b]) continue;
    const nll = sums[b] / counts[b];
    out.push({ from: b * width + 1, to: Math.min((b + 1) * width, longest) + 1, nll, perplexity: Math.exp(nll), tokens: counts[b] });
  }
  return out;
}
