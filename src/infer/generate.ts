// Text generation: prefill the prompt into the model's decoding state (KV cache for attention, fixed
// state for TTT), then decode one token at a time, streaming text as soon as it is complete.
// A DecodeSequence holds everything one continuation needs (state, sampler, stop strings, text), so
// `generate` (one sequence) and the server's scheduler (many, decoded together) share the same steps.
import type { StreamDecoder, Tokenizer } from '../data/index.ts';
import type { CausalLM, ModelState } from '../models/index.ts';
import { fromArray, keep, noGrad, Rng, Tensor, tidy } from '../tensor/index.ts';
import { checkSampling, penalizeRepeats, sampleToken, type SamplingOpts } from './sampling.ts';
import { StopMatcher } from './stop.ts';
import { attachFused, FusedDecoder, fusedOf } from './fused-decode.ts';

export interface GenerateOpts extends SamplingOpts {
  maxNewTokens?: number;
  seed?: number;
  /** Called with each new piece of text as soon as it decodes to complete characters (and the tokens generated so far). */
  stream?: (text: string, tokens: number) => void;
  /** Called for each generated token with the log-probabilities of that step (natural log, over the vocabulary). */
  onLogprobs?: (logprobs: Float32Array, id: number) => void;
  /** Ends generation before the next decode step once aborted (the step in flight still completes its token). */
  signal?: AbortSignal;
  /** Stop at the tokenizer's end-of-sequence token (default true). */
  stopAtEos?: boolean;
  /** Stop strings: generation ends before the first occurrence of any of them (not included in the text). */
  stop?: string[];
}

export interface GenerateResult {
  text: string;
  ids: number[];
  promptTokens: number;
  /** Decode throughput (new tokens after the first, per second). */
  tokensPerSecond: number;
  prefillSeconds: number;
  /** 'abort': ended by `signal`. */
  finishReason: FinishReason | 'abort';
}

export type FinishReason = 'stop' | 'length';

/**
 * Prompt ids as generation feeds them (BOS first when the tokenizer has one), checked against the
 * model's vocabulary and context.
 */
export function promptIds(model: CausalLM, tokenizer: Tokenizer, prompt: string, maxNew: number): number[] {
  if (!Number.isInteger(maxNew) || maxNew < 0) throw new Error(`max new tokens must be a non-negative integer, got ${maxNew}`);
  const ids = tokenizer.encode(prompt);
  if (tokenizer.bosId !== undefined) ids.unshift(tokenizer.bosId);
  if (ids.length === 0) throw new Error('the prompt is empty and the tokenizer has no BOS token; give a non-empty prompt');
  for (const id of ids) {
    if (id >= model.config.vocabSize) throw new Error(`the tokenizer produced id ${id} but the model's vocabulary has ${model.config.vocabSize} entries; use the model's own tokenizer`);
  }
  if (model.config.mixer === 'attention' && ids.length + maxNew > model.config.maxPositions) {
    throw new Error(`prompt (${ids.length} tokens) + ${maxNew} new tokens exceeds the model context of ${model.config.maxPositions}; shorten the prompt or lower the number of new tokens`);
  }
  return ids;
}

/**
 * The decoding state outlives each step's memory scope: whatever tensors the layers stored in it
 * (KV caches, TTT weights, conv tails) are kept past tidy(), the rest of the step is released.
 */
function keepAll(x: unknown, seen: Set<unknown>): void {
  if (x === null || typeof x !== 'object' || seen.has(x)) return;
  seen.add(x);
  if (x instanceof Tensor) {
    keep(x);
    return;
  }
  for (const v of Array.isArray(x) ? x : Object.values(x)) keepAll(v, seen);
}

/**
 * Logits [L, V] rows of ids [1, L] continuing `state` (all positions, or only the last). For a state
 * decoding through a fused decoder (generate()) the array may be reused by that state's next step.
 */
export async function step(model: CausalLM, ids: number[], state: ModelState, all = false): Promise<Float32Array> {
  const fused = fusedOf(state);
  if (fused) {
    // One native call for the whole stack (src/infer/fused-decode.ts); the logits are the same.
    const out = fused.decoder.logits(fused.state, Int32Array.from(ids), all);
    state.position += ids.length;
    return out;
  }
  const v = model.config.vocabSize;
  const logits = tidy(() => {
    const out = noGrad(() => model.forward(fromArray(Int32Array.from(ids), [1, ids.length], model.device), state));
    keepAll(state, new Set());
    return out;
  });
  const data = await logits.data();
  logits.dispose();
  return Float32Array.from(all ? data : data.subarray(data.length - v));
}

