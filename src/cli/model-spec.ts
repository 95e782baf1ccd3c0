// Resolving a model argument: a checkpoint folder, a config .json file, or a preset name.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { CausalLM, type ModelConfig } from '../models/index.ts';
import { presetByName } from '../models/presets.ts';
import { binarizedLinears, bitsPerParam, FlipFlopTracker } from '../nn/fbi-linear.ts';
import { loadModel, resolveModelDir } from '../train/checkpoint.ts';
import { readConfig } from '../io/hf-folder.ts';
import { PEER } from '../nn/peer.ts';
import { isPackedConfig } from '../io/packed.ts';
import { loadPackedModel } from '../infer/packed-linear.ts';
import type { TrainHook } from '../train/trainer.ts';
import { UsageError } from './args.ts';
import type { DeviceName } from '../backend/types.ts';

/** Config of a preset or .json file, with the vocabulary set to the tokenizer's. */
export async function configFromSpec(spec: string, vocabSize: number): Promise<Partial<ModelConfig>> {
  let cfg: Partial<ModelConfig>;
  if (spec.endsWith('.json') && existsSync(spec) && statSync(spec).isFile()) {
    try {
      cfg = JSON.parse(readFileSync(spec, 'utf8'));
    } catch (e) {
      throw new UsageError(`model config ${spec} is not valid JSON (${(e as Error).message})`);
    }
  } else {
    cfg = await presetByName(spec);
  }
  return { ...cfg, vocabSize };
}

/** A fresh model from a preset/config, or the model stored in a checkpoint folder. */
export async function modelFromSpec(spec: string, vocabSize: number, seed: number): Promise<{ model: CausalLM; fromCheckpoint: boolean }> {
  if (existsSync(spec) && statSync(spec).isDirectory()) return { model: loadModel(spec), fromCheckpoint: true };
  return { model: new CausalLM(await configFromSpec(spec, vocabSize), { seed }), fromCheckpoint: false };
}

/** Per-step metrics every model reports for its layer families (FBI flip-flop ratio and bits/param). */
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

/** A checkpoint folder or a packed 1-bit folder (written by frugal pack), whichever `dir` holds. */
export function loadAnyModel(dir: string): CausalLM {
  const abs = resolveModelDir(dir);
  return isPackedConfig(readConfig(abs)) ? loadPackedModel(abs) : loadModel(abs);
}

/** loadAnyModel, then placed on `device` (brought up by useDevice). */
export async function loadModelOn(dir: string, device: DeviceName): Promise<CausalLM> {
  return loadAnyModel(dir).moveTo(device);
}
