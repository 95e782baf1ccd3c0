// Registers the PEER feed-forward (`ffn: 'peer'`, per layer through an array) and its presets.
// Options come from cfg.peer (resolveConfig fills the paper defaults: N = 1024^2, h = 8, k = 16,
// dk = 128, query BatchNorm, shared product keys, GELU experts, softmax router).
// Query BatchNorm in training mode uses batch statistics over all tokens, which leaks information
// from later positions of a sequence into earlier ones in a causal LM; this follows the paper.
// Evaluation and generation use the running statistics (no leak); `queryNorm: 'none'` avoids it in
// training as well.
import { PEER } from '../nn/peer.ts';
import { DEFAULT_PEER, type FfnKind, type ModelConfig } from './config.ts';
import { registerFfn } from './registry.ts';

registerFfn('peer', {
  create: (cfg, _layer, _makeLinear, init) => new PEER(cfg.hiddenSize, { ...DEFAULT_PEER, ...cfg.peer }, init),
});

/** PEER in the middle block only (the paper's placement), SwiGLU elsewhere. */
function middleOnly(layers: number): FfnKind[] {
  return Array.from({ length: layers }, (_, i) => (i === Math.floor(layers / 2) ? 'peer' : 'swiglu'));
}

export const PEER_PRESETS: Record<string, Partial<ModelConfig>> = {
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
  // Tiny models for tests and demos.
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
