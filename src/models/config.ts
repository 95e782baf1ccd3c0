// The model config: one decoder built from interchangeable parts. Validation gives one clear line.
import type { PeerLayerOptions } from '../nn/peer.ts';

export type LinearKind = 'dense' | 'fbi';
export type MixerKind = 'attention' | 'ttt-linear' | 'ttt-mlp';
export type FfnKind = 'swiglu' | 'peer';

export interface TttOptions {
  backbone: 'transformer' | 'mamba';
  miniBatch: number;
  baseLr: number;
  convKernel: number;
}

/** PEER layer options (the layer's own option type, see src/nn/peer.ts). */
export type PeerOptions = PeerLayerOptions;

export interface ModelConfig {
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  /** Attention head size; default hiddenSize / numHeads (Qwen3 sets it apart from the hidden size). */
  headDim?: number;
  /** Per-head RMSNorm of queries and keys before RoPE (Qwen3's q_norm / k_norm). */
  qkNorm?: boolean;
  intermediateSize: number;
  maxPositions: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeStyle: 'half' | 'interleaved';
  tieEmbeddings: boolean;
  linear: LinearKind;
  /** FBI scale pattern for binarized linears. */
  fbiScale: 'column' | 'row' | 'single';
  mixer: MixerKind;
  /** FFN kind per layer, or one kind for all. */
  ffn: FfnKind | FfnKind[];
  ttt?: TttOptions;
  peer?: PeerOptions;
  bosTokenId?: number;
  eosTokenId?: number;
}

export const DEFAULT_CONFIG: ModelConfig = {
  vocabSize: 256,
  hiddenSize: 64,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 4,
  intermediateSize: 160,
  maxPositions: 2048,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  ropeStyle: 'half',
  tieEmbeddings: false,
  linear: 'dense',
  fbiScale: 'column',
  mixer: 'attention',
  ffn: 'swiglu',
};

export const DEFAULT_TTT: TttOptions = { backbone: 'mamba', miniBatch: 16, baseLr: 1.0, convKernel: 4 };
export const DEFAULT_PEER: PeerOptions = {
  numExperts: 1024 * 1024, heads: 8, topk: 16, dimKey: 128, queryNorm: 'batchnorm', sharedKeys: true,
  activation: 'gelu', score: 'softmax',
};

/** The attention head size (explicit headDim, else hiddenSize / numHeads). */
export function headDimOf(cfg: Pick<ModelConfig, 'hiddenSize' | 'numHeads' | 'headDim'>): number {
  return cfg.headDim ?? cfg.hiddenSize / cfg.numHeads;
}

export function ffnKindAt(cfg: ModelConfig, layer: number): FfnKind {
  return Array.isArray(cfg.ffn) ? cfg.ffn[layer] : cfg.ffn;
}

const CONFIG_KEYS = new Set([...Object.keys(DEFAULT_CONFIG), 'ttt', 'peer', 'bosTokenId', 'eosTokenId', 'headDim', 'qkNorm']);
const TTT_KEYS = Object.keys(DEFAULT_TTT);
const PEER_KEYS = Object.keys(DEFAULT_PEER);
/** Hugging Face names users reach for, with the frugal field each one means. */
const HF_NAMES: Record<string, string> = {
  vocab_size: 'vocabSize', hidden_size: 'hiddenSize', num_hidden_layers: 'numLayers', num_attention_heads: 'numHeads',
  num_key_value_heads: 'numKvHeads', intermediate_size: 'intermediateSize', max_position_embeddings: 'maxPositions',
  rms_norm_eps: 'rmsNormEps', rope_theta: 'ropeTheta', tie_word_embeddings: 'tieEmbeddings',
};

/**
 * Upper bounds that keep a config from asking for absurd work or memory before anything is
 * allocated (far above every preset; the 7B presets stay well inside).
 */
export const CONFIG_LIMITS = {
  vocabSize: 1 << 22, hiddenSize: 1 << 16, numLayers: 1024, numHeads: 1024, intermediateSize: 1 << 18, maxPositions: 1 << 20,
  miniBatch: 4096, convKernel: 64, numExperts: 1 << 24, peerHeads: 256, dimKey: 1 << 14,
  /** Estimated parameters (4 bytes each in f32). */
  parameters: 2e10,
};

