// One registry of named model shapes: the tiny dense ones used by demos and tests, plus the presets
// of every layer family present in this build (FBI, TTT, PEER). Families that are not built in are
// reported by name so callers can say what is missing instead of failing obscurely.
import type { ModelConfig } from './config.ts';
import { FBI_PRESETS, LLAMA_PRESETS } from './llama-hf.ts';

/** Tiny shapes for the byte-level demo pipeline (vocabulary 256 = bytes; callers may override it). */
export const TINY_PRESETS: Record<string, Partial<ModelConfig>> = {
  'tiny-dense': { vocabSize: 256, hiddenSize: 128, numLayers: 4, numHeads: 4, intermediateSize: 344, maxPositions: 256 },
  'tiny-fbi': { vocabSize: 256, hiddenSize: 128, numLayers: 4, numHeads: 4, intermediateSize: 344, maxPositions: 256, linear: 'fbi', fbiScale: 'column' },
  'tiny-ttt': {
    vocabSize: 256, hiddenSize: 128, numLayers: 4, numHeads: 4, intermediateSize: 344, maxPositions: 256, mixer: 'ttt-linear',
    ttt: { backbone: 'mamba', miniBatch: 16, baseLr: 1.0, convKernel: 4 },
  },
  'tiny-peer': {
    vocabSize: 256, hiddenSize: 128, numLayers: 4, numHeads: 4, intermediateSize: 344, maxPositions: 256,
    ffn: ['swiglu', 'peer', 'swiglu', 'peer'],
    peer: { numExperts: 64 * 64, heads: 4, topk: 8, dimKey: 64, queryNorm: 'batchnorm', sharedKeys: true, activation: 'gelu', score: 'softmax' },
  },
  'micro-dense': { vocabSize: 256, hiddenSize: 32, numLayers: 2, numHeads: 2, intermediateSize: 64, maxPositions: 64 },
};

/** Preset tables of optional families: module path (relative to this file) and exported name. */
const OPTIONAL: { family: string; module: string; name: string }[] = [
  { family: 'ttt', module: './ttt-hf.ts', name: 'TTT_PRESETS' },
  { family: 'peer', module: './peer-plugin.ts', name: 'PEER_PRESETS' },
];

export interface PresetRegistry {
  presets: Record<string, Partial<ModelConfig>>;
  /** Families whose preset tables are not in this build. */
  missing: string[];
}

let cached: PresetRegistry | undefined;

export async function presetRegistry(): Promise<PresetRegistry> {
  if (cached) return cached;
  const presets: Record<string, Partial<ModelConfig>> = { ...TINY_PRESETS, ...LLAMA_PRESETS, ...FBI_PRESETS };
  const missing: string[] = [];
  for (const o of OPTIONAL) {
    try {
      const mod = (await import(new URL(o.module, import.meta.url).href)) as Record<string, unknown>;
      const table = mod[o.name] as Record<string, Partial<ModelConfig>> | undefined;
      if (table) Object.assign(presets, table);
      else missing.push(o.family);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw e;
      missing.push(o.family);
    }
  }
  return (cached = { presets, missing });
}

/** A copy of the named preset; unknown names list the known ones. */
export async function presetByName(name: string): Promise<Partial<ModelConfig>> {
  const { presets, missing } = await presetRegistry();
  const p = presets[name];
  if (!p) {
    const hint = missing.length ? ` (not in this build: ${missing.join(', ')} presets)` : '';
    throw new Error(`unknown preset '${name}'; available: ${Object.keys(presets).join(', ')}${hint}`);
  }
  return structuredClone(p);
}