/** One decode step for several sequences together: row i continues states[i] with ids[i]; logits per row. */
export async function stepRows(model: CausalLM, ids: number[], states: ModelState[]): Promise<Float32Array[]> {
  if (states.some((s) => fusedOf(s))) {
    // Fused states hold their own caches: each row is one fused step.
    const rows: Float32Array[] = [];
    for (let i = 0; i < ids.length; i++) rows.push(await step(model, [ids[i]], states[i]));
    return rows;
  }
  const v = model.config.vocabSize;
  const logits = tidy(() => {
    const out = noGrad(() => model.forwardRows(fromArray(Int32Array.from(ids), [ids.length, 1], model.device), states));
    keepAll(states, new Set());
    return out;
  });
  const data = await logits.data();
  logits.dispose();
  return ids.map((_, i) => Float32Array.from(data.subarray(i * v, (i + 1) * v)));
}

/** Natural-log probabilities of a logits row. */
export function logSoftmax(row: Float32Array): Float32Array {
  let max = -Infinity;
  for (const x of row) if (x > max) max = x;
  let z = 0;
  for (const x of row) z += Math.exp(x - max);
  const lz = max + Math.log(z);
  return row.map((x) => x - lz);
}

/** One continuation being decoded: sampling, stop conditions and streamed text. */
export class DecodeSequence {
  readonly state: ModelState;
  readonly ids: number[] = [];
  text = '';
  finishReason: FinishReason | null = null;
  private readonly rng: Rng;
  private readonly decoder?: StreamDecoder;
  private readonly stops: StopMatcher;
  private readonly maxNew: number;

  /** decoder: run this sequence through a fused decoder (src/infer/fused-decode.ts) instead of the modules. */
  constructor(readonly model: CausalLM, readonly tokenizer: Tokenizer, readonly prompt: number[], readonly opts: GenerateOpts,
    decoder?: FusedDecoder | null) {
    checkSampling(opts);
    this.maxNew = opts.maxNewTokens ?? 64;
    this.state = model.createState(1, prompt.length + this.maxNew);
    if (decoder) attachFused(this.state, decoder, prompt.length + this.maxNew);
    this.rng = new Rng(opts.seed ?? 0);
    this.decoder = tokenizer.decodeStream?.();
    this.stops = new StopMatcher(opts.stop ?? []);
    if (this.maxNew === 0) this.finish('length');
  }

  /** The id the next step feeds (the last generated one). */
  get last(): number {
    return this.ids[this.ids.length - 1];
  }

  /** Takes the logits after the latest input, picks the next id and returns the text it completes. */
  accept(logits: Float32Array, onLogprobs?: (lp: Float32Array, id: number) => void): string {
    if (this.finishReason) throw new Error('internal: decode step on a finished sequence');
    const id = sampleToken(penalizeRepeats(logits, [...this.prompt, ...this.ids], this.opts.repeatPenalty), this.opts, this.rng);
    if ((this.opts.stopAtEos ?? true) && id === this.tokenizer.eosId) {
      this.finish('stop');
      const tail = this.emitTail();
      this.text += tail;
      return tail;
    }
    this.ids.push(id);
    if (onLogprobs) onLogprobs(logSoftmax(logits), id);
    let piece = this.stops.push(this.decoder ? this.decoder.push(id) : '');
    if (this.stops.stopped) this.finish('stop');
    else if (this.ids.length >= this.maxNew) {
      this.finish('length');
      piece += this.emitTail();
    }
    this.text += piece;
    return piece;
  }

  private finish(reason: FinishReason): void {
    this.finishReason = reason;
  }

  /** Text still buffered when the sequence ends (incomplete characters, a held stop-string prefix). */
  private emitTail(): string {
    if (this.stops.stopped) return '';
    const rest = this.decoder ? this.decoder.flush() : this.tokenizer.decode(this.ids);
    let t = this.stops.push(rest);
    if (!this.stops.stopped) t += this.stops.flush();
    return t;
  }
}

export async function generate(model: CausalLM, tokenizer: Tokenizer, prompt: string, o: GenerateOpts = {}): Promise<GenerateResult> {
  checkSampling(o);
  const ids = promptIds(model, tokenizer, prompt, o.maxNewTokens ?? 64);
  model.eval();
  // Covered packed models decode through one native call per step (same logits, see fused-decode.ts).
  const seq = new DecodeSequence(model, tokenizer, ids, o, FusedDecoder.for(model));
  const emit = (piece: string) => {
    if (piece) o.stream?.(piece, seq.ids.length);
  };
  const more = () => !seq.finishReason && !o.signal?.aborted;
  const t0 = performance.now();
  let logits = more() ? await step(model, ids, seq.state) : null;
  const t1 = performance.now();
  while (logits) {
    emit(seq.accept(logits, o.onLogprobs));
    logits = more() ? await step(model, [seq.last], seq.state) : null;
  }
  const t2 = performance.now();
  const n = seq.ids.length;
  return {
    text: seq.text, ids: seq.ids, promptTokens: ids.length, finishReason: seq.finishReason ?? (o.signal?.aborted ? 'abort' : 'length'),
    tokensPerSecond: n > 1 ? (n - 1) / ((t2 - t1) / 1000) : 0,
    prefillSeconds: (t1 - t0) / 1000,
  };
}
