// Step capture and replay (the "compile once, replay" analogue): run a step once while recording
// every command it encodes (pipelines, bind groups, dispatch sizes, copies), then resubmit that
// sequence per step (in command buffers of 128 commands) without running the host-side op code again.
// Buffers must stay where they were recorded: write new inputs into the captured input tensors in
// place (writeBuffer) and keep the step's outputs, parameters and optimizer state alive. Buffers the
// step frees while capturing are kept by the capture (not reused) until dispose().
import type { GpuBuf } from './pool.ts';
import type { Command, Recorder, Runtime } from './runtime.ts';

/** GPU time of one family of a captured step's commands (see CapturedStep.profile). */
export interface KernelProfile {
  /** Kernel key (or 'copy' / 'clear' for transfer commands). */
  key: string;
  /** Commands of this family in one step. */
  count: number;
  /** Milliseconds per step spent in them, measured alone. */
  ms: number;
}

/**
 * New values for tagged dispatches (see DispatchTag), by tag name. The optimizer table's AdamW
 * updates are tagged 'adam': { step, lr? } rebuilds their bias correction and learning rate.
 */
export interface ReplayOverrides {
  adam?: { step: number; lr?: number };
  /** Keys of every fused-attention forward (a decode step's cache length after its append). */
  attentionKeys?: number;
  [tag: string]: unknown;
}

/** A recorded copy whose destination offset the caller may move between replays. */
export interface MovableCopy { readonly dst: GPUBuffer; readonly recordedOffset: number; dstOffset: number; readonly bytes: number }

export class CapturedStep {
  private disposed = false;
  constructor(private readonly rt: Runtime, private readonly rec: Recorder, private readonly owned: GpuBuf[]) {}

  get commandCount(): number {
    return this.rec.commands.length;
  }

  /**
   * The recorded copies into the given buffers, as objects whose dstOffset (bytes) the next replays
   * use: e.g. a KV cache append, which lands one row further each decoded token.
   */
  copiesInto(dst: ReadonlySet<GPUBuffer>): MovableCopy[] {
    const out: MovableCopy[] = [];
    for (const c of this.rec.commands) {
      if (c.kind !== 'copy' || !dst.has(c.dst)) continue;
      const cmd = c;
      const recordedOffset = c.dstOffset;
      out.push({ dst: c.dst, recordedOffset, bytes: c.bytes, get dstOffset() { return cmd.dstOffset; }, set dstOffset(v: number) { cmd.dstOffset = v; } });
    }
    return out;
  }

  /** Resubmits the recorded commands (in command buffers of 128 commands, see Runtime.submitCommands). */
  replay(over: ReplayOverrides = {}): void {
    if (this.disposed) throw new Error('replay(): this captured step was disposed');
    for (const c of this.rec.commands) {
      if (c.kind !== 'dispatch' || !c.tag || !c.uniform || over[c.tag.name] === undefined) continue;
      this.rt.device.queue.writeBuffer(c.uniform, 0, c.tag.uniformFor(over[c.tag.name]).bytes());
    }
    this.rt.submitCommands(this.rec.commands);
  }

  /**
   * Per-family timing: the recorded commands are grouped by kernel key and each group is submitted
   * alone `reps` times between two waits for the queue, so its time excludes every other family
   * (the sum can differ from a full replay, which overlaps nothing but pays no per-group submit).
   * The groups run on whatever the buffers hold, so this leaves the step's data meaningless:
   * profile a step only when its results are no longer needed.
   */
  async profile(reps = 3): Promise<{ totalMs: number; families: KernelProfile[] }> {
    if (this.disposed) throw new Error('profile(): this captured step was disposed');
    const groups = new Map<string, Command[]>();
    for (const c of this.rec.commands) {
      const key = c.kind === 'dispatch' ? c.key : c.kind;
      let g = groups.get(key);
      if (!g) groups.set(key, (g = []));
      g.push(c);
    }
    const time = async (cmds: Command[]) => {
      this.rt.submitCommands(cmds);
      await this.rt.device.queue.onSubmittedWorkDone();
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) this.rt.submitCommands(cmds);
      await this.rt.device.queue.onSubmittedWorkDone();
      return (performance.now() - t0) / reps;
    };
    const totalMs = await time(this.rec.commands);
    const families: KernelProfile[] = [];
    for (const [key, cmds] of groups) families.push({ key, count: cmds.length, ms: await time(cmds) });
    families.sort((a, b) => b.ms - a.ms);
    return { totalMs, families };
  }

  /** Returns the buffers the step freed during capture to the pool and drops the recording. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const b of this.owned) this.rt.pool.release(b);
    for (const t of this.rec.temps) this.rt.pool.release(t);
    for (const u of this.rec.uniforms) u.destroy();
    this.rt.unpinChecks(this.rec.checkIds);
    this.rec.commands.length = 0;
  }
}

/** Runs fn once (its work executes normally) while recording its commands. fn must be synchronous. */
export function captureStep<T>(rt: Runtime, fn: () => T): { result: T; step: CapturedStep } {
  if (rt.recorder) throw new Error('captureStep: a capture is already in progress (captures do not nest)');
  rt.flush();
  const rec: Recorder = { commands: [], uniforms: [], temps: [], checkIds: [] };
  const owned: GpuBuf[] = [];
  rt.recorder = rec;
  rt.pool.onRelease = (b) => { owned.push(b); return true; };
  let result: T;
  try {
    result = fn();
    if (result instanceof Promise) throw new Error('captureStep: the step function must be synchronous (no awaits while recording)');
  } finally {
    rt.recorder = null;
    rt.pool.onRelease = null;
  }
  rt.flush();
  return { result, step: new CapturedStep(rt, rec, owned) };
}
