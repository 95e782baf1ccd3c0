// Basic layers: Linear (HF [out, in] layout), Embedding, RMSNorm, LayerNorm, SwiGLU.
import * as op from '../ops/index.ts';
import { Rng } from '../tensor/rng.ts';
import { type Tensor, full, randn } from '../tensor/tensor.ts';
import type { DeviceName } from '../backend/types.ts';
import { Module } from './module.ts';

export interface InitOpts {
  rng: Rng;
  std?: number;
  device?: DeviceName;
}

/** Anything that maps [..., in] -> [..., out] (dense or binarized). */
export interface LinearLike extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;
  forward(x: Tensor): Tensor;
}

/** Flattens leading dims so a [..., in] input is one GEMM (and its weight gradient one GEMM too). */
export function applyMatrix(x: Tensor, w: Tensor, inF: number, outF: number): Tensor {
  if (x.shape.at(-1) !== inF) throw new Error(`linear: input [${x.shape}] does not end in ${inF} features`);
  const lead = x.shape.slice(0, -1);
  const y = op.matmul(op.reshape(x, [-1, inF]), w, { transB: true });
  return op.reshape(y, [...lead, outF]);
}

export class Linear extends Module implements LinearLike {
  constructor(readonly inFeatures: number, readonly outFeatures: number, init: InitOpts, bias = false) {
    super();
    this.param('weight', randn([outFeatures, inFeatures], init.rng, init.std ?? 0.02, { device: init.device }));
    if (bias) this.param('bias', full([outFeatures], 0, { device: init.device }));
  }
  forward(x: Tensor): Tensor {
    const y = applyMatrix(x, this.get('weight'), this.inFeatures, this.outFeatures);
    const b = this.getOptional('bias');
    return b ? op.add(y, b) : y;
  }

  /**
   * The outputs of several bias-free Linears of one shape on the same input, as one batched product
   * (their weights stacked, x shared): one GEMM per direction instead of one per layer, and the input
   * gradient summed by one reduction. Each output equals ls[i].forward(x). null when the layers are
   * not all plain bias-free Linears of equal shape.
   */
  static stacked(x: Tensor, ls: LinearLike[]): Tensor[] | null {
    const lin = ls.filter((l): l is Linear => l.constructor === Linear);
    const { inFeatures: inF, outFeatures: outF } = ls[0];
    if (ls.length < 2 || lin.length !== ls.length
      || !lin.every((l) => !l.getOptional('bias') && l.inFeatures === inF && l.outFeatures === outF)) return null;
    if (x.shape.at(-1) !== inF) throw new Error(`linear: input [${x.shape}] does not end in ${inF} features`);
    const lead = x.shape.slice(0, -1);
    const w = op.reshape(op.concat(lin.map((l) => l.get('weight')), 0), [ls.length, outF, inF]);
    const y = op.matmul(op.reshape(x, [-1, inF]), w, { transB: true });
    return ls.map((_, i) => op.reshape(op.slice(y, 0, i, i + 1), [...lead, outF]));
  }
}

export class Embedding extends Module {
  /** sparseUpdates keeps the gradient row-sparse for a lazy optimizer (else it is densified). */
  constructor(readonly numEmbeddings: number, readonly dim: number, init: InitOpts, sparseUpdates = false) {
    super();
    const w = this.param('weight', randn([numEmbeddings, dim], init.rng, init.std ?? 0.02, { device: init.device }));
    w.sparseGrad = sparseUpdates;
  }
  forward(ids: Tensor): Tensor {
    return op.embedding(this.get('weight'), ids);
  }
  get weight(): Tensor {
    return this.get('weight');
  }
}

export class RMSNorm extends Module {
  constructor(readonly dim: number, readonly eps: number, device?: DeviceName) {
    super();
    this.param('weight', full([dim], 1, { device }));
  }
  forward(x: Tensor): Tensor {
    return op.rmsNorm(x, this.get('weight'), this.eps);
  }
}

export class LayerNorm extends Module {
  constructor(readonly dim: number, readonly eps: number, device?: DeviceName) {
    super();
    this.param('weight', full([dim], 1, { device }));
    this.param('bias', full([dim], 0, { device }));
  }
  forward(x: Tensor): Tensor {
    return op.layerNorm(x, this.get('weight'), this.get('bias'), this.eps);
  }
}

/** LLaMA MLP: down(silu(gate(x)) * up(x)), HF names gate_proj / up_proj / down_proj. */
export class SwiGLU extends Module {
  readonly gate: LinearLike;
  readonly up: LinearLike;
  readonly down: LinearLike;
  constructor(dim: number, hidden: number, makeLinear: (i: number, o: number) => LinearLike) {
    super();
    this.gate = this.child('gate_proj', makeLinear(dim, hidden));
    this.up = this.child('up_proj', makeLinear(dim, hidden));
    this.down = this.child('down_proj', makeLinear(hidden, dim));
  }
  forward(x: Tensor): Tensor {
    return this.down.forward(op.swiglu(this.gate.forward(x), this.up.forward(x)));
  }
}
