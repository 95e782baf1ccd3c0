// Text generation: prefill the prompt into the model's decoding state (KV cache for attention, fixed
// state for TTT), then decode one token at a time, streaming text as soon as it is complete.
import type { Tokenizer } from '../data/index.ts';
import type { CausalLM } from '../models/index.ts';
import { fromArray, keep, noGrad, Rng, Tensor, tidy } from '../tensor/index.ts';
import { checkSampling, sampleToken, type SamplingOpts } from './sampling.ts';

export interface GenerateOpts extends SamplingOpts {
  maxNewTokens?: number;
  seed?: number;
  /** Called with each new piece of text as soon as it decodes to complete characters. */
  stream?: (text: string) => void;
  /** Stop at the tokenizer's end-of-sequence token (default true). */
  stopAtEos?: boolean;
}

export interface GenerateResult {
  text: string;
  ids: number[];
  promptTokens: number;
  /** Decode throughput (new tokens after the first, per second). */
  tokensPerSecond: number;
  prefillSeconds: number;
}

/** Logits of the last position for ids [1, L], continuing the state. */
async function step(model: CausalLM, ids: number[], state: ReturnType<CausalLM['createState']>): Promise<Float32Array> {
  const v = model.config.vocabSize;
  const logits = tidy(() => {
    const out = noGrad(() => model.forward(fromArray(Int32Array.from(ids), [1, ids.length], model.device), state));
    keepAll(state, new Set());
    return out;
  });
  const all = await logits.data();
  logits.dispose();
  return Float32Array.from(all.subarray(all.length - v));
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

export async function generate(model: CausalLM, tokenizer: Tokenizer, prompt: string, o: GenerateOpts = {}): Promise<GenerateResult> {
  checkSampling(o);
  const maxNew = o.maxNewTokens ?? 64;
  if (!Number.isInteger(maxNew) || maxNew < 0) throw new Error(`max new tokens must be a non-negative integer, got ${maxNew}`);
  const promptIds = tokenizer.encode(prompt);
  if (tokenizer.bosId !== undefined) promptIds.unshift(tokenizer.bosId);
  if (promptIds.length === 0) throw new Error('the prompt is empty and the tokenizer has no BOS token; give a non-empty prompt');
  for (const id of promptIds) {
    if (id >= model.config.vocabSize) throw new Error(`the tokenizer produced id ${id} but the model's vocabulary has ${model.config.vocabSize} entries; use the model's own tokenizer`);
  }
  const capacity = promptIds.length + maxNew;
  if (model.config.mixer === 'attention' && capacity > model.config.maxPositions) {
    throw new Error(`prompt (${promptIds.length} tokens) + ${maxNew} new tokens exceeds the model context of ${model.config.maxPositions}; shorten the prompt or lower --max-new-tokens`);
  }
  model.eval();
  const rng = new Rng(o.seed ?? 0);
  const state = model.createState(1, capacity);
  const decoder = tokenizer.decodeStream?.();
  const out: number[] = [];
  let text = '';
  const emit = (piece: string) => {
    if (!piece) return;
    text += piece;
    o.stream?.(piece);
  };
  const t0 = performance.now();
  let logits = await step(model, promptIds, state);
  const t1 = performance.now();
  const stopAtEos = o.stopAtEos ?? true;
  for (let i = 0; i < maxNew; i++) {
    const id = sampleToken(logits, o, rng);
    if (stopAtEos && id === tokenizer.eosId) break;
    out.push(id);
    if (decoder) emit(decoder.push(id));
    if (i + 1 < maxNew) logits = await step(model, [id], state);
  }
  const t2 = performance.now();
  if (decoder) emit(decoder.flush());
  else emit(tokenizer.decode(out));
  return {
    text, ids: out, promptTokens: promptIds.length,
    tokensPerSecond: out.length > 1 ? (out.length - 1) / ((t2 - t1) / 1000) : 0,
    prefillSeconds: (t1 - t0) / 1000,
  };
}
