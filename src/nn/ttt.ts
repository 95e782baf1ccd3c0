// TTT-Linear / TTT-MLP sequence layer (ttt.py TTTLinear / TTTMLP) and the Mamba-backbone pieces:
// the depthwise causal convs (conv_q / conv_k and the pre-block conv) with their decoding states.
// Parameter names follow ttt.py's state dict so its checkpoints load unchanged.
import * as op from '../ops/index.ts';
import { tttScan, type TttKind, TttScanState } from '../ops/ttt.ts';
import { fromArray, full, rand, randn, type Tensor, zeros } from '../tensor/tensor.ts';
import { type InitOpts, LayerNorm, type LinearLike, RMSNorm } from './layers.ts';
import { Module } from './module.ts';

export interface TttLayerConfig {
  hiddenSize: number;
  numHeads: number;
  kind: TttKind;
  /** Mamba backbone: shared Q/K projection followed by two causal convs, and an output gate. */
  backbone: 'transformer' | 'mamba';
  miniBatch: number;
  baseLr: number;
  convKernel: number;
  ropeTheta: number;
}

/** Last K-1 inputs of a causal conv, so decoding continues a sequence exactly. */
export class ConvState {
  prev: Tensor | null = null;
}

/** nn.Conv1d(C, C, K, groups=C, padding=K-1)[..., :L] with the weight kept in PyTorch's [C, 1, K] layout. */
class CausalDepthwiseConv extends Module {
  constructor(readonly channels: number, readonly kernel: number, init: InitOpts) {
    super();
    // PyTorch's default Conv1d init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = K for depthwise.
    const bound = 1 / Math.sqrt(kernel);
    this.param('weight', rand([channels, 1, kernel], init.rng, -bound, bound, { device: init.device }));
    this.param('bias', rand([channels], init.rng, -bound, bound, { device: init.device }));
  }
  /** x [B, L, C]. */
  forward(x: Tensor, state?: ConvState): Tensor {
    const w = op.reshape(this.get('weight'), [this.channels, this.kernel]);
    const b = this.get('bias');
    if (!state) return op.causalConv1d(x, w, b);
    const [batch, l, c] = x.shape;
    const old = state.prev;
    const prev = old ?? zeros([batch, this.kernel - 1, c], { device: x.device });
    const xe = op.concat([prev, x], 1);
    const n = xe.shape[1];
    state.prev = op.slice(xe, 1, n - (this.kernel - 1), n);
    // The state owns its tail: the replaced one (kept alive past earlier scopes) is released here.
    old?.dispose();
    return op.slice(op.causalConv1d(xe, w, b), 1, this.kernel - 1, n);
  }
}

/** ttt.py Conv: the Mamba backbone's residual pre-block conv(norm(h)); the block adds the residual. */
export class TttPreConv extends Module {
  readonly norm: RMSNorm;
  readonly conv: CausalDepthwiseConv;
  constructor(hidden: number, kernel: number, eps: number, init: InitOpts) {
    super();
    this.norm = this.child('norm', new RMSNorm(hidden, eps, init.device));
    this.conv = this.child('conv', new CausalDepthwiseConv(hidden, kernel, init));
  }
  forward(h: Tensor, state?: ConvState): Tensor {
    return this.conv.forward(this.norm.forward(h), state);
  }
  createState(): ConvState {
    return new ConvState();
  }
}

/** Per-layer decoding state: inner weights and gradient sums, conv tails; size independent of context. */
export class TttLayerState {
  readonly convQ = new ConvState();
  readonly convK = new ConvState();
  constructor(readonly scan: TttScanState) {}
  get position(): number {
    return this.scan.position;
  }
}

