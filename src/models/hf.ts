// Hugging Face config.json <-> ModelConfig: one pair, fromHf / toHf, that dispatches on the
// architecture (LlamaForCausalLM, dense or FBI-LLM with `wscale` / `wbias` next to each binarized
// weight; ttt.py's TTTForCausalLM; frugal's own layouts under FrugalForCausalLM with the exact config
// embedded), plus loading of HF-style checkpoint folders.
import { loadWeights, readConfig } from '../io/hf-folder.ts';
import type { TensorMap } from '../io/raw.ts';
import { fbiPatternOf } from '../ops/fbi.ts';
import { fromArray } from '../tensor/tensor.ts';
import type { DeviceName } from '../backend/types.ts';
import { CausalLM } from './causal-lm.ts';
import { type ModelConfig, resolveConfig } from './config.ts';
import './index.ts';

type Json = Record<string, unknown>;

function intField(hf: Json, key: string, fallback?: number): number {
  const v = hf[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new Error(`config.json: '${key}' must be a positive integer, got ${JSON.stringify(hf[key])}`);
  }
  return v;
}

function numField(hf: Json, key: string, fallback: number): number {
  const v = hf[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new Error(`config.json: '${key}' must be a positive number, got ${JSON.stringify(hf[key])}`);
  return v;
}

function ropeThetaOf(hf: Json): number {
  const params = hf.rope_parameters as Json | undefined | null;
  if (params && typeof params === 'object') {
    const type = params.rope_type ?? 'default';
    if (type !== 'default') throw new Error(`config.json: rope_type '${String(type)}' is not supported (only 'default' RoPE); remove the RoPE scaling`);
    return numField(params, 'rope_theta', 10000);
  }
  if (hf.rope_scaling != null) throw new Error(`config.json: 'rope_scaling' ${JSON.stringify(hf.rope_scaling)} is not supported (only plain RoPE)`);
  return numField(hf, 'rope_theta', 10000);
}

/** Shapes of the checkpoint's tensors, used to detect FBI linears and their scale pattern. */
export type WeightShapes = Map<string, { shape: number[] }>;

/**
 * LlamaForCausalLM config.json -> ModelConfig fields. FBI-LLM checkpoints are detected from the
 * `frugal_linear: "fbi"` field this library writes, or from `wscale` tensors among the weights (the
 * released FBI-LLM configs are plain Llama configs); the scale pattern comes from the wscale shape.
 */
export function llamaFromHf(hf: Json, weights?: WeightShapes): Partial<ModelConfig> {
  const arch = hf.architectures;
  if (hf.model_type !== undefined && hf.model_type !== 'llama') {
    throw new Error(`config.json: model_type '${String(hf.model_type)}' is not a Llama model; this loader reads LlamaForCausalLM checkpoints`);
  }
  if (Array.isArray(arch) && !arch.includes('LlamaForCausalLM')) {
    throw new Error(`config.json: architectures ${JSON.stringify(arch)} do not include LlamaForCausalLM`);
  }
  if ((hf.hidden_act ?? 'silu') !== 'silu') throw new Error(`config.json: hidden_act '${String(hf.hidden_act)}' is not supported (LLaMA uses 'silu')`);
  for (const k of ['attention_bias', 'mlp_bias']) if (hf[k] === true) throw new Error(`config.json: '${k}: true' is not supported (LLaMA projections have no bias)`);
  const hidden = intField(hf, 'hidden_size');
  const heads = intField(hf, 'num_attention_heads');
  if (hf.head_dim != null && hf.head_dim !== hidden / heads) {
    throw new Error(`config.json: head_dim ${String(hf.head_dim)} differs from hidden_size / num_attention_heads = ${hidden / heads}; only the standard head size is supported`);
  }
  const cfg: Partial<ModelConfig> = {
    vocabSize: intField(hf, 'vocab_size'),
    hiddenSize: hidden,
    numLayers: intField(hf, 'num_hidden_layers'),
    numHeads: heads,
    numKvHeads: intField(hf, 'num_key_value_heads', heads),
    intermediateSize: intField(hf, 'intermediate_size'),
    maxPositions: intField(hf, 'max_position_embeddings', 2048),
    rmsNormEps: numField(hf, 'rms_norm_eps', 1e-6),
    ropeTheta: ropeThetaOf(hf),
    ropeStyle: 'half',
    tieEmbeddings: hf.tie_word_embeddings === true,
    linear: 'dense',
    mixer: 'attention',
    ffn: 'swiglu',
  };
  if (typeof hf.bos_token_id === 'number') cfg.bosTokenId = hf.bos_token_id;
  if (typeof hf.eos_token_id === 'number') cfg.eosTokenId = hf.eos_token_id;
  if (hf.frugal_linear === 'fbi') {
    cfg.linear = 'fbi';
    cfg.fbiScale = (hf.frugal_fbi_scale as ModelConfig['fbiScale'] | undefined) ?? 'column';
  } else if (hf.frugal_linear !== undefined && hf.frugal_linear !== 'dense') {
    throw new Error(`config.json: frugal_linear must be "dense" or "fbi", got ${JSON.stringify(hf.frugal_linear)}`);
  }
  const scaleKey = weights && [...weights.keys()].find((k) => k.endsWith('.wscale'));
  if (weights && scaleKey) {
    const base = scaleKey.slice(0, -'.wscale'.length);
    const w = weights.get(`${base}.weight`);
    const pattern = w && w.shape.length === 2 ? fbiPatternOf(weights.get(scaleKey)!.shape, w.shape[0], w.shape[1]) : null;
    if (!pattern) throw new Error(`checkpoint: ${scaleKey} has shape [${weights.get(scaleKey)!.shape}], which fits no FBI scale pattern for ${base}.weight`);
    cfg.linear = 'fbi';
    cfg.fbiScale = pattern;
  }
  return cfg;
}

/** Why a config has no LlamaForCausalLM form, or undefined when it has one. */
function notLlamaLayout(cfg: ModelConfig): string | undefined {
  if (cfg.mixer !== 'attention' || (Array.isArray(cfg.ffn) ? cfg.ffn.some((f) => f !== 'swiglu') : cfg.ffn !== 'swiglu') || cfg.ropeStyle !== 'half') {
    return 'only LLaMA-layout models (attention mixer, SwiGLU FFN, half-split RoPE) map to LlamaForCausalLM';
  }
  if (cfg.qkNorm || (cfg.headDim !== undefined && cfg.headDim * cfg.numHeads !== cfg.hiddenSize)) {
    return 'q/k norms and a head size other than hidden_size / num_attention_heads (Qwen3 layouts) do not map to LlamaForCausalLM';
  }
  return undefined;
}

/** LlamaForCausalLM config.json fields of a LLaMA-layout config, with the FBI marker fields when binarized. */
export function llamaToHf(cfg: ModelConfig): Json {
  const problem = notLlamaLayout(cfg);
  if (problem) throw new Error(`configToHf: ${problem}`);
  const hf: Json = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: cfg.vocabSize,
    hidden_size: cfg.hiddenSize,
    num_hidden_layers: cfg.numLayers,
    num_attention_heads: cfg.numHeads,
    num_key_value_heads: cfg.numKvHeads,
    head_dim: cfg.hiddenSize / cfg.numHeads,
    intermediate_size: cfg.intermediateSize,
    max_position_embeddings: cfg.maxPositions,
    rms_norm_eps: cfg.rmsNormEps,
    rope_theta: cfg.ropeTheta,
    hidden_act: 'silu',
    attention_bias: false,
    mlp_bias: false,
    tie_word_embeddings: cfg.tieEmbeddings,
    torch_dtype: 'float32',
  };
  if (cfg.bosTokenId !== undefined) hf.bos_token_id = cfg.bosTokenId;
  if (cfg.eosTokenId !== undefined) hf.eos_token_id = cfg.eosTokenId;
  if (cfg.linear === 'fbi') {
    hf.frugal_linear = 'fbi';
    hf.frugal_fbi_scale = cfg.fbiScale;
  }
  return hf;
}

