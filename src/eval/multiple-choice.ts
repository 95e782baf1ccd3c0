// Zero-shot multiple choice in the lm-eval style: each choice is scored by the sum of the
// log-likelihoods of its continuation tokens after the context; `acc` takes the highest sum,
// `acc_norm` the highest sum per byte of continuation text.
import { existsSync, readFileSync } from 'node:fs';
import type { Tokenizer } from '../data/index.ts';
import type { CausalLM } from '../models/index.ts';
import { fromArray, noGrad, tidy } from '../tensor/index.ts';

export interface McItem {
  context: string;
  choices: string[];
  gold: number;
}

export interface McResult {
  acc: number;
  acc_norm: number;
  items: number;
  /** Per item: log-likelihood of each choice. */
  scores: number[][];
}

/** Reads a JSONL file of {context, choices, gold}; every malformed line is reported with its number. */
export function loadMcTasks(path: string): McItem[] {
  if (!existsSync(path)) throw new Error(`task file ${path} does not exist; pass a JSONL file of {context, choices, gold}`);
  const items: McItem[] = [];
  readFileSync(path, 'utf8').split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    let r: Record<string, unknown>;
    try {
      r = JSON.parse(line);
    } catch (e) {
      throw new Error(`${path}:${i + 1}: invalid JSON (${(e as Error).message})`);
    }
    const ok = r && typeof r.context === 'string' && Array.isArray(r.choices) && r.choices.length >= 2 &&
      r.choices.every((c) => typeof c === 'string' && c.length > 0) && Number.isInteger(r.gold) &&
      (r.gold as number) >= 0 && (r.gold as number) < r.choices.length;
    if (!ok) throw new Error(`${path}:${i + 1}: expected {"context": string, "choices": [>= 2 non-empty strings], "gold": index of the right choice}`);
    items.push({ context: r.context as string, choices: r.choices as string[], gold: r.gold as number });
  });
  if (items.length === 0) throw new Error(`task file ${path} holds no items`);
  return items;
}

/** Context and continuation ids as lm-eval splits them: trailing context spaces move to the continuation. */
export function splitContinuation(tok: Tokenizer, context: string, continuation: string): { ctx: number[]; cont: number[] } {
  const trail = context.length - context.trimEnd().length;
  if (trail > 0) {
    continuation = context.slice(context.length - trail) + continuation;
    context = context.slice(0, context.length - trail);
  }
  const whole = tok.encode(context + continuation);
  const ctx = tok.encode(context);
  if (tok.bosId !== undefined) {
    whole.unshift(tok.bosId);
    ctx.unshift(tok.bosId);
  }
  return { ctx: whole.slice(0, ctx.length), cont: whole.slice(ctx.length) };
}

/** Sum of log p(continuation tokens | context); the input is left-truncated to the model context. */
async function continuationLogLikelihood(model: CausalLM, ctx: number[], cont: number[]): Promise<number> {
  if (cont.length === 0) throw new Error('a choice tokenized to nothing; choices must be non-empty text');
  if (ctx.length === 0) throw new Error('the context is empty and the tokenizer has no BOS token; give every item a context');
  const all = [...ctx, ...cont];
  let input = all.slice(0, -1);
  const max = model.config.maxPositions;
  if (input.length > max) input = input.slice(input.length - max);
  const v = model.config.vocabSize;
  const logits = tidy(() => noGrad(() => model.forward(fromArray(Int32Array.from(input), [1, input.length], model.device))));
  const l = await logits.data();
  logits.dispose();
  let ll = 0;
  for (let k = 0; k < cont.length; k++) {
    const row = (input.length - cont.length + k) * v;
    let m = -Infinity;
    for (let j = 0; j < v; j++) m = Math.max(m, l[row + j]);
    let z = 0;
    for (let j = 0; j < v; j++) z += Math.exp(l[row + j] - m);
    ll += l[row + cont[k]] - m - Math.log(z);
  }
  return ll;
}

export async function evaluateMultipleChoice(model: CausalLM, tok: Tokenizer, items: McItem[]): Promise<McResult> {
  model.eval();
  const enc = new TextEncoder();
  let acc = 0;
  let accNorm = 0;
  const scores: number[][] = [];
  for (const it of items) {
    const lls: number[] = [];
    for (const c of it.choices) {
      const { ctx, cont } = splitContinuation(tok, it.context, c);
      lls.push(await continuationLogLikelihood(model, ctx, cont));
    }
    const norm = lls.map((ll, i) => ll / enc.encode(it.choices[i]).length);
    if (argmaxFirst(lls) === it.gold) acc++;
    if (argmaxFirst(norm) === it.gold) accNorm++;
    scores.push(lls);
  }
  return { acc: acc / items.length, acc_norm: accNorm / items.length, items: items.length, scores };
}

function argmaxFirst(xs: number[]): number {
  let b = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[b]) b = i;
  return b;
}
