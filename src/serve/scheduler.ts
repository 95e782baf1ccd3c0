// Continuous batching: requests wait in a bounded queue, join the running batch between tokens
// (their prompt is prefilled on its own), and every decode step feeds the latest token of all
// running sequences through the model in one forward; a finished or cancelled sequence leaves the
// batch at once, freeing its slot for the next waiting request.
import type { Tokenizer } from '../data/index.ts';
import { DecodeSequence, type FinishReason, type GenerateOpts, logSoftmax, step, stepRows } from '../infer/generate.ts';
import type { CausalLM } from '../models/index.ts';

/** Per-token details passed to the job (ids are the model's, logprobs natural-log). */
export interface TokenInfo {
  id: number;
  logprob?: number;
  /** The `topLogprobs` most likely ids at this position with their logprobs. */
  top?: [number, number][];
}

export interface Job {
  prompt: number[];
  opts: GenerateOpts;
  /** Report the logprob of every generated token and this many alternatives (undefined = none). */
  topLogprobs?: number;
  /** Report the logprobs of the prompt tokens too (the first has none). */
  promptLogprobs?: boolean;
  onPrompt?(tokens: TokenInfo[]): void;
  onToken?(piece: string, info: TokenInfo): void;
  onDone(r: { text: string; ids: number[]; finishReason: FinishReason }): void;
  onError(e: Error): void;
}

export interface SchedulerOpts {
  /** Sequences decoded together at most. */
  maxBatch?: number;
  /** Requests waiting for a slot at most; beyond that submit() refuses. */
  maxQueue?: number;
}

interface Running {
  job: Job;
  seq: DecodeSequence;
}

function topOf(lp: Float32Array, k: number): [number, number][] {
  if (k <= 0) return [];
  const best: [number, number][] = [];
  for (let i = 0; i < lp.length; i++) {
    if (best.length < k || lp[i] > best[best.length - 1][1]) {
      best.push([i, lp[i]]);
      best.sort((a, b) => b[1] - a[1] || a[0] - b[0]);
      if (best.length > k) best.pop();
    }
  }
  return best;
}

export class Scheduler {
  readonly maxBatch: number;
  readonly maxQueue: number;
  private readonly waiting: Job[] = [];
  private readonly running: Running[] = [];
  private readonly cancelled = new Set<Job>();
  private loop: Promise<void> | null = null;
  /** Decode steps run and the sequences they carried (for batching statistics). */
  steps = 0;
  stepRows = 0;

  constructor(readonly model: CausalLM, readonly tokenizer: Tokenizer, o: SchedulerOpts = {}) {
    this.maxBatch = o.maxBatch ?? 8;
    this.maxQueue = o.maxQueue ?? 64;
    if (!(Number.isInteger(this.maxBatch) && this.maxBatch >= 1)) throw new Error(`max batch must be an integer >= 1, got ${this.maxBatch}`);
    if (!(Number.isInteger(this.maxQueue) && this.maxQueue >= 0)) throw new Error(`max queue must be an integer >= 0, got ${this.maxQueue}`);
    model.eval();
  }

  get active(): number {
    return this.running.length;
  }
  get queued(): number {
    return this.waiting.length;
  }

  /** Queues a job; false when the queue is full (the caller answers 429). */
  submit(job: Job): boolean {
    if (this.running.length + this.waiting.length >= this.maxBatch + this.maxQueue) return false;
    this.waiting.push(job);
    this.loop ??= this.run().finally(() => {
      this.loop = null;
    });
    return true;
  }

  /** Drops a job (client gone): it leaves the queue or the batch before the next step. */
  cancel(job: Job): void {
    const w = this.waiting.indexOf(job);
    if (w >= 0) this.waiting.splice(w, 1);
    else if (this.running.some((r) => r.job === job)) this.cancelled.add(job);
  }

  /** Resolves when every submitted job has finished. */
  async idle(): Promise<void> {
    while (this.loop) await this.loop;
  }

  private async run(): Promise<void> {
    while (this.waiting.length || this.running.length) {
      try {
        await this.admit();
        await this.decode();
      } catch (e) {
        // A failing step fails the sequences it carried; the server goes on with the next requests.
        const err = e instanceof Error ? e : new Error(String(e));
        for (const r of this.running.splice(0)) r.job.onError(err);
      }
      this.sweep();
      // Let the event loop take new connections and write responses between tokens.
      await new Promise<void>((r) => setImmediate(r));
    }
  }

  /** Waiting jobs take free slots: each prompt is prefilled alone, then its first token is picked. */
  private async admit(): Promise<void> {
    while (this.running.length < this.maxBatch && this.waiting.length) {
      const job = this.waiting.shift()!;
      let seq: DecodeSequence;
      try {
        seq = new DecodeSequence(this.model, this.tokenizer, job.prompt, job.opts);
      } catch (e) {
        job.onError(e as Error);
        continue;
      }
      const r = { job, seq };
      this.running.push(r);
      if (job.promptLogprobs) {
        const all = await step(this.model, job.prompt, seq.state, true);
        const v = this.model.config.vocabSize;
        const rows = job.prompt.map((_, i) => all.subarray(i * v, (i + 1) * v));
        job.onPrompt?.(job.prompt.map((id, i) => {
          if (i === 0) return { id };
          const lp = logSoftmax(rows[i - 1]);
          return { id, logprob: lp[id], top: topOf(lp, job.topLogprobs ?? 0) };
        }));
        if (!seq.finishReason) this.accept(r, Float32Array.from(rows[rows.length - 1]));
      } else if (!seq.finishReason) {
        this.accept(r, await step(this.model, job.prompt, seq.state));
      }
    }
  }

  /** One forward for the latest token of every running sequence. */
  private async decode(): Promise<void> {
    this.sweep();
    const batch = this.running.slice();
    if (!batch.length) return;
    const logits = await stepRows(this.model, batch.map((r) => r.seq.last), batch.map((r) => r.seq.state));
    this.steps++;
    this.stepRows += batch.length;
    batch.forEach((r, i) => {
      if (!this.cancelled.has(r.job)) this.accept(r, logits[i]);
    });
  }

  private accept(r: Running, logits: Float32Array): void {
    let info: TokenInfo | undefined;
    const want = r.job.topLogprobs;
    const piece = r.seq.accept(logits, want === undefined ? undefined : (lp, id) => {
      info = { id, logprob: lp[id], top: topOf(lp, want) };
    });
    const id = r.seq.ids.length ? r.seq.last : -1;
    if (piece || info) r.job.onToken?.(piece, info ?? { id });
  }

  /** Finished sequences report and leave; cancelled ones leave silently. */
  private sweep(): void {
    for (let i = this.running.length - 1; i >= 0; i--) {
      const r = this.running[i];
      if (this.cancelled.has(r.job)) {
        this.cancelled.delete(r.job);
        this.running.splice(i, 1);
      } else if (r.seq.finishReason) {
        this.running.splice(i, 1);
        r.job.onDone({ text: r.seq.text, ids: r.seq.ids, finishReason: r.seq.finishReason });
      }
    }
  }
}
