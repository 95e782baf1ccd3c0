// The one table of named model shapes: the tiny ones used by demos and tests, plus the papers'
// presets of every layer family (dense LLaMA, FBI-LLM, TTT, PEER).
import { DEFAULT_PEER, type FfnKind, type ModelConfig, type TttOptions } from './config.ts';

/** FBI-LLM configs: LLaMA architecture, MHA, untied, ctx 2048, eps 1e-5, LLaMA-2 vocabulary. */
function fbi(hiddenSize: number, numLayers: number, numHeads: number, intermediateSize: number): Partial<ModelConfig> {
  return {
    vocabSize: 32000, hiddenSize, numLayers, numHeads, numKvHeads: numHeads, intermediateSize, maxPositions: 2048,
    rmsNormEps: 1e-5, ropeTheta: 10000, ropeStyle: 'half', tieEmbeddings: false, linear: 'fbi', fbiScale: 'column',
    bosTokenId: 1, eosTokenId: 2,
  };
}

/** ttt.py TTTConfig sizes. */
const TTT_SIZES: Record<string, Pick<ModelConfig, 'hiddenSize' | 'intermediateSize' | 'numLayers' | 'numHeads'>> = {
  '125m': { hiddenSize: 768, intermediateSize: 2048, numLayers: 12, numHeads: 12 },
  '350m': { hiddenSize: 1024, intermediateSize: 2736, numLayers: 24, numHeads: 16 },
  '760m': { hiddenSize: 1536, intermediateSize: 4096, numLayers: 24, numHeads: 16 },
  '1.3b': { hiddenSize: 2048, intermediateSize: 5504, numLayers: 24, numHeads: 32 },
  tiny: { hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4 },
};

function ttt(kind: 'linear' | 'mlp', size: string, backbone: TttOptions['backbone']): Partial<ModelConfig> {
  const s = TTT_SIZES[size];
  return {
    ...s,
    numKvHeads: s.numHeads,
    vocabSize: size === 'tiny' ? 320 : 32000,
    maxPositions: size === 'tiny' ? 256 : 2048,
    rmsNormEps: 1e-6,
    ropeTheta: 10000,
    ropeStyle: 'interleaved',
    tieEmbeddings: true,
    mixer: kind === 'linear' ? 'ttt-linear' : 'ttt-mlp',
    ffn: 'swiglu',
    ttt: { backbone, miniBatch: 16, baseLr: kind === 'linear' ? 1.0 : 0.1, convKernel: 4 },
    bosTokenId: 1,
    eosTokenId: 2,
  };
}

/** TTT paper shapes: Mamba backbone (the paper's main variant), '-transformer' for the Transformer backbone. */
function tttPresets(): Record<string, Partial<ModelConfig>> {
  const out: Record<string, Partial<ModelConfig>> = {};
  for (const kind of ['linear', 'mlp'] as const) {
    for (const size of Object.keys(TTT_SIZES)) {
      out[`ttt-${kind}-${size}`] = ttt(kind, size, 'mamba');
      out[`ttt-${kind}-${size}-transformer`] = ttt(kind, size, 'transformer');
    }
  }
  return out;
}

/** PEER in the middle block only (the paper's placement), SwiGLU elsewhere. */
function middleOnly(layers: number): FfnKind[] {
  return Array.from({ length: layers }, (_, i) => (i === Math.floor(layers / 2) ? 'peer' : 'swiglu'));
}

/** Every preset by name, in the order `frugal info --presets` lists them. */
export const PRESETS: Readonly<Record<string, Partial<ModelConfig>>> = {
  // Tiny shapes for the byte-level demo pipeline (vocabulary 256 = bytes; callers may override it).
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
  // Dense LLaMA baselines of the FBI presets' layout.
  'dense-tiny': { vocabSize: 320, hiddenSize: 64, numLayers: 2, numHeads: 4, intermediateSize: 160, maxPositions: 256, linear: 'dense' },
  'dense-ref': { vocabSize: 8192, hiddenSize: 256, numLayers: 6, numHeads: 8, intermediateSize: 768, maxPositions: 2048, linear: 'dense' },
  // FBI-LLM paper shapes plus a tiny one.
  'fbi-130m': fbi(768, 12, 12, 2048),
  'fbi-1.3b': fbi(2048, 24, 32, 5632),
  'fbi-7b': fbi(4096, 32, 32, 11008),
  'fbi-tiny': { ...fbi(64, 2, 4, 160), vocabSize: 320, maxPositions: 256 },
  ...tttPresets(),
  // ~130M dense backbone (d 768, 12 layers) with a 1024^2-expert PEER layer in the middle block.
  'peer-130m': {
    vocabSize: 32000, hiddenSize: 768, numLayers: 12, numHeads: 12, intermediateSize: 2048, maxPositions: 2048,
    ffn: middleOnly(12),
    peer: { ...DEFAULT_PEER, numExperts: 1024 * 1024, heads: 8, topk: 16, dimKey: 128 },
  },
  // Every FFN a PEER layer (h = 8, k = 16, N = 1024^2), as in the paper's scaling runs at small width.
  'peer-130m-all': {
    vocabSize: 32000, hiddenSize: 768, numLayers: 12, numHeads: 12, intermediateSize: 2048, maxPositions: 2048,
    ffn: 'peer',
    peer: { ...DEFAULT_PEER, numExperts: 1024 * 1024, heads: 8, topk: 16, dimKey: 128 },
  },
  // Tiny PEER models for tests and demos.
  'peer-tiny': {
    vocabSize: 256, hiddenSize: 64, numLayers: 2, numHeads: 4, intermediateSize: 160, maxPositions: 256,
    ffn: ['swiglu', 'peer'],
    peer: { ...DEFAULT_PEER, numExperts: 256, heads: 4, topk: 4, dimKey: 32 },
  },
  'peer-tiny-nobn': {
    vocabSize: 256, hiddenSize: 64, numLayers: 2, numHeads: 4, intermediateSize: 160, maxPositions: 256,
    ffn: ['swiglu', 'peer'],
    peer: { ...DEFAULT_PEER, numExperts: 256, heads: 4, topk: 4, dimKey: 32, queryNorm: 'none', sharedKeys: false },
  },
};

export interface PresetRegistry {
  presets: Readonly<Record<string, Partial<ModelConfig>>>;
}

export async function presetRegistry(): Promise<PresetRegistry> {
  return { presets: PRESETS };
}

/** A copy of the named preset; unknown names list the known ones. */
export async function presetByName(name: string): Promise<Partial<ModelConfig>> {
  const p = Object.hasOwn(PRESETS, name) ? PRESETS[name] : undefined;
  if (!p) {
    throw new Error(`unknown preset '${name}'; available: ${Object.keys(PRESETS).join(', ')}`);
  }
  return structuredClone(p);
}
