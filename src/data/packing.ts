// Packing token streams into fixed-length training sequences and batching them reproducibly.
import { Rng } from '../tensor/rng.ts';
import type { Tokenizer } from './tokenizer.ts';

/** Tokenizes documents into one stream, with the tokenizer's EOS after each document when it has one. */
export function tokenizeDocuments(docs: Iterable<string>, tok: Tokenizer): Int32Array {
  const parts: number[][] = [];
  let total = 0;
  for (const d of docs) {
    const ids = tok.encode(d);
    if (tok.eosId !== undefined) ids.push(tok.eosId);
    parts.push(ids);
    total += ids.length;
  }
  const out = new Int32Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * Sequence i covers tokens [i*ctx, i*ctx + ctx + 1): inputs are its first ctx tokens, targets the last
 * ctx. Consecutive sequences share one boundary token, so every token but the first is a target once.
 */
export class PackedDataset {
  readonly numSequences: number;
  constructor(readonly tokens: Int32Array, readonly ctx: number) {
    if (!Number.isInteger(ctx) || ctx < 1) throw new Error(`Context length must be a positive integer, got ${ctx}`);
    this.numSequences = Math.floor((tokens.length - 1) / ctx);
    if (this.numSequences < 1) {
      throw new Error(`Dataset has ${tokens.length} tokens but one sequence needs ctx + 1 = ${ctx + 1}; ` +
        'use a shorter context or more text');
    }
  }

  /** Copies sequence i's inputs and targets into the given arrays at offset. */
  write(i: number, inputs: Int32Array, targets: Int32Array, offset: number): void {
    const start = i * this.ctx;
    inputs.set(this.tokens.subarray(start, start + this.ctx), offset);
    targets.set(this.tokens.subarray(start + 1, start + 1 + this.ctx), offset);
  }
}

export interface Batch {
  inputs: Int32Array; // [batch * ctx], row-major
  targets: Int32Array; // [batch * ctx]
  batch: number;
  ctx: number;
}

/** Where an iterator stands: restoring it replays exactly the batches that would have followed. */
export interface BatchIteratorState {
  epoch: number;
  /** Position within this epoch's order (in sequences). */
  index: number;
  /** RNG state at the start of this epoch, before its shuffle. */
  rngState: number[];
}

export interface BatchIteratorOptions {
  batchSize: number;
  seed?: number;
  /** Shuffle sequence order each epoch (default true); otherwise sequences come in order. */
  shuffle?: boolean;
}

/**
 * Endless batches over a PackedDataset. Each epoch visits a fresh seeded permutation; the tail that
 * does not fill a whole batch is skipped, so every batch has exactly batchSize sequences.
 */
export class BatchIterator {
  readonly batchSize: number;
  private readonly shuffle: boolean;
  private readonly rng: Rng;
  private order: Int32Array;
  private epoch = 0;
  private index = 0;
  private epochRngState: number[];

  constructor(private readonly data: PackedDataset, options: BatchIteratorOptions) {
    const { batchSize } = options;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`Batch size must be a positive integer, got ${batchSize}`);
    if (batchSize > data.numSequences) {
      throw new Error(`Batch size ${batchSize} exceeds the ${data.numSequences} sequences in the dataset; ` +
        'use a smaller batch or context, or more text');
    }
    this.batchSize = batchSize;
    this.shuffle = options.shuffle ?? true;
    this.rng = new Rng(options.seed ?? 0);
    this.order = new Int32Array(data.numSequences);
    this.epochRngState = this.rng.getState();
    this.startEpoch();
  }

  private startEpoch(): void {
    this.epochRngState = this.rng.getState();
    for (let i = 0; i < this.order.length; i++) this.order[i] = i;
    if (this.shuffle) this.rng.shuffle(this.order);
  }

  next(): Batch {
    if (this.index + this.batchSize > this.order.length) {
      this.epoch++;
      this.index = 0;
      this.startEpoch();
    }
    const { ctx } = this.data;
    const inputs = new Int32Array(this.batchSize * ctx);
    const targets = new Int32Array(this.batchSize * ctx);
    for (let b = 0; b < this.batchSize; b++) this.data.write(this.order[this.index + b], inputs, targets, b * ctx);
    this.index += this.batchSize;
    return { inputs, targets, batch: this.batchSize, ctx };
  }

  /** Number of whole batches per epoch. */
  get batchesPerEpoch(): number {
    return Math.floor(this.order.length / this.batchSize);
  }

  state(): BatchIteratorState {
    return { epoch: this.epoch, index: this.index, rngState: [...this.epochRngState] };
  }

  restore(state: BatchIteratorState): void {
    const ok = state && Number.isInteger(state.epoch) && state.epoch >= 0 && Number.isInteger(state.index) &&
      state.index >= 0 && state.index <= this.order.length && Array.isArray(state.rngState) && state.rngState.length === 4;
    if (!ok) throw new Error('Cannot restore the batch iterator: the saved data position is malformed or belongs to a different dataset');
    this.rng.setState(state.rngState);
    this.startEpoch();
    this.epoch = state.epoch;
    this.index = state.index;
  }
}
