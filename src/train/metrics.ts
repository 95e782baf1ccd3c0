// Metrics log: one JSON object per line (training steps and evaluations), readable while a run goes.
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
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
  constructor(readonly path: string) {}

  append(rec: MetricRecord): void {
    appendFileSync(this.path, `${JSON.stringify(rec)}\n`);
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
