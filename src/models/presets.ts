// One registry of named model shapes: the tiny ones used by demos and tests, plus the papers' presets
// of every layer family (dense LLaMA, FBI, TTT, PEER).
import type { ModelConfig } from './config.ts';
import { FBI_PRESETS, LLAMA_PRESETS } from './llama-hf.ts';
import { PEER_PRESETS } from './peer-plugin.ts';
import { TTT_PRESETS } from './ttt-hf.ts';

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

export interface PresetRegistry {
  presets: Record<string, Partial<ModelConfig>>;
}

const ALL: Record<string, Partial<ModelConfig>> = { ...TINY_PRESETS, ...LLAMA_PRESETS, ...FBI_PRESETS, ...TTT_PRESETS, ...PEER_PRESETS };

export async function presetRegistry(): Promise<PresetRegistry> {
  return { presets: ALL };
}

/** A copy of the named preset; unknown names list the known ones. */
export async function presetByName(name: string): Promise<Partial<ModelConfig>> {
  const p = ALL[name];
  if (!p) {
    throw new Error(`unknown preset '${name}'; available: ${Object.keys(ALL).join(', ')}`);
  }
  return structuredClone(p);
}
