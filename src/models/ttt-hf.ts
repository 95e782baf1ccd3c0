// ttt.py / Hugging Face config.json (model_type 'ttt') <-> ModelConfig, and the TTT presets.
import type { ModelConfig, TttOptions } from './config.ts';

type Json = Record<string, unknown>;

const SIZES: Record<string, Pick<ModelConfig, 'hiddenSize' | 'intermediateSize' | 'numLayers' | 'numHeads'>> = {
  '125m': { hiddenSize: 768, intermediateSize: 2048, numLayers: 12, numHeads: 12 },
  '350m': { hiddenSize: 1024, intermediateSize: 2736, numLayers: 24, numHeads: 16 },
  '760m': { hiddenSize: 1536, intermediateSize: 4096, numLayers: 24, numHeads: 16 },
  '1.3b': { hiddenSize: 2048, intermediateSize: 5504, numLayers: 24, numHeads: 32 },
  tiny: { hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4 },
};

function preset(kind: 'linear' | 'mlp', size: string, backbone: TttOptions['backbone']): Partial<ModelConfig> {
  const s = SIZES[size];
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

/** Paper shapes (Mamba backbone, the paper's main variant; '-transformer' for the Transformer backbone). */
export const TTT_PRESETS: Record<string, Partial<ModelConfig>> = {};
for (const kind of ['linear', 'mlp'] as const) {
  for (const size of Object.keys(SIZES)) {
    TTT_PRESETS[`ttt-${kind}-${size}`] = preset(kind, size, 'mamba');
    TTT_PRESETS[`ttt-${kind}-${size}-transformer`] = preset(kind, size, 'transformer');
  }
}

/** Maps a ttt.py TTTConfig (config.json) to a ModelConfig; missing keys take TTTConfig's defaults. */
export function tttConfigFromHf(json: Json): Partial<ModelConfig> {
  const get = <T>(k: string, def: T): T => (json[k] === undefined || json[k] === null ? def : (json[k] as T));
  const type = get('model_type', 'ttt');
  if (type !== 'ttt') throw new Error(`config.json: model_type '${String(type)}' is not a TTT model (expected 'ttt')`);
  const layerType = get('ttt_layer_type', 'linear');
  if (layerType !== 'linear' && layerType !== 'mlp') {
    throw new Error(`config.json: ttt_layer_type '${String(layerType)}' is not supported (use 'linear' or 'mlp')`);
  }
  const act = get('hidden_act', 'silu');
  if (act !== 'silu') throw new Error(`config.json: hidden_act '${String(act)}' is not supported (the SwiGLU FFN needs 'silu')`);
  const flags = [get('pre_conv', false), get('share_qk', false), get('use_gate', false)];
  if (flags.some((v) => v !== flags[0])) {
    throw new Error(
      `config.json: pre_conv=${flags[0]}, share_qk=${flags[1]}, use_gate=${flags[2]} mixes backbones; ` +
      'set all three true (Mamba backbone) or all false (Transformer backbone)',
    );
  }
  const heads = get('num_attention_heads', 32);
  return {
    vocabSize: get('vocab_size', 32000),
    hiddenSize: get('hidden_size', 2048),
    intermediateSize: get('intermediate_size', 5504),
    numLayers: get('num_hidden_layers', 24),
    numHeads: heads,
    numKvHeads: heads,
    maxPositions: get('max_position_embeddings', 2048),
    rmsNormEps: get('rms_norm_eps', 1e-6),
    ropeTheta: get('rope_theta', 10000),
    ropeStyle: 'interleaved',
    tieEmbeddings: get('tie_word_embeddings', true),
    linear: 'dense',
    mixer: layerType === 'linear' ? 'ttt-linear' : 'ttt-mlp',
    ffn: 'swiglu',
    ttt: {
      backbone: flags[0] ? 'mamba' : 'transformer',
      miniBatch: get('mini_batch_size', 16),
      baseLr: get('ttt_base_lr', 1.0),
      convKernel: get('conv_kernel', 4),
    },
    bosTokenId: get('bos_token_id', 1),
    eosTokenId: get('eos_token_id', 2),
  };
}

/** The ttt.py config.json for a TTT ModelConfig. */
export function tttConfigToHf(cfg: ModelConfig): Json {
  if (cfg.mixer !== 'ttt-linear' && cfg.mixer !== 'ttt-mlp') {
    throw new Error(`tttConfigToHf: mixer '${cfg.mixer}' is not a TTT layer; use the Llama mapping instead`);
  }
  const t = cfg.ttt ?? { backbone: 'mamba', miniBatch: 16, baseLr: cfg.mixer === 'ttt-mlp' ? 0.1 : 1.0, convKernel: 4 };
  const mamba = t.backbone === 'mamba';
  return {
    architectures: ['TTTForCausalLM'],
    model_type: 'ttt',
    vocab_size: cfg.vocabSize,
    hidden_size: cfg.hiddenSize,
    intermediate_size: cfg.intermediateSize,
    num_hidden_layers: cfg.numLayers,
    num_attention_heads: cfg.numHeads,
    hidden_act: 'silu',
    max_position_embeddings: cfg.maxPositions,
    rms_norm_eps: cfg.rmsNormEps,
    rope_theta: cfg.ropeTheta,
    tie_word_embeddings: cfg.tieEmbeddings,
    ttt_layer_type: cfg.mixer === 'ttt-linear' ? 'linear' : 'mlp',
    ttt_base_lr: t.baseLr,
    mini_batch_size: t.miniBatch,
    pre_conv: mamba,
    share_qk: mamba,
    use_gate: mamba,
    conv_kernel: t.convKernel,
    bos_token_id: cfg.bosTokenId ?? 1,
    eos_token_id: cfg.eosTokenId ?? 2,
  };
}
