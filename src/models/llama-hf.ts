// Hugging Face LlamaForCausalLM config.json <-> ModelConfig, paper presets, and loading of HF-style
// checkpoint folders (dense Llama or FBI-LLM with `wscale` / `wbias` next to each binarized weight).
import { loadWeights, readConfig } from '../io/hf-folder.ts';
import type { TensorMap } from '../io/raw.ts';
import { fbiPatternOf } from '../ops/fbi.ts';
import { fromArray } from '../tensor/tensor.ts';
import type { DeviceName } from '../backend/types.ts';
import { CausalLM } from './causal-lm.ts';
import type { ModelConfig } from './config.ts';
import './index.ts';

/** Paper shapes (FBI-LLM configs: LLaMA architecture, MHA, untied, ctx 2048, eps 1e-5, LLaMA-2 vocabulary) plus a tiny one. */
export const FBI_PRESETS: Record<string, Partial<ModelConfig>> = {
  'fbi-130m': fbi(768, 12, 12, 2048),
  'fbi-1.3b': fbi(2048, 24, 32, 5632),
  'fbi-7b': fbi(4096, 32, 32, 11008),
  'fbi-tiny': { ...fbi(64, 2, 4, 160), vocabSize: 320, maxPositions: 256 },
};

/** Dense LLaMA baselines of matching layout. */
export const LLAMA_PRESETS: Record<string, Partial<ModelConfig>> = {
  'dense-tiny': { vocabSize: 320, hiddenSize: 64, numLayers: 2, numHeads: 4, intermediateSize: 160, maxPositions: 256, linear: 'dense' },
  'dense-ref': { vocabSize: 8192, hiddenSize: 256, numLayers: 6, numHeads: 8, intermediateSize: 768, maxPositions: 2048, linear: 'dense' },
};

function fbi(hiddenSize: number, numLayers: number, numHeads: number, intermediateSize: number): Partial<ModelConfig> {
  return {
    vocabSize: 32000, hiddenSize, numLayers, numHeads, numKvHeads: numHeads, intermediateSize, maxPositions: 2048,
    rmsNormEps: 1e-5, ropeTheta: 10000, ropeStyle: 'half', tieEmbeddings: false, linear: 'fbi', fbiScale: 'column',
    bosTokenId: 1, eosTokenId: 2,
  };
}

/** A preset by name (FBI or dense); unknown names list the available ones. */
export function presetConfig(name: string): Partial<ModelConfig> {
  const p = FBI_PRESETS[name] ?? LLAMA_PRESETS[name];
  if (!p) throw new Error(`unknown preset '${name}'; available: ${[...Object.keys(FBI_PRESETS), ...Object.keys(LLAMA_PRESETS)].join(', ')}`);
  return { ...p };
}

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
 * Maps an HF LlamaForCausalLM config.json to a ModelConfig. FBI-LLM checkpoints are detected from
 * the `frugal_linear: "fbi"` field this library writes, or from `wscale` tensors among the weights
 * (the released FBI-LLM configs are plain Llama configs); the scale pattern comes from the wscale shape.
 */
export function configFromHf(hf: Json, weights?: WeightShapes): Partial<ModelConfig> {
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

/** The HF config.json for a ModelConfig (LLaMA layout only), with the FBI marker fields when binarized. */
export function configToHf(cfg: ModelConfig): Json {
  if (cfg.mixer !== 'attention' || (Array.isArray(cfg.ffn) ? cfg.ffn.some((f) => f !== 'swiglu') : cfg.ffn !== 'swiglu') || cfg.ropeStyle !== 'half') {
    throw new Error('configToHf: only LLaMA-layout models (attention mixer, SwiGLU FFN, half-split RoPE) map to LlamaForCausalLM');
  }
  if (cfg.qkNorm || (cfg.headDim !== undefined && cfg.headDim * cfg.numHeads !== cfg.hiddenSize)) {
    throw new Error('configToHf: q/k norms and a head size other than hidden_size / num_attention_heads (Qwen3 layouts) do not map to LlamaForCausalLM');
  }
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

/** Loads an HF-style LlamaForCausalLM folder (config.json + safetensors or torch .bin, sharded or not). */
export function loadPretrained(dir: string, opts: { device?: DeviceName } = {}): CausalLM {
  const hf = readConfig(dir);
  const { tensors } = loadWeights(dir);
  const model = new CausalLM(configFromHf(hf, tensors), { device: opts.device });
  loadStateDict(model, tensors, `checkpoint ${dir}`);
  return model;
}
