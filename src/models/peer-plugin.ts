// Registers the PEER feed-forward (`ffn: 'peer'`, per layer through an array); its presets are in presets.ts.
// Options come from cfg.peer (resolveConfig fills the paper defaults: N = 1024^2, h = 8, k = 16,
// dk = 128, query BatchNorm, shared product keys, GELU experts, softmax router).
// Query BatchNorm in training mode uses batch statistics over all tokens, which leaks information
// from later positions of a sequence into earlier ones in a causal LM; this follows the paper.
// Evaluation and generation use the running statistics (no leak); `queryNorm: 'none'` avoids it in
// training as well.
import { PEER } from '../nn/peer.ts';
import { DEFAULT_PEER } from './config.ts';
import { registerFfn } from './registry.ts';

registerFfn('peer', {
  create: (cfg, _layer, _makeLinear, init) => new PEER(cfg.hiddenSize, { ...DEFAULT_PEER, ...cfg.peer }, init),
});
