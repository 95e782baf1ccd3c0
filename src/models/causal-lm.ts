// CausalLM: embedding -> blocks -> final RMSNorm -> LM head (tied or untied), built from a config.
import * as op from '../ops/index.ts';
import { Embedding, type InitOpts, Linear, RMSNorm } from '../nn/layers.ts';
import { Module } from '../nn/module.ts';
import { Rng } from '../tensor/rng.ts';
import { type Tensor, toDevice } from '../tensor/tensor.ts';
import type { DeviceName } from '../backend/types.ts';
import { ffnKindAt, type ModelConfig, resolveConfig } from './config.ts';
import { type FeedForward, ffnPlugin, type LayerState, type LinearPlugin, linearPlugin, mixerPlugin, type SequenceMixer } from './registry.ts';
import type { LinearLike } from '../nn/layers.ts';

/** A token embedding: ids [B, L] -> [B, L, C]; `project` maps hidden states to logits when it is tied to the head. */
export interface TokenEmbedding extends Module {
  forward(ids: Tensor): Tensor;
  project?(h: Tensor): Tensor;
}

class Block extends Module {
  readonly pre?: SequenceMixer;
  readonly norm: RMSNorm;
  readonly mixer: SequenceMixer;
  readonly ffnNorm: RMSNorm;
  readonly ffn: FeedForward;
  constructor(cfg: ModelConfig, layer: number, init: InitOpts, linear?: LinearPlugin) {
    super();
    const mp = mixerPlugin(cfg.mixer);
    const makeLinear = (i: number, o: number) => (linear ?? linearPlugin(cfg.linear))(cfg, i, o, init);
    const eps = mp.normEps(cfg);
    const pre = typeof mp.pre === 'object' ? mp.pre : undefined;
    if (pre && cfg.ttt?.backbone === 'mamba') this.pre = this.child(pre.name, pre.create(cfg, init));
    this.norm = this.child(mp.names.norm, new RMSNorm(cfg.hiddenSize, eps, init.device));
    this.mixer = this.child(mp.names.mixer, mp.create(cfg, layer, makeLinear, init));
    this.ffnNorm = this.child(mp.names.ffnNorm, new RMSNorm(cfg.hiddenSize, eps, init.device));
    this.ffn = this.child('mlp', ffnPlugin(ffnKindAt(cfg, layer)).create(cfg, layer, makeLinear, init));
  }
  forward(h: Tensor, state?: { pre?: LayerState; mixer?: LayerState }): Tensor {
    if (this.pre) h = op.add(h, this.pre.forward(h, state?.pre));
    h = op.add(h, this.mixer.forward(this.norm.forward(h), state?.mixer));
    return op.add(h, this.ffn.forward(this.ffnNorm.forward(h)));
  }
  /** Rows of h [N, L, C] continue their own batch-1 states; token-wise parts run on all rows at once. */
  forwardRows(h: Tensor, states: { pre?: LayerState; mixer?: LayerState }[]): Tensor {
    const perRow = (x: Tensor, f: (row: Tensor, i: number) => Tensor) =>
      states.length === 1 ? f(x, 0) : op.concat(states.map((_, i) => f(op.slice(x, 0, i, i + 1), i)), 0);
    if (this.pre) h = op.add(h, perRow(h, (r, i) => this.pre!.forward(r, states[i].pre)));
    const x = this.norm.forward(h);
    const mixed = this.mixer.forwardRows
      ? this.mixer.forwardRows(x, states.map((s) => s.mixer))
      : perRow(x, (r, i) => this.mixer.forward(r, states[i].mixer));
    h = op.add(h, mixed);
    return op.add(h, this.ffn.forward(this.ffnNorm.forward(h)));
  }
  createState(batch: number, capacity: number) {
    return { pre: this.pre?.createState(batch, capacity), mixer: this.mixer.createState(batch, capacity) };
  }
}

/** Decoding state for all layers; its size is set by the mixers (KV cache grows, TTT state is fixed). */
export interface ModelState {
  layers: { pre?: LayerState; mixer?: LayerState }[];
  position: number;
}

class Backbone extends Module {
  readonly embed: TokenEmbedding;
  readonly layers: Block[] = [];
  readonly norm: RMSNorm;
  constructor(cfg: ModelConfig, init: InitOpts, opts: BuildOpts) {
    super();
    this.embed = this.child('embed_tokens', opts.embedding ? opts.embedding(cfg.vocabSize, cfg.hiddenSize) : new Embedding(cfg.vocabSize, cfg.hiddenSize, init));
    for (let i = 0; i < cfg.numLayers; i++) this.layers.push(this.child(`layers.${i}`, new Block(cfg, i, init, opts.linear)));
    this.norm = this.child('norm', new RMSNorm(cfg.hiddenSize, mixerPlugin(cfg.mixer).normEps(cfg), init.device));
  }
}

