// Registers the dense baselines: softmax attention mixer, SwiGLU FFN, dense Linear (HF Llama names).
import { KVCache, SelfAttention } from '../nn/attention.ts';
import { Linear, SwiGLU } from '../nn/layers.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { registerFfn, registerLinear, registerMixer, type SequenceMixer } from './registry.ts';

class AttentionMixer extends SelfAttention implements SequenceMixer {
  override forward(x: Tensor, state?: unknown): Tensor {
    return super.forward(x, state as KVCache | undefined);
  }
  override forwardRows(x: Tensor, states: unknown[]): Tensor {
    return super.forwardRows(x, states as KVCache[]);
  }
  createState(batch: number, capacity: number): KVCache {
    return new KVCache(batch === 1 ? capacity : 0);
  }
}

registerMixer('attention', {
  names: { norm: 'input_layernorm', mixer: 'self_attn', ffnNorm: 'post_attention_layernorm' },
  normEps: (cfg) => cfg.rmsNormEps,
  create: (cfg, _layer, makeLinear) =>
    new AttentionMixer(
      {
        hiddenSize: cfg.hiddenSize, numHeads: cfg.numHeads, numKvHeads: cfg.numKvHeads, ropeTheta: cfg.ropeTheta, ropeStyle: cfg.ropeStyle,
        headDim: cfg.headDim, qkNormEps: cfg.qkNorm ? cfg.rmsNormEps : undefined,
      },
      makeLinear,
    ),
});
registerFfn('swiglu', { create: (cfg, _layer, makeLinear) => new SwiGLU(cfg.hiddenSize, cfg.intermediateSize, makeLinear) });
registerLinear('dense', (_cfg, i, o, init) => new Linear(i, o, init));
