// FBI-Linear layer (FBI-LLM `BinaryLinearWscales`): latent f32 weight [out, in] binarized in the
// forward pass, learnable scale `wscale` (alpha) and shift `wbias` (beta); plus the paper's training
// metrics (flip-flop ratio) and storage accounting (bits per parameter).
import * as op from '../ops/index.ts';
import { type FbiScalePattern, fbiLinear, fbiScaleShape } from '../ops/fbi.ts';
import { keep, tidy } from '../tensor/scope.ts';
import { fromArray, randn, type Tensor } from '../tensor/tensor.ts';
import type { InitOpts, LinearLike } from './layers.ts';
import { Module } from './module.ts';

export type { FbiScalePattern } from '../ops/fbi.ts';

/**
 * "xnor" initialization from a latent weight [out, in] (row-major): beta = mean of W over the axes
 * the scale is shared along, alpha = mean |W - beta| over the same axes.
 */
export function xnorInit(w: Float32Array, outF: number, inF: number, pattern: FbiScalePattern): { alpha: Float32Array; beta: Float32Array } {
  const [sr, sc] = fbiScaleShape(pattern, outF, inF);
  const at = (i: number, j: number) => (sr === 1 ? 0 : i) * sc + (sc === 1 ? 0 : j);
  const count = (outF * inF) / (sr * sc);
  const sum = new Float64Array(sr * sc), dev = new Float64Array(sr * sc);
  for (let i = 0; i < outF; i++) for (let j = 0; j < inF; j++) sum[at(i, j)] += w[i * inF + j];
  const beta = Float32Array.from(sum, (v) => v / count);
  for (let i = 0; i < outF; i++) for (let j = 0; j < inF; j++) dev[at(i, j)] += Math.abs(w[i * inF + j] - beta[at(i, j)]);
  const alpha = Float32Array.from(dev, (v) => v / count);
  return { alpha, beta };
}

export interface FbiLinearOpts extends InitOpts {
  pattern?: FbiScalePattern;
}

export class FbiLinear extends Module implements LinearLike {
  readonly pattern: FbiScalePattern;
  constructor(readonly inFeatures: number, readonly outFeatures: number, init: FbiLinearOpts) {
    super();
    this.pattern = init.pattern ?? 'column';
    // The latent weight is drawn on the host so the xnor init can read it, then moved to the device.
    const host = randn([outFeatures, inFeatures], init.rng, init.std ?? 0.02).dataSync() as Float32Array;
    const shape = fbiScaleShape(this.pattern, outFeatures, inFeatures);
    const { alpha, beta } = xnorInit(host, outFeatures, inFeatures, this.pattern);
    this.param('weight', fromArray(host, [outFeatures, inFeatures], init.device));
    this.param('wscale', fromArray(alpha, shape, init.device));
    this.param('wbias', fromArray(beta, shape, init.device));
  }
  forward(x: Tensor): Tensor {
    if (x.shape.at(-1) !== this.inFeatures) throw new Error(`fbi linear: input [${x.shape}] does not end in ${this.inFeatures} features`);
    const lead = x.shape.slice(0, -1);
    const y = fbiLinear(op.reshape(x, [-1, this.inFeatures]), this.get('weight'), this.get('wscale'), this.get('wbias'));
    return op.reshape(y, [...lead, this.outFeatures]);
  }
  get weight(): Tensor { return this.get('weight'); }
  get wscale(): Tensor { return this.get('wscale'); }
  get wbias(): Tensor { return this.get('wbias'); }
}

export interface BinarizedParams {
  weight: Tensor;
  wscale: Tensor;
  wbias: Tensor;
}

/**
 * The binarized linears of a model by their dotted name (the prefix of `.weight`), found from the
 * parameter names: a `.weight` with a sibling `.wscale` and `.wbias` is a latent binarized weight.
 */
export function binarizedLinears(root: Module): [string, BinarizedParams][] {
  const params = new Map(root.namedParameters());
  const out: [string, BinarizedParams][] = [];
  for (const [n, t] of params) {
    if (!n.endsWith('.wscale')) continue;
    const base = n.slice(0, -'.wscale'.length);
    const weight = params.get(`${base}.weight`), wbias = params.get(`${base}.wbias`);
    if (weight && wbias) out.push([base, { weight, wscale: t, wbias }]);
  }
  return out;
}

/**
 * Flip-flop ratio (FBI-LLM `analysis.py`): the fraction of latent binarized weights whose sign
 * (0 counted as -1) changed since the previous call. The first call records the signs and returns 0.
 * The signs stay on the weights' device as 0/1 tensors; one call reads back one count per linear, so
 * a GPU training step does not copy its latent weights to the host.
 */
export class FlipFlopTracker {
  private prev = new Map<string, Tensor>();
  constructor(private readonly root: Module) {}
  async step(): Promise<number> {
    let total = 0;
    const counts = tidy(() => {
      const parts: Tensor[] = [];
      for (const [name, lin] of binarizedLinears(this.root)) {
        const signs = keep(op.greater(lin.weight, 0));
        const before = this.prev.get(name);
        if (before) {
          parts.push(op.reshape(op.sum(op.abs(op.sub(signs, before))), [1]));
          total += signs.size;
          before.dispose();
        }
        this.prev.set(name, signs);
      }
      return parts.length ? op.concat(parts, 0) : undefined;
    });
    if (!counts) return 0;
    // Each count is a sum of 0/1 terms; they are added in float64 here.
    let flipped = 0;
    for (const c of await counts.data()) flipped += c;
    counts.dispose();
    return flipped / total;
  }
}

export interface BitsPerParam {
  /** Binarized weights (1 bit each). */
  binarizedParams: number;
  /** Full-precision parameters: scales, shifts, embedding, LM head, norms (32 bits each as trained). */
  fpParams: number;
  /** FP parameters inside the FBI linears (wscale, wbias). */
  linearFpParams: number;
  /** Average over the whole model: (1 * binarized + 32 * fp) / all. */
  model: number;
  /** Average over the binarized linears: (1 * binarized + 32 * their scales) / their params (the paper's ~1.01). */
  linear: number;
}

/** Average bits per parameter of a model, with 1 bit per binarized weight and 32 per fp parameter. */
export function bitsPerParam(root: Module): BitsPerParam {
  const lins = binarizedLinears(root);
  const binNames = new Set(lins.map(([n]) => `${n}.weight`));
  let binarized = 0, fp = 0, linFp = 0;
  for (const [n, t] of root.namedParameters()) {
    if (binNames.has(n)) binarized += t.size;
    else fp += t.size;
  }
  for (const [, l] of lins) linFp += l.wscale.size + l.wbias.size;
  return bitsFromCounts(binarized, linFp, fp - linFp);
}

/** Bits per parameter from counts: binarized weights, fp params inside the linears, other fp params. */
export function bitsFromCounts(binarized: number, linearFp: number, otherFp: number): BitsPerParam {
  const fp = linearFp + otherFp;
  const all = binarized + fp;
  return {
    binarizedParams: binarized,
    fpParams: fp,
    linearFpParams: linearFp,
    model: all ? (binarized + 32 * fp) / all : 0,
    linear: binarized ? (binarized + 32 * linearFp) / (binarized + linearFp) : 0,
  };
}