const isPlain = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function checkKeys(obj: Record<string, unknown>, allowed: Iterable<string>, where: string): void {
  const ok = new Set(allowed);
  const unknown = Object.keys(obj).filter((k) => !ok.has(k));
  if (!unknown.length) return;
  const hints = unknown.map((k) => (HF_NAMES[k] && where === 'config' ? `${k} (frugal calls it ${HF_NAMES[k]})` : k));
  throw new Error(`${where}: unknown field${unknown.length > 1 ? 's' : ''} ${hints.join(', ')}; known fields: ${[...ok].join(', ')}`);
}

/** Rough parameter count of a config, to refuse impossible sizes before allocating. */
export function estimateParameters(c: ModelConfig): number {
  const h = c.hiddenSize;
  const embed = c.vocabSize * h * (c.tieEmbeddings ? 1 : 2);
  const kv = (h / c.numHeads) * c.numKvHeads;
  const mixer = 2 * h * h + 2 * h * kv;
  const ffns = Array.from({ length: c.numLayers }, (_, i) => ffnKindAt(c, i));
  const peer = c.peer ? c.peer.numExperts * 2 * h + c.peer.heads * c.peer.dimKey * h + 2 * Math.sqrt(c.peer.numExperts) * c.peer.dimKey : 0;
  return embed + ffns.reduce((sum, f) => sum + mixer + (f === 'peer' ? peer : 3 * h * c.intermediateSize), 0);
}

