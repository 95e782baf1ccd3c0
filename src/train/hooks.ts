// Per-step training metrics of the layer families a model holds: FBI flip-flop ratio and bits per
// parameter, PEER expert usage and unevenness.
import type { CausalLM } from '../models/index.ts';
import { binarizedLinears, bitsPerParam, FlipFlopTracker } from '../nn/fbi-linear.ts';
import { PEER } from '../nn/peer.ts';
import type { TrainHook } from './trainer.ts';

/** The hooks for every layer family `model` uses (none for a plain dense model). */
export function familyHooks(model: CausalLM): TrainHook[] {
  const hooks: TrainHook[] = [];
  if (binarizedLinears(model).length) {
    const tracker = new FlipFlopTracker(model);
    const bits = bitsPerParam(model).model;
    // Record the signs before the first update so step 1 already reports a ratio.
    let primed = false;
    hooks.push({
      beforeUpdate: async () => {
        if (!primed) await tracker.step();
        primed = true;
      },
      afterUpdate: async () => ({ flip_flop: await tracker.step(), bits_per_param: bits }),
    });
  }
  const peers = model.model.layers.map((l) => l.ffn).filter((f): f is PEER => f instanceof PEER);
  if (peers.length) {
    // Usage over each step's tokens (paper Table 2 reports it over an evaluation set; this is the training-time view).
    const trackers = peers.map((p) => p.trackUsage(true)!);
    hooks.push({
      afterUpdate: async () => {
        await Promise.all(trackers.map((t) => t.flush()));
        const rec = {
          expert_usage: trackers.reduce((s, t) => s + t.fraction(), 0) / trackers.length,
          expert_unevenness: trackers.reduce((s, t) => s + (t.counts.some((c) => c > 0) ? t.unevenness() : 0), 0) / trackers.length,
        };
        trackers.forEach((t) => t.reset());
        return rec;
      },
    });
  }
  return hooks;
}
