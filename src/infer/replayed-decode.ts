// Greedy batch-1 decoding on WebGPU from one recorded token step, replayed (the idea of a CUDA graph):
// the step's commands (every dispatch, bind group and copy of the forward, the argmax and the feeding
// of the token back as the next input) are recorded once and then resubmitted per token without
// running the JS op code again. A decoded token otherwise issues a few hundred dispatches, each with
// tens of microseconds of host work, which is the floor under its time (bench/NOTES.md).
//
// What changes from token to token is patched on the recorded sequence instead of re-recorded:
//  - the RoPE position: every KV cache reads it from one device tensor (KVCache.positions), rewritten
//    before each replay;
//  - the cache append: the copies into each layer's K and V buffers move one row per token
//    (CapturedStep.copiesInto), and so does the copy of the token into the output list;
//  - the key count of every attention forward: its uniform is rebuilt (the 'attentionKeys' tag).
// Nothing else in such a step depends on the position (checked by the tests: the replayed tokens
// equal those of the per-token forward).
import type { CausalLM, ModelState } from '../models/index.ts';
import { KVCache } from '../nn/attention.ts';
import { argmax, reshape } from '../ops/index.ts';
import { fromArray, keep, noGrad, type Tensor, tidy } from '../tensor/index.ts';
import { type CapturedStep, captureWebGPUStep, gpuBufferOf, type KernelProfile, writeBuffer } from '../backend/webgpu/index.ts';
import type { MovableCopy } from '../backend/webgpu/replay.ts';

export class ReplayedDecoder {
  private produced = 1;
  private disposed = false;

  private constructor(
    private readonly state: ModelState,
    private readonly caches: KVCache[],
    private readonly step: CapturedStep,
    private readonly positions: Tensor,
    private readonly input: Tensor,
    private readonly out: Tensor,
    private readonly appends: { copy: MovableCopy; rowBytes: number }[],
    private readonly outCopy: MovableCopy,
    private readonly logits: Tensor,
    readonly maxTokens: number,
  ) {}

  /**
   * Records one greedy step of `model` at the state's position, fed `first` (i32 [1, 1] on webgpu, the
   * token that follows the prompt), and runs it: the first decoded token is produced by the
   * recording itself. The state must hold a prefilled prompt (position >= 1) in preallocated KV
   * caches with room for `maxTokens` more positions; it advances with every token.
   */
  static start(model: CausalLM, state: ModelState, first: Tensor, maxTokens: number): ReplayedDecoder {
    if (first.device !== 'webgpu' || first.dtype !== 'i32' || first.size !== 1) throw new Error('replayed decode: the first token must be an i32 [1, 1] tensor on webgpu');
    if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new Error(`replayed decode: maxTokens must be a positive integer, got ${maxTokens}`);
    if (state.position < 1) throw new Error('replayed decode: prefill the prompt first (the KV caches must exist before the step is recorded)');
    const caches: KVCache[] = [];
    for (const [i, l] of state.layers.entries()) {
      const c = l.mixer;
      if (!(c instanceof KVCache)) throw new Error(`replayed decode: layer ${i} keeps no KV cache (only attention mixers replay)`);
      if (l.pre !== undefined) throw new Error(`replayed decode: layer ${i} has a state before its mixer`);
      if (!c.k || !c.v || c.capacity < c.length + maxTokens) {
        throw new Error(`replayed decode: layer ${i}'s cache holds ${c.capacity} positions, ${c.length} used; ${maxTokens} more do not fit`);
      }
      caches.push(c);
    }
    const vocab = model.config.vocabSize;
    const positions = keep(fromArray(Int32Array.of(state.position), [1], 'webgpu'));
    const input = keep(fromArray(Int32Array.of(0), [1, 1], 'webgpu'));
    const out = keep(fromArray(new Int32Array(maxTokens), [maxTokens], 'webgpu'));
    first.backend.kernels.copy(first.buf, 0, input.buf, 0, 1);
    for (const c of caches) c.positions = positions;
    const p0 = state.position;
    let step: CapturedStep, logits: Tensor;
    try {
      ({ step, result: logits } = captureWebGPUStep(() => tidy(() => {
        const y = keep(noGrad(() => model.forward(input, state)));
        const next = reshape(argmax(reshape(y, [vocab]), 0), [1]);
        next.backend.kernels.copy(next.buf, 0, out.buf, 0, 1);
        next.backend.kernels.copy(next.buf, 0, input.buf, 0, 1);
        return y;
      })));
    } catch (e) {
      for (const c of caches) c.positions = null;
      for (const t of [positions, input, out]) t.dispose();
      throw e;
    }
    const appends: { copy: MovableCopy; rowBytes: number }[] = [];
    for (const c of caches) {
      const [, , h, d] = c.k!.shape;
      const rowBytes = h * d * 4;
      const moved = step.copiesInto(new Set([gpuBufferOf(c.k!.buf), gpuBufferOf(c.v!.buf)]));
      if (moved.length !== 2 || moved.some((m) => m.recordedOffset !== p0 * rowBytes)) {
        step.dispose();
        logits.dispose();
        throw new Error('replayed decode: the recorded step does not append one row to each K and V cache');
      }
      for (const copy of moved) appends.push({ copy, rowBytes });
    }
    const outs = step.copiesInto(new Set([gpuBufferOf(out.buf)]));
    if (outs.length !== 1) { step.dispose(); logits.dispose(); throw new Error('replayed decode: the recorded step does not write its token once'); }
    return new ReplayedDecoder(state, caches, step, positions, input, out, appends, outs[0], logits, maxTokens);
  }

  /** Commands (dispatches and copies) one replayed token submits. */
  get commandCount(): number { return this.step.commandCount; }

  /** Tokens decoded so far (the recording's included). */
  get count(): number { return this.produced; }

  /** Decodes one more token on the GPU (no host round trip; read them with tokens()). */
  next(): void {
    if (this.disposed) throw new Error('replayed decode: this decoder was disposed');
    if (this.produced >= this.maxTokens) throw new Error(`replayed decode: all ${this.maxTokens} tokens were decoded`);
    const pos = this.state.position;
    writeBuffer(this.positions.buf, Int32Array.of(pos));
    for (const a of this.appends) a.copy.dstOffset = pos * a.rowBytes;
    this.outCopy.dstOffset = this.produced * 4;
    this.step.replay({ attentionKeys: pos + 1 });
    this.state.position++;
    for (const c of this.caches) c.length++;
    this.produced++;
  }

  /** The decoded tokens, in order. */
  async tokens(): Promise<Int32Array> {
    const all = (await this.out.data()) as Int32Array;
    return all.slice(0, this.produced);
  }

  /** The logits [1, 1, vocab] of the last decoded token's step (the input that produced the last token). */
  async lastLogits(): Promise<Float32Array> {
    if (this.disposed) throw new Error('replayed decode: this decoder was disposed');
    return (await this.logits.data()) as Float32Array;
  }

  /**
   * GPU time per kernel family of the recorded step (CapturedStep.profile: each family submitted
   * alone). It runs the commands on whatever the buffers hold, so the decoder cannot continue after:
   * it is disposed.
   */
  async profile(reps = 3): Promise<{ totalMs: number; families: KernelProfile[] }> {
    if (this.disposed) throw new Error('replayed decode: this decoder was disposed');
    const r = await this.step.profile(reps);
    this.dispose();
    return r;
  }

  /** Frees the recording and its buffers; the state stays usable by the per-token forward. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const c of this.caches) c.positions = null;
    this.step.dispose();
    for (const t of [this.positions, this.input, this.out, this.logits]) t.dispose();
  }
}
