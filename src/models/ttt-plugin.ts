// Registers the TTT mixers ('ttt-linear', 'ttt-mlp') with ttt.py's block names, and the Mamba
// backbone's residual pre-block conv (child 'conv': conv.norm + conv.conv).
import { ConvState, TttLayer, type TttLayerState, TttPreConv } from '../nn/ttt.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { DEFAULT_TTT, type ModelConfig } from './config.ts';
import { type MixerPlugin, registerMixer, type SequenceMixer } from './registry.ts';

class TttMixer extends TttLayer implements SequenceMixer {
  override forward(x: Tensor, state?: unknown): Tensor {
    return super.forward(x, state as TttLayerState | undefined);
  }
  // Capacity is irrelevant: the state has a fixed size whatever the context length.
  override createState(batch: number, _capacity?: number): TttLayerState {
    return super.createState(batch);
  }
}

class PreConvMixer extends TttPreConv implements SequenceMixer {
  override forward(h: Tensor, state?: unknown): Tensor {
    return super.forward(h, state as ConvState | undefined);
  }
  override createState(): ConvState {
    return super.createState();
  }
}

function plugin(kind: 'linear' | 'mlp'): MixerPlugin {
  const ttt = (cfg: ModelConfig) => cfg.ttt ?? { ...DEFAULT_TTT, baseLr: kind === 'mlp' ? 0.1 : 1.0 };
  return {
    names: { norm: 'seq_norm', mixer: 'seq_modeling_block', ffnNorm: 'ffn_norm' },
    normEps: (cfg) => cfg.rmsNormEps,
    create: (cfg, _layer, makeLinear, init) => {
      const t = ttt(cfg);
      return new TttMixer({
        hiddenSize: cfg.hiddenSize, numHeads: cfg.numHeads, kind, backbone: t.backbone, miniBatch: t.miniBatch,
        baseLr: t.baseLr, convKernel: t.convKernel, ropeTheta: cfg.ropeTheta,
      }, makeLinear, init);
    },
    pre: { name: 'conv', create: (cfg, init) => new PreConvMixer(cfg.hiddenSize, ttt(cfg).convKernel, cfg.rmsNormEps, init) },
  };
}

registerMixer('ttt-linear', plugin('linear'));
registerMixer('ttt-mlp', plugin('mlp'));