export interface BuildOpts {
  seed?: number;
  device?: DeviceName;
  /**
   * Serving models built from stored weights of other kinds (e.g. GGUF blocks): factories for every
   * block linear, the token embedding and the untied LM head, in place of the trainable layers.
   */
  linear?: LinearPlugin;
  embedding?: (vocab: number, dim: number) => TokenEmbedding;
  head?: (inF: number, outF: number) => LinearLike;
}

export class CausalLM extends Module {
  readonly config: ModelConfig;
  readonly model: Backbone;
  readonly lmHead?: LinearLike;
  device: DeviceName;
  constructor(config: Partial<ModelConfig>, opts: BuildOpts = {}) {
    super();
    this.config = resolveConfig(config);
    this.device = opts.device ?? 'cpu';
    const init: InitOpts = { rng: new Rng(opts.seed ?? 0), std: 0.02, device: this.device };
    this.model = this.child('model', new Backbone(this.config, init, opts));
    const { hiddenSize: c, vocabSize: v } = this.config;
    if (!this.config.tieEmbeddings) this.lmHead = this.child('lm_head', opts.head ? opts.head(c, v) : new Linear(c, v, init));
  }

  /** Final hidden states [B, L, C] for ids [B, L]; with state, continues from its position. */
  hidden(ids: Tensor, state?: ModelState): Tensor {
    if (ids.ndim !== 2) throw new Error(`model input must be token ids [batch, length], got [${ids.shape}]`);
    let h = this.model.embed.forward(ids);
    this.model.layers.forEach((layer, i) => {
      h = layer.forward(h, state?.layers[i]);
    });
    if (state) state.position += ids.shape[1];
    return this.model.norm.forward(h);
  }

  /**
   * Logits [N, L, V] of N independent sequences decoded together: row i of ids [N, L] continues
   * states[i] (each created with batch 1), so sequences at different positions share one forward
   * (continuous batching). Embedding, norms, FFNs, projections and the LM head see all rows at once.
   */
  forwardRows(ids: Tensor, states: ModelState[]): Tensor {
    if (ids.ndim !== 2 || ids.shape[0] !== states.length) throw new Error(`forwardRows: ids [${ids.shape}] need one state per row, got ${states.length}`);
    let h = this.model.embed.forward(ids);
    this.model.layers.forEach((layer, i) => {
      h = layer.forwardRows(h, states.map((s) => s.layers[i]));
    });
    for (const s of states) s.position += ids.shape[1];
    return this.logitsFromHidden(this.model.norm.forward(h));
  }

  logitsFromHidden(h: Tensor): Tensor {
    if (this.lmHead) return this.lmHead.forward(h);
    const embed = this.model.embed;
    if (embed.project) return embed.project(h);
    if (!(embed instanceof Embedding)) throw new Error('tied LM head: the embedding has no projection to the vocabulary');
    const c = this.config.hiddenSize;
    const lead = h.shape.slice(0, -1);
    return op.reshape(op.matmul(op.reshape(h, [-1, c]), embed.weight, { transB: true }), [...lead, this.config.vocabSize]);
  }

  /** Logits [B, L, V]. */
  forward(ids: Tensor, state?: ModelState): Tensor {
    return this.logitsFromHidden(this.hidden(ids, state));
  }

  /** Mean next-token loss of ids [B, L+1] style: inputs and targets given separately. */
  loss(inputs: Tensor, targets: Tensor): Tensor {
    return op.crossEntropy(this.forward(inputs), targets);
  }

  /** Copies every parameter and buffer to `device` (keeping which ones take gradients); ids go there too. */
  async moveTo(device: DeviceName): Promise<this> {
    if (device === this.device) return this;
    const frozen = new Set(this.namedParameters().filter(([, t]) => !t.requiresGrad).map(([n]) => n));
    for (const [name, t] of [...this.namedParameters(), ...this.namedBuffers()]) this.setTensor(name, await toDevice(t, device));
    for (const [name, t] of this.namedParameters()) if (frozen.has(name)) t.requiresGrad = false;
    this.device = device;
    return this;
  }

  createState(batch = 1, capacity = this.config.maxPositions): ModelState {
    return { layers: this.model.layers.map((l) => l.createState(batch, capacity)), position: 0 };
  }
}