export class TttLayer extends Module {
  readonly headDim: number;
  readonly q: LinearLike;
  readonly k?: LinearLike;
  readonly v: LinearLike;
  readonly o: LinearLike;
  readonly g?: LinearLike;
  readonly convQ?: CausalDepthwiseConv;
  readonly convK?: CausalDepthwiseConv;
  readonly postNorm: LayerNorm;
  constructor(readonly cfg: TttLayerConfig, makeLinear: (i: number, o: number) => LinearLike, init: InitOpts) {
    super();
    const { hiddenSize: c, numHeads: nh, miniBatch: k } = cfg;
    if (c % nh) throw new Error(`ttt: hiddenSize ${c} is not divisible by numHeads ${nh}`);
    const f = (this.headDim = c / nh);
    if (f % 2) throw new Error(`ttt: head dim ${f} must be even for RoPE`);
    const mamba = cfg.backbone === 'mamba';
    const dev = { device: init.device };
    this.q = this.child('q_proj', makeLinear(c, c));
    if (!mamba) this.k = this.child('k_proj', makeLinear(c, c));
    this.v = this.child('v_proj', makeLinear(c, c));
    this.o = this.child('o_proj', makeLinear(c, c));
    if (mamba) {
      this.convQ = this.child('conv_q', new CausalDepthwiseConv(c, cfg.convKernel, init));
      this.convK = this.child('conv_k', new CausalDepthwiseConv(c, cfg.convKernel, init));
    }
    this.buffer('token_idx', fromArray(Float32Array.from({ length: k }, (_, i) => 1 / (i + 1)), [k], init.device));
    this.param('learnable_token_idx', zeros([k], dev));
    this.param('learnable_ttt_lr_weight', randn([nh, 1, c], init.rng, 0.02, dev));
    this.param('learnable_ttt_lr_bias', zeros([nh, 1], dev));
    this.param('ttt_norm_weight', full([nh, f], 1, dev));
    this.param('ttt_norm_bias', zeros([nh, f], dev));
    if (mamba) this.g = this.child('g_proj', makeLinear(c, c));
    this.postNorm = this.child('post_norm', new LayerNorm(c, 1e-6, init.device));
    const h = cfg.kind === 'mlp' ? 4 * f : f;
    this.param('W1', randn([nh, f, h], init.rng, 0.02, dev));
    this.param('b1', zeros([nh, 1, h], dev));
    if (cfg.kind === 'mlp') {
      this.param('W2', randn([nh, h, f], init.rng, 0.02, dev));
      this.param('b2', zeros([nh, 1, f], dev));
    }
  }

  /** x: normed hidden states [B, L, C]. */
  forward(x: Tensor, state?: TttLayerState): Tensor {
    if (x.ndim !== 3 || x.shape[2] !== this.cfg.hiddenSize) {
      throw new Error(`ttt: input must be [batch, length, ${this.cfg.hiddenSize}], got [${x.shape}]`);
    }
    const [b, l, c] = x.shape;
    const { numHeads: nh, miniBatch: k } = this.cfg;
    const f = this.headDim;
    const start = state?.position ?? 0;
    let xq: Tensor, xk: Tensor;
    if (this.convQ) {
      const xqk = this.q.forward(x);
      xq = this.convQ.forward(xqk, state?.convQ);
      xk = this.convK!.forward(xqk, state?.convK);
    } else {
      xq = this.q.forward(x);
      xk = this.k!.forward(x);
    }
    // RoPE at the position inside the mini-batch; ttt.py's permute_qk / rotate_half / undo_permute_qk
    // amounts to rotating interleaved pairs (2i, 2i+1) of the original layout.
    const pos = fromArray(Int32Array.from({ length: l }, (_, i) => (start + i) % k), [l], x.device);
    const rope = { theta: this.cfg.ropeTheta, style: 'interleaved' } as const;
    const heads = (t: Tensor) => op.permute(t, [0, 2, 1, 3]);
    const XQ = heads(op.rope(op.reshape(xq, [b, l, nh, f]), pos, rope));
    const XK = heads(op.rope(op.reshape(xk, [b, l, nh, f]), pos, rope));
    const XV = heads(op.reshape(this.v.forward(x), [b, l, nh, f]));
    // Inner learning rate per token and head: base_lr * sigmoid(theta_lr . x + b) / f.
    const lrW = op.reshape(this.get('learnable_ttt_lr_weight'), [nh, c]);
    const z = op.add(op.matmul(op.reshape(x, [b * l, c]), lrW, { transB: true }), op.reshape(this.get('learnable_ttt_lr_bias'), [nh]));
    const lr = op.permute(op.reshape(op.scale(op.sigmoid(z), this.cfg.baseLr / f), [b, l, nh]), [0, 2, 1]);
    const tokenEta = op.maximum(op.add(this.get('token_idx'), this.get('learnable_token_idx')), 0);
    const inner = this.cfg.kind === 'mlp'
      ? { w1: this.get('W1'), b1: this.get('b1'), w2: this.get('W2'), b2: this.get('b2') }
      : { w1: this.get('W1'), b1: this.get('b1') };
    let y = tttScan(this.cfg.kind, XQ, XK, XV, lr, tokenEta, inner, this.get('ttt_norm_weight'), this.get('ttt_norm_bias'), {
      miniBatch: k, state: state?.scan,
    });
    y = this.postNorm.forward(y);
    if (this.g) y = op.mul(op.gelu(this.g.forward(x), 'tanh'), y);
    return this.o.forward(y);
  }

  /** A fresh decoding state on the weights' device. */
  createState(batch: number): TttLayerState {
    const device = this.get('W1').device;
    return new TttLayerState(new TttScanState(this.cfg.kind, batch, this.cfg.numHeads, this.headDim, device));
  }
}
