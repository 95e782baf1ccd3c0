// Plug-in points of the decoder: each layer family registers how to build itself from the config.
// A block is: [pre] -> h + mixer(norm(h)) -> h + ffn(ffnNorm(h)); names follow the reference layouts.
import type { LinearLike, InitOpts } from '../nn/layers.ts';
import type { Module } from '../nn/module.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { FfnKind, LinearKind, MixerKind, ModelConfig } from './config.ts';

export type MakeLinear = (inF: number, outF: number) => LinearLike;

/** Per-layer decoding state (KV cache, TTT state) owned by the layer that created it. */
export type LayerState = unknown;

export interface SequenceMixer extends Module {
  forward(x: Tensor, state?: LayerState): Tensor;
  createState(batch: number, capacity: number): LayerState;
  /** Optional: rows of x [N, L, C] continue their own batch-1 states in one call (batched decoding). */
  forwardRows?(x: Tensor, states: LayerState[]): Tensor;
}

export interface MixerPlugin {
  /** State-dict child names: the mixer's norm, the mixer, the FFN's norm. */
  names: { norm: string; mixer: string; ffnNorm: string };
  normEps(cfg: ModelConfig): number;
  create(cfg: ModelConfig, layer: number, makeLinear: MakeLinear, init: InitOpts): SequenceMixer;
  /** Optional residual pre-block (TTT Mamba backbone's conv), child name and factory. */
  pre?: { name: string; create(cfg: ModelConfig, init: InitOpts): SequenceMixer } | ((cfg: ModelConfig) => undefined);
}

export interface FeedForward extends Module {
  forward(x: Tensor): Tensor;
}
export interface FfnPlugin {
  create(cfg: ModelConfig, layer: number, makeLinear: MakeLinear, init: InitOpts): FeedForward;
}
export type LinearPlugin = (cfg: ModelConfig, inF: number, outF: number, init: InitOpts) => LinearLike;

const mixers = new Map<MixerKind, MixerPlugin>();
const ffns = new Map<FfnKind, FfnPlugin>();
const linears = new Map<LinearKind, LinearPlugin>();

export const registerMixer = (k: MixerKind, p: MixerPlugin) => void mixers.set(k, p);
export const registerFfn = (k: FfnKind, p: FfnPlugin) => void ffns.set(k, p);
export const registerLinear = (k: LinearKind, p: LinearPlugin) => void linears.set(k, p);

function lookup<K, V>(m: Map<K, V>, k: K, what: string): V {
  const v = m.get(k);
  if (!v) throw new Error(`${what} '${String(k)}' is not available in this build`);
  return v;
}
export const mixerPlugin = (k: MixerKind) => lookup(mixers, k, 'mixer');
export const ffnPlugin = (k: FfnKind) => lookup(ffns, k, 'ffn');
export const linearPlugin = (k: LinearKind) => lookup(linears, k, 'linear kind');