/** Fills defaults and checks every field; throws one line naming the bad field. */
export function resolveConfig(partial: Partial<ModelConfig>): ModelConfig {
  if (!isPlain(partial)) throw new Error(`config must be a JSON object of model fields, got ${Array.isArray(partial) ? 'an array' : JSON.stringify(partial)}`);
  checkKeys(partial, CONFIG_KEYS, 'config');
  const cfg: ModelConfig = { ...DEFAULT_CONFIG, ...partial };
  if (partial.numKvHeads === undefined) cfg.numKvHeads = cfg.numHeads;
  const posInt = (k: keyof ModelConfig) => {
    const v = cfg[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new Error(`config: '${k}' must be a positive integer, got ${JSON.stringify(v)}`);
  };
  (['vocabSize', 'hiddenSize', 'numLayers', 'numHeads', 'numKvHeads', 'intermediateSize', 'maxPositions'] as const).forEach(posInt);
  if (cfg.headDim === undefined && cfg.hiddenSize % cfg.numHeads) throw new Error(`config: hiddenSize ${cfg.hiddenSize} is not divisible by numHeads ${cfg.numHeads}`);
  if (cfg.headDim !== undefined) {
    posInt('headDim');
    if (cfg.mixer !== 'attention' && cfg.headDim * cfg.numHeads !== cfg.hiddenSize) throw new Error(`config: 'headDim' other than hiddenSize / numHeads needs the attention mixer`);
  }
  const atMost = (k: string, v: number, max: number) => {
    if (v > max) throw new Error(`config: '${k}' is ${v}, more than the ${max} this build accepts`);
  };
  for (const k of ['vocabSize', 'hiddenSize', 'numLayers', 'numHeads', 'intermediateSize', 'maxPositions'] as const) atMost(k, cfg[k], CONFIG_LIMITS[k]);
  if (typeof cfg.tieEmbeddings !== 'boolean') throw new Error(`config: 'tieEmbeddings' must be true or false, got ${JSON.stringify(cfg.tieEmbeddings)}`);
  if (typeof cfg.ropeTheta !== 'number' || !(cfg.ropeTheta > 0) || !Number.isFinite(cfg.ropeTheta)) throw new Error(`config: 'ropeTheta' must be a positive number, got ${JSON.stringify(cfg.ropeTheta)}`);
  for (const k of ['bosTokenId', 'eosTokenId'] as const) {
    const v = cfg[k];
    if (v !== undefined && v !== null && (!Number.isInteger(v) || v < 0 || v >= cfg.vocabSize)) throw new Error(`config: '${k}' must be a token id below vocabSize ${cfg.vocabSize}, got ${JSON.stringify(v)}`);
  }
  if (cfg.numHeads % cfg.numKvHeads) throw new Error(`config: numHeads ${cfg.numHeads} is not divisible by numKvHeads ${cfg.numKvHeads}`);
  if (headDimOf(cfg) % 2) throw new Error(`config: head dim ${headDimOf(cfg)} must be even for RoPE`);
  if (cfg.qkNorm !== undefined && typeof cfg.qkNorm !== 'boolean') throw new Error(`config: 'qkNorm' must be true or false, got ${JSON.stringify(cfg.qkNorm)}`);
  if (cfg.qkNorm && cfg.mixer !== 'attention') throw new Error(`config: 'qkNorm' needs the attention mixer`);
  const oneOf = <T>(k: keyof ModelConfig, v: T, allowed: T[]) => {
    if (!allowed.includes(v)) throw new Error(`config: '${k}' must be one of ${allowed.join(' | ')}, got ${JSON.stringify(v)}`);
  };
  oneOf('linear', cfg.linear, ['dense', 'fbi']);
  oneOf('fbiScale', cfg.fbiScale, ['column', 'row', 'single']);
  oneOf('mixer', cfg.mixer, ['attention', 'ttt-linear', 'ttt-mlp']);
  oneOf('ropeStyle', cfg.ropeStyle, ['half', 'interleaved']);
  const ffns = Array.isArray(cfg.ffn) ? cfg.ffn : [cfg.ffn];
  if (Array.isArray(cfg.ffn) && cfg.ffn.length !== cfg.numLayers) {
    throw new Error(`config: 'ffn' lists ${cfg.ffn.length} layers but numLayers is ${cfg.numLayers}`);
  }
  for (const f of ffns) oneOf('ffn', f, ['swiglu', 'peer']);
  for (const [k, keys] of [['ttt', TTT_KEYS], ['peer', PEER_KEYS]] as const) {
    const v = cfg[k];
    if (v === undefined) continue;
    if (!isPlain(v)) throw new Error(`config: '${k}' must be an object, got ${JSON.stringify(v)}`);
    checkKeys(v, keys, `config.${k}`);
  }
  if (cfg.mixer !== 'attention') {
    cfg.ttt = { ...DEFAULT_TTT, ...(cfg.mixer === 'ttt-mlp' ? { baseLr: 0.1 } : {}), ...cfg.ttt };
    const t = cfg.ttt;
    oneOf('ttt.backbone' as keyof ModelConfig, t.backbone, ['transformer', 'mamba']);
    if (!Number.isInteger(t.miniBatch) || t.miniBatch < 1 || t.miniBatch > CONFIG_LIMITS.miniBatch) {
      throw new Error(`config: 'ttt.miniBatch' must be an integer in 1..${CONFIG_LIMITS.miniBatch}, got ${JSON.stringify(t.miniBatch)}`);
    }
    if (!Number.isInteger(t.convKernel) || t.convKernel < 1 || t.convKernel > CONFIG_LIMITS.convKernel) {
      throw new Error(`config: 'ttt.convKernel' must be an integer in 1..${CONFIG_LIMITS.convKernel}, got ${JSON.stringify(t.convKernel)}`);
    }
    if (typeof t.baseLr !== 'number' || !Number.isFinite(t.baseLr) || t.baseLr <= 0) throw new Error(`config: 'ttt.baseLr' must be a positive number, got ${JSON.stringify(t.baseLr)}`);
  }
  if (ffns.includes('peer')) {
    cfg.peer = { ...DEFAULT_PEER, ...cfg.peer };
    const p = cfg.peer;
    for (const [k, max] of [['numExperts', CONFIG_LIMITS.numExperts], ['heads', CONFIG_LIMITS.peerHeads], ['topk', CONFIG_LIMITS.numExperts], ['dimKey', CONFIG_LIMITS.dimKey]] as const) {
      if (!Number.isInteger(p[k]) || p[k] < 1 || p[k] > max) throw new Error(`config: 'peer.${k}' must be an integer in 1..${max}, got ${JSON.stringify(p[k])}`);
    }
    const n = Math.round(Math.sqrt(cfg.peer.numExperts));
    if (n * n !== cfg.peer.numExperts) throw new Error(`config: peer.numExperts ${cfg.peer.numExperts} must be a perfect square`);
    if (cfg.peer.topk > n) throw new Error(`config: peer.topk ${cfg.peer.topk} exceeds sqrt(numExperts) ${n}`);
  }
  if (!(cfg.rmsNormEps > 0)) throw new Error(`config: 'rmsNormEps' must be > 0`);
  const params = estimateParameters(cfg);
  if (params > CONFIG_LIMITS.parameters) {
    throw new Error(`config: the model would have about ${params.toExponential(2)} parameters (${(params * 4 / 2 ** 30).toFixed(0)} GiB in f32), more than the ${CONFIG_LIMITS.parameters.toExponential(0)} this build accepts; check the sizes`);
  }
  return cfg;
}
