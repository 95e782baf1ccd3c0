// GGUF metadata of the LLaMA and Qwen3 architectures -> ModelConfig, and the GGUF tensor names of
// this library's state-dict names. llama.cpp stores LLaMA q/k rows permuted for interleaved RoPE
// (adjacent pairs rotate together) and Qwen3 ones for half-split RoPE; the config says which.
import type { ModelConfig } from './config.ts';

/** Architectures (general.architecture) this build maps onto CausalLM. */
const GGUF_ARCHITECTURES = ['llama', 'qwen3'] as const;

type Meta = ReadonlyMap<string, unknown>;
type Dims = ReadonlyMap<string, { dims: number[] }>;

const BLOCK_NAMES: Record<string, string> = {
  attn_norm: 'input_layernorm',
  ffn_norm: 'post_attention_layernorm',
  attn_q: 'self_attn.q_proj',
  attn_k: 'self_attn.k_proj',
  attn_v: 'self_attn.v_proj',
  attn_output: 'self_attn.o_proj',
  attn_q_norm: 'self_attn.q_norm',
  attn_k_norm: 'self_attn.k_norm',
  ffn_gate: 'mlp.gate_proj',
  ffn_up: 'mlp.up_proj',
  ffn_down: 'mlp.down_proj',
};
const TOP_NAMES: Record<string, string> = { token_embd: 'model.embed_tokens', output_norm: 'model.norm', output: 'lm_head' };
const OURS_TO_BLOCK = new Map(Object.entries(BLOCK_NAMES).map(([g, o]) => [o, g]));
const OURS_TO_TOP = new Map(Object.entries(TOP_NAMES).map(([g, o]) => [o, g]));

/** The GGUF name of a module path ('model.layers.3.self_attn.q_proj' -> 'blk.3.attn_q'), or null. */
export function ggufModuleName(module: string): string | null {
  const top = OURS_TO_TOP.get(module);
  if (top) return top;
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(module);
  const g = m && OURS_TO_BLOCK.get(m[2]);
  return g ? `blk.${m![1]}.${g}` : null;
}

/** This library's module path of a GGUF tensor name ('blk.3.attn_q.weight' -> 'model.layers.3.self_attn.q_proj'), or null. */
export function moduleOfGgufTensor(name: string): string | null {
  if (!name.endsWith('.weight')) return null;
  const base = name.slice(0, -'.weight'.length);
  if (TOP_NAMES[base]) return TOP_NAMES[base];
  const m = /^blk\.(\d+)\.(.+)$/.exec(base);
  return m && BLOCK_NAMES[m[2]] ? `model.layers.${m[1]}.${BLOCK_NAMES[m[2]]}` : null;
}

/** ModelConfig of a GGUF's metadata (and tensor shapes); one error line names what does not fit. */
export function configFromGguf(meta: Meta, tensors: Dims, what = 'GGUF'): Partial<ModelConfig> {
  const arch = meta.get('general.architecture');
  if (typeof arch !== 'string') throw new Error(`${what}: no general.architecture in the metadata`);
  if (!(GGUF_ARCHITECTURES as readonly string[]).includes(arch)) {
    throw new Error(`${what}: architecture '${arch}' is not supported (supported: ${GGUF_ARCHITECTURES.join(', ')})`);
  }
  const int = (key: string, fallback?: number): number => {
    const v = meta.get(`${arch}.${key}`) ?? fallback;
    if (Array.isArray(v) || ArrayBuffer.isView(v)) throw new Error(`${what}: ${arch}.${key} varies per layer, which this build does not support`);
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new Error(`${what}: ${arch}.${key} must be a positive integer, got ${JSON.stringify(v ?? null)}`);
    return v;
  };
  const real = (key: string, fallback: number): number => {
    const v = meta.get(`${arch}.${key}`) ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new Error(`${what}: ${arch}.${key} must be a positive number, got ${JSON.stringify(v)}`);
    return v;
  };
  const scaling = meta.get(`${arch}.rope.scaling.type`);
  if (scaling !== undefined && scaling !== 'none') throw new Error(`${what}: RoPE scaling '${String(scaling)}' is not supported (only plain RoPE)`);
  const hidden = int('embedding_length');
  const heads = int('attention.head_count');
  const headDim = int('attention.key_length', hidden / heads);
  if (int('attention.value_length', headDim) !== headDim) throw new Error(`${what}: value heads differ in size from key heads, which this build does not support`);
  if (int('rope.dimension_count', headDim) !== headDim) throw new Error(`${what}: RoPE over ${int('rope.dimension_count')} of ${headDim} head dimensions (partial rotary) is not supported`);
  const embd = tensors.get('token_embd.weight');
  if (!embd || embd.dims.length !== 2 || embd.dims[0] !== hidden) throw new Error(`${what}: token_embd.weight is missing or is not [${hidden}, vocab]`);
  const tokens = meta.get('tokenizer.ggml.tokens');
  const vocab = embd.dims[1];
  if (Array.isArray(tokens) && tokens.length !== vocab) throw new Error(`${what}: the tokenizer has ${tokens.length} tokens but token_embd.weight has ${vocab} rows`);
  const cfg: Partial<ModelConfig> = {
    vocabSize: vocab,
    hiddenSize: hidden,
    numLayers: int('block_count'),
    numHeads: heads,
    numKvHeads: int('attention.head_count_kv', heads),
    intermediateSize: int('feed_forward_length'),
    maxPositions: int('context_length', 2048),
    rmsNormEps: real('attention.layer_norm_rms_epsilon', 1e-5),
    ropeTheta: real('rope.freq_base', 10000),
    ropeStyle: arch === 'llama' ? 'interleaved' : 'half',
    tieEmbeddings: !tensors.has('output.weight'),
    linear: 'dense',
    mixer: 'attention',
    ffn: 'swiglu',
  };
  // The sizes must agree with the stored tensors before anything is built from them.
  const layers = new Set([...tensors.keys()].map((n) => /^blk\.(\d+)\./.exec(n)?.[1]).filter((x) => x !== undefined));
  if (layers.size !== cfg.numLayers) throw new Error(`${what}: ${arch}.block_count is ${cfg.numLayers} but the file holds tensors of ${layers.size} blocks`);
  const expect = (name: string, dims: number[]) => {
    const t = tensors.get(name);
    if (!t) throw new Error(`${what}: missing tensor ${name}`);
    if (t.dims.length !== dims.length || t.dims.some((d, i) => d !== dims[i])) {
      throw new Error(`${what}: tensor ${name} is [${t.dims.join(', ')}], the metadata implies [${dims.join(', ')}]`);
    }
  };
  expect('blk.0.attn_q.weight', [hidden, heads * headDim]);
  expect('blk.0.attn_k.weight', [hidden, cfg.numKvHeads! * headDim]);
  expect('blk.0.ffn_up.weight', [hidden, cfg.intermediateSize!]);
  if (headDim * heads !== hidden) cfg.headDim = headDim;
  if (arch === 'qwen3') {
    cfg.qkNorm = true;
    cfg.headDim = headDim;
  }
  const id = (k: string) => meta.get(`tokenizer.ggml.${k}`);
  if (typeof id('bos_token_id') === 'number') cfg.bosTokenId = id('bos_token_id') as number;
  if (typeof id('eos_token_id') === 'number') cfg.eosTokenId = id('eos_token_id') as number;
  return cfg;
}
