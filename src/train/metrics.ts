// Metrics log: one JSON object per line (training steps and evaluations), readable while a run goes.
//
// Crash safety. Rewriting the log through the atomic writer at every step would cost O(steps) per
// step, and an fsync per record costs milliseconds here (as much as a tiny model's step), so the log
// is an append-only file with these guarantees instead:
// - each record goes out in one write; a write that fails part-way (a full disk) is cut back off;
// - before a checkpoint is written the log is flushed to disk (sync), so a checkpoint that survives a
//   crash or power loss always has every record up to its step;
// - a last line cut by a crash (no final newline) is removed before the next record is appended;
// - a resumed run rewrites the log atomically to the checkpoint's step (truncateAfter), dropping
//   the records of steps that are being redone; a fresh run starts it empty the same way.
import { closeSync, existsSync, fstatSync, fsyncSync, ftruncateSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { writeFileAtomic } from '../io/atomic.ts';

export interface StepRecord {
  type: 'step';
  step: number;
  loss: number;
  lr: number;
  grad_norm: number;
  tokens_per_s: number;
  [extra: string]: number | string;
}
export interface EvalRecord {
  type: 'eval';
  step: number;
  val_loss: number;
  val_ppl: number;
  [extra: string]: number | string;
}
export type MetricRecord = StepRecord | EvalRecord;

export class MetricsLog {
  private tailChecked = false;
  constructor(readonly path: string) {}

  append(rec: MetricRecord): void {
    if (!this.tailChecked) {
      cutTornLine(this.path);
      this.tailChecked = true;
    }
    const bytes = Buffer.from(`${JSON.stringify(rec)}\n`, 'utf8');
    const fd = openSync(this.path, 'a');
    const before = fstatSync(fd).size;
    try {
      let done = 0;
      while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
    } catch (e) {
      try {
        ftruncateSync(fd, before);
      } catch {
        // The next append (or the resume's rewrite) drops the partial line instead.
      }
      throw new Error(`cannot append to ${this.path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    } finally {
      closeSync(fd);
    }
  }

  /** Flushes the records appended so far to disk (called before each checkpoint that covers them). */
  sync(): void {
    if (!existsSync(this.path)) return;
    const fd = openSync(this.path, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * On resume from `step`, drops lines written after that checkpoint by the interrupted run, so the
   * log describes exactly one history.
   */
  truncateAfter(step: number): void {
    if (!existsSync(this.path)) return;
    const kept = readMetrics(this.path).filter((r) => r.step <= step);
    writeFileAtomic(this.path, kept.map((r) => `${JSON.stringify(r)}\n`).join(''));
  }
}

/** Removes a last line that has no newline (a record cut by a crash mid-append). */
export function cutTornLine(path: string): void {
  if (!existsSync(path)) return;
  const fd = openSync(path, 'r+');
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return;
    const one = Buffer.alloc(1);
    readSync(fd, one, 0, 1, size - 1);
    if (one[0] === 0x0a) return;
    // Look back for the previous newline, block by block.
    const block = Buffer.alloc(1 << 16);
    let end = size;
    let keep = 0;
    while (end > 0) {
      const start = Math.max(0, end - block.length);
      const got = readSync(fd, block, 0, end - start, start);
      const at = block.subarray(0, got).lastIndexOf(0x0a);
      if (at >= 0) {
        keep = start + at + 1;
        break;
      }
      end = start;
    }
    ftruncateSync(fd, keep);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function readMetrics(path: string): MetricRecord[] {
  if (!existsSync(path)) return [];
  const out: MetricRecord[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as MetricRecord);
    } catch {
      // A line cut by a crash mid-append is skipped; every complete line is still valid.
    }
  }
  return out;
}
