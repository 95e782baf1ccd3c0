// Learning-rate schedule: linear warmup from 0 to lr, then cosine decay to minLr at the last step
// (the shape used by FBI-LLM, TTT and most LLaMA-style recipes).
export interface ScheduleOpts {
  lr: number;
  minLr: number;
  warmup: number;
  steps: number;
}

/** Learning rate for optimizer step `step` (0-based). */
export function lrAt(step: number, { lr, minLr, warmup, steps }: ScheduleOpts): number {
  if (warmup > 0 && step < warmup) return (lr * (step + 1)) / warmup;
  const decaySteps = Math.max(1, steps - warmup);
  const t = Math.min(1, Math.max(0, (step - warmup) / decaySteps));
  return minLr + 0.5 * (lr - minLr) * (1 + Math.cos(Math.PI * t));
}

export function checkSchedule(o: ScheduleOpts): void {
  if (!(o.lr > 0)) throw new Error(`learning rate must be > 0, got ${o.lr}`);
  if (!(o.minLr >= 0 && o.minLr <= o.lr)) throw new Error(`min learning rate must be in [0, lr=${o.lr}], got ${o.minLr}`);
  if (!Number.isInteger(o.warmup) || o.warmup < 0) throw new Error(`warmup must be a non-negative integer, got ${o.warmup}`);
  if (!Number.isInteger(o.steps) || o.steps < 1) throw new Error(`steps must be a positive integer, got ${o.steps}`);
}
