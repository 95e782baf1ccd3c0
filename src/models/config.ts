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

/** Fills defaults and checks every field; throws one line naming the bad field. */
export function resolveConfig(partial: Partial<ModelConfig>): ModelConfig {
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
  if (cfg.mixer !== 'attention') cfg.ttt = { ...DEFAULT_TTT, ...(cfg.mixer === 'ttt-mlp' ? { baseLr: 0.1 } : {}), ...cfg.ttt };
  if (ffns.includes('peer')) {
    cfg.peer = { ...DEFAULT_PEER, ...cfg.peer };
    const n = Math.round(Math.sqrt(cfg.peer.numExperts));
    if (n * n !== cfg.peer.numExperts) throw new Error(`config: peer.numExperts ${cfg.peer.numExperts} must be a perfect square`);
    if (cfg.peer.topk > n) throw new Error(`config: peer.topk ${cfg.peer.topk} exceeds sqrt(numExperts) ${n}`);
  }
  if (!(cfg.rmsNormEps > 0)) throw new Error(`config: 'rmsNormEps' must be > 0`);
  return cfg;
}