/** ttt.py TTTConfig (config.json, model_type 'ttt') -> ModelConfig fields; missing keys take TTTConfig's defaults. */
function tttFromHf(json: Json): Partial<ModelConfig> {
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

/** The common HF fields of a layout no HF architecture describes (TTT or PEER variants, mixes). */
function frugalToHf(cfg: ModelConfig): Json {
  return {
    architectures: ['FrugalForCausalLM'],
    model_type: 'frugal',
    vocab_size: cfg.vocabSize,
    hidden_size: cfg.hiddenSize,
    num_hidden_layers: cfg.numLayers,
    num_attention_heads: cfg.numHeads,
    num_key_value_heads: cfg.numKvHeads,
    intermediate_size: cfg.intermediateSize,
    max_position_embeddings: cfg.maxPositions,
    rms_norm_eps: cfg.rmsNormEps,
    tie_word_embeddings: cfg.tieEmbeddings,
    torch_dtype: 'float32',
  };
}

function isTtt(hf: Json): boolean {
  return hf.model_type === 'ttt' || (Array.isArray(hf.architectures) && hf.architectures.includes('TTTForCausalLM'));
}

/**
 * ModelConfig of a config.json: the embedded frugal config when present (what toHf writes), else
 * the mapping of its architecture: ttt.py's TTTForCausalLM (model_type 'ttt') or LlamaForCausalLM
 * (dense or FBI; `weights` are the checkpoint's tensor shapes, to detect FBI linears without the marker).
 */
export function fromHf(hf: Json, weights?: WeightShapes, source = 'config.json'): ModelConfig {
  if (hf.frugal !== undefined) {
    if (typeof hf.frugal !== 'object' || hf.frugal === null || Array.isArray(hf.frugal)) throw new Error(`${source}: "frugal" must be an object`);
    return resolveConfig(hf.frugal as Partial<ModelConfig>);
  }
  return resolveConfig(isTtt(hf) ? tttFromHf(hf) : llamaFromHf(hf, weights));
}

/**
 * The HF config.json of a ModelConfig: LlamaForCausalLM fields for LLaMA layouts (dense or FBI),
 * otherwise the same common fields under FrugalForCausalLM; the exact config is embedded under
 * "frugal" so every variant (TTT, PEER) reloads identically.
 */
export function toHf(cfg: ModelConfig): Json {
  return { ...(notLlamaLayout(cfg) ? frugalToHf(cfg) : llamaToHf(cfg)), frugal: cfg };
}

const IGNORED = /(^|\.)rotary_emb\.inv_freq$/;

/**
 * Copies a checkpoint's tensors into a model. Every parameter and buffer must be present and nothing
 * else (RoPE `inv_freq` buffers are recomputed, so they are skipped; a tied model skips a stored
 * `lm_head.weight`). Missing or unexpected names fail in one error that lists them.
 */
export function loadStateDict(model: CausalLM, tensors: TensorMap, where = 'checkpoint'): void {
  const expected = [...model.namedParameters(), ...model.namedBuffers()].map(([n]) => n);
  const expectedSet = new Set(expected);
  const given = [...tensors.keys()].filter((k) => !IGNORED.test(k) && !(model.config.tieEmbeddings && k === 'lm_head.weight'));
  const missing = expected.filter((n) => !tensors.has(n));
  const extra = given.filter((k) => !expectedSet.has(k));
  if (missing.length || extra.length) {
    const parts = [];
    if (missing.length) parts.push(`missing ${missing.length} tensor(s): ${listNames(missing)}`);
    if (extra.length) parts.push(`unexpected ${extra.length} tensor(s): ${listNames(extra)}`);
    throw new Error(`${where} does not match the model built from its config: ${parts.join('; ')}`);
  }
  for (const name of expected) {
    const raw = tensors.get(name)!;
    if (raw.dtype !== 'f32') throw new Error(`${where}: tensor ${name} is ${raw.dtype}, expected floating point`);
    model.setTensor(name, fromArray(raw.data, raw.shape, model.device));
  }
}

function listNames(names: string[]): string {
  return names.length <= 12 ? names.join(', ') : `${names.slice(0, 12).join(', ')}, ... (${names.length - 12} more)`;
}

/** Loads an HF-style checkpoint folder (config.json + safetensors or torch .bin, sharded or not) of any architecture fromHf reads. */
export function loadPretrained(dir: string, opts: { device?: DeviceName } = {}): CausalLM {
  const hf = readConfig(dir);
  const { tensors } = loadWeights(dir);
  const model = new CausalLM(fromHf(hf, tensors, `${dir}/config.json`), { device: opts.device });
  loadStateDict(model, tensors, `checkpoint ${dir}`);
  return model;
}
