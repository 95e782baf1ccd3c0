// FBI-Linear (FBI-LLM `BinaryLinearWscales`) as one fused op with a hand-written backward:
//   w = alpha * sign(W) + beta   (alpha, beta broadcast from [1,in] "column", [out,1] "row" or [1,1] "single")
//   y = x @ w^T
// Straight-through estimator (identity, no clipping): the gradient that reaches sign(W) inside
// alpha*sign(W) is passed to W unchanged, so dW = dw * alpha with dw = dL/dw.
// Everything runs on the generic kernels (sign, broadcast multiply/add, reduce, matmul), so the op
// works on every backend without a layer-specific kernel.
import type { Kernels } from '../backend/types.ts';
import { record } from '../tensor/autograd.ts';
import { isGradEnabled } from '../tensor/autograd.ts';
import { empty, emptyUninit, type Tensor } from '../tensor/tensor.ts';
import { broadcastView } from './shape.ts';
import { contiguousView, expectDtype, fmt, kernelsOf, like, sameDevice } from './util.ts';

import type { FbiDecodeStack, FbiScalePattern, FbiStackHead, QuantBlockType } from '../backend/contracts.ts';

export type { FbiScalePattern, QuantBlockType };

/** Shape of wscale / wbias for a weight [out, in] under a scale pattern. */
export function fbiScaleShape(pattern: FbiScalePattern, outF: number, inF: number): [number, number] {
  switch (pattern) {
    case 'column': return [1, inF];
    case 'row': return [outF, 1];
    case 'single': return [1, 1];
    default: throw new Error(`FBI scale pattern must be 'column' | 'row' | 'single', got ${JSON.stringify(pattern)}`);
  }
}

/** The scale pattern implied by a wscale shape for a weight [out, in] (null if it fits none). */
export function fbiPatternOf(scaleShape: readonly number[], outF: number, inF: number): FbiScalePattern | null {
  const [a, b] = scaleShape.length === 2 ? scaleShape : [-1, -1];
  if (a === 1 && b === inF && inF !== 1) return 'column';
  if (a === outF && b === 1 && outF !== 1) return 'row';
  if (a === 1 && b === 1) return 'single';
  return null;
}

// [outer, n, inner] split of the [out, in] weight grid for summing a gradient down to the scale shape.
function reduceSplit(pattern: FbiScalePattern, outF: number, inF: number): [number, number, number] {
  if (pattern === 'column') return [1, outF, inF];
  if (pattern === 'row') return [outF, inF, 1];
  return [1, outF * inF, 1];
}

function check(x: Tensor, weight: Tensor, alpha: Tensor, beta: Tensor): { outF: number; inF: number; pattern: FbiScalePattern } {
  sameDevice('fbiLinear', x, weight, alpha, beta);
  for (const [t, what] of [[x, 'x'], [weight, 'weight'], [alpha, 'wscale'], [beta, 'wbias']] as const) expectDtype('fbiLinear', t, 'f32', what);
  if (weight.ndim !== 2) throw new Error(`fbiLinear: weight must be [out, in], got ${fmt(weight.shape)}`);
  const [outF, inF] = weight.shape;
  if (x.ndim !== 2 || x.shape[1] !== inF) throw new Error(`fbiLinear: x must be [rows, ${inF}], got ${fmt(x.shape)}`);
  const pattern = fbiPatternOf(alpha.shape, outF, inF);
  if (!pattern) throw new Error(`fbiLinear: wscale ${fmt(alpha.shape)} fits no scale pattern for weight ${fmt(weight.shape)} (use [1,${inF}], [${outF},1] or [1,1])`);
  if (beta.shape.length !== 2 || beta.shape[0] !== alpha.shape[0] || beta.shape[1] !== alpha.shape[1]) {
    throw new Error(`fbiLinear: wbias ${fmt(beta.shape)} must have the shape of wscale ${fmt(alpha.shape)}`);
  }
  return { outF, inF, pattern };
}

/** sign(W) [out, in] (sign(0) = 0, as torch). */
function signOf(k: Kernels, weight: Tensor): Tensor {
  const s = like(weight);
  k.unary('sign', weight.buf, s.buf, 1, 0);
  return s;
}

/** alpha * s + beta, with alpha and beta broadcast onto s's [out, in]. */
function binarized(k: Kernels, s: Tensor, alpha: Tensor, beta: Tensor): Tensor {
  const w = like(s);
  const full = contiguousView(s.shape);
  k.binary('mul', s.buf, full, alpha.buf, broadcastView(alpha.shape, s.shape), w.buf);
  k.binary('add', w.buf, full, beta.buf, broadcastView(beta.shape, s.shape), w.buf);
  return w;
}

/**
 * y [rows, out] = x [rows, in] @ (alpha * sign(W) + beta)^T, W [out, in]; alpha and beta shaped by
 * the scale pattern. Gradients: dx = g @ w; dw = g^T @ x; dW = dw * alpha (STE); dalpha = sum of
 * dw * sign(W) and dbeta = sum of dw over the axes alpha and beta are broadcast along.
 */
export function fbiLinear(x: Tensor, weight: Tensor, alpha: Tensor, beta: Tensor): Tensor {
  const { outF, inF, pattern } = check(x, weight, alpha, beta);
  const k = kernelsOf(x);
  const rows = x.shape[0];
  const s = signOf(k, weight);
  const w = binarized(k, s, alpha, beta);
  const y = like(x, [rows, outF]);
  k.matmul(x.buf, w.buf, y.buf, {
    batch: 1, m: rows, n: outF, k: inF, transA: false, transB: true, strideA: 0, strideB: 0, strideC: 0, alpha: 1, beta: 0,
  });
  return record(y, 'fbiLinear', [x, weight, alpha, beta], (g) => {
    let dx: Tensor | null = null;
    if (x.requiresGrad) {
      dx = like(x);
      k.matmul(g.buf, w.buf, dx.buf, {
        batch: 1, m: rows, n: inF, k: outF, transA: false, transB: false, strideA: 0, strideB: 0, strideC: 0, alpha: 1, beta: 0,
      });
    }
    if (!weight.requiresGrad && !alpha.requiresGrad && !beta.requiresGrad) return [dx, null, null, null];
    const dw = like(weight);
    k.matmul(g.buf, x.buf, dw.buf, {
      batch: 1, m: outF, n: inF, k: rows, transA: true, transB: false, strideA: 0, strideB: 0, strideC: 0, alpha: 1, beta: 0,
    });
    const full = contiguousView(weight.shape);
    const [outer, n, inner] = reduceSplit(pattern, outF, inF);
    let dW: Tensor | null = null, dAlpha: Tensor | null = null, dBeta: Tensor | null = null;
    if (weight.requiresGrad) {
      dW = like(weight);
      k.binary('mul', dw.buf, full, alpha.buf, broadcastView(alpha.shape, weight.shape), dW.buf);
    }
    if (alpha.requiresGrad) {
      const ds = like(weight);
      k.binary('mul', dw.buf, full, s.buf, full, ds.buf);
      dAlpha = like(alpha);
      k.reduce('sum', ds.buf, outer, n, inner, dAlpha.buf);
    }
    if (beta.requiresGrad) {
      dBeta = like(beta);
      k.reduce('sum', dw.buf, outer, n, inner, dBeta.buf);
    }
    return [dx, dW, dAlpha, dBeta];
  });
}

// ---- Serving from packed and low-bit weights (forward only) -----------------------------------

/** Sign bits (i32 [out, ceil(in/32)]) of a latent weight [out, in]: 1 where w > 0 (0 packs as -1). */
export function fbiPackSigns(weight: Tensor): Tensor {
  expectDtype('fbiPackSigns', weight, 'f32');
  if (weight.ndim !== 2) throw new Error(`fbiPackSigns: weight must be [out, in], got ${fmt(weight.shape)}`);
  const [outF, inF] = weight.shape;
  const bits = empty([outF, Math.ceil(inF / 32)], { dtype: 'i32', device: weight.device });
  weight.backend.fbi.packSigns(weight.buf, inF, outF, bits.buf);
  return bits;
}

function servingInput(op: string, x: Tensor, inF: number, weights: Tensor[]): void {
  if (x.shape.at(-1) !== inF) throw new Error(`${op}: input [${x.shape}] does not end in ${inF} features`);
  expectDtype(op, x, 'f32');
  if (x.requiresGrad && isGradEnabled()) throw new Error(`${op}: packed weights are for inference; train the latent model (linear "fbi") instead`);
  for (const w of weights) {
    if (w.device !== x.device) throw new Error(`${op}: input is on ${x.device} but the weights are on ${w.device}; move the model's tensors to ${x.device} first`);
  }
}

function outputOf(x: Tensor, outF: number): Tensor {
  return empty([...x.shape.slice(0, -1), outF], { device: x.device });
}

/**
 * y = x @ (wscale * S + wbias)^T from sign bits (i32 [out, ceil(in/32)], the packed folder layout).
 * activations 'int8' quantizes each token once (the serving default), 'f32' is exact (equals the
 * latent model's linear). Forward only.
 */
export function packedFbiLinear(x: Tensor, bits: Tensor, wscale: Tensor, wbias: Tensor, pattern: FbiScalePattern,
  inF: number, outF: number, activations: 'int8' | 'f32'): Tensor {
  servingInput('packed linear', x, inF, [bits, wscale, wbias]);
  // Every backend's kernels write each output once (no zero-fill first: a decoded token's largest
  // share of non-kernel commands on the GPU).
  const y = emptyUninit([...x.shape.slice(0, -1), outF], { device: x.device });
  const a = { x: x.buf, bits: bits.buf, alpha: wscale.buf, beta: wbias.buf, pattern, rows: x.size / inF, inF, outF, y: y.buf };
  if (activations === 'int8') x.backend.fbi.int8Matmul(a);
  else x.backend.fbi.packedMatmul(a);
  return y;
}

/** y = x @ W^T with W [out, in] held as f16 bits (two per i32 word). */
export function f16Linear(x: Tensor, w16: Tensor, inF: number, outF: number): Tensor {
  servingInput('f16 linear', x, inF, [w16]);
  const y = outputOf(x, outF);
  x.backend.fbi.f16Matmul(x.buf, w16.buf, x.size / inF, inF, outF, y.buf);
  return y;
}

/** y = x @ (scale * q)^T with q int8 rows (bytes in i32 words) and x quantized per token. */
export function int8Linear(x: Tensor, q: Tensor, scale: Tensor, inF: number, outF: number): Tensor {
  servingInput('int8 linear', x, inF, [q, scale]);
  const y = outputOf(x, outF);
  x.backend.fbi.int8HeadMatmul(x.buf, q.buf, scale.buf, x.size / inF, inF, outF, y.buf);
  return y;
}

/** y = x @ W^T with W [out, in] in GGUF blocks (bytes on the host). */
export function quantLinear(x: Tensor, blocks: Uint8Array, type: QuantBlockType, inF: number, outF: number): Tensor {
  servingInput('quantized linear', x, inF, []);
  const y = outputOf(x, outF);
  x.backend.fbi.quantMatmul(x.buf, blocks, type, x.size / inF, inF, outF, y.buf);
  return y;
}

/** A packed linear of a decoder stack (tensors as PackedLinear holds them). */
export interface DecodeStackLinear { bits: Tensor; wscale: Tensor; wbias: Tensor; pattern: FbiScalePattern; inF: number; outF: number }

/** The tensors and sizes of a packed LLaMA-shaped decoder stack (see FbiKernels.decodeStack). */
export interface DecodeStackTensors {
  hidden: number; heads: number; kvHeads: number; headDim: number; intermediate: number; vocab: number;
  eps: number; ropeTheta: number; ropeStyle: 'half' | 'interleaved';
  embed: Tensor; norm: Tensor;
  head: { kind: 'f16'; w: Tensor } | { kind: 'int8'; q: Tensor; scale: Tensor } | { kind: 'none' };
  layers: { norm1: Tensor; norm2: Tensor; q: DecodeStackLinear; k: DecodeStackLinear; v: DecodeStackLinear; o: DecodeStackLinear;
    gate: DecodeStackLinear; up: DecodeStackLinear; down: DecodeStackLinear }[];
}

/**
 * The backend's whole-stack decoder over these tensors (forward only; the backend reads them in
 * place, so they must not change while it is used). Throws KernelUnavailableError where the backend
 * has none.
 */
export function decodeStack(t: DecodeStackTensors): FbiDecodeStack {
  const all: Tensor[] = [t.embed, t.norm];
  const lin = (l: DecodeStackLinear) => {
    all.push(l.bits, l.wscale, l.wbias);
    return { bits: l.bits.buf, alpha: l.wscale.buf, beta: l.wbias.buf, pattern: l.pattern, inF: l.inF, outF: l.outF };
  };
  const layers = t.layers.map((l) => {
    all.push(l.norm1, l.norm2);
    return { norm1: l.norm1.buf, norm2: l.norm2.buf, q: lin(l.q), k: lin(l.k), v: lin(l.v), o: lin(l.o), gate: lin(l.gate), up: lin(l.up), down: lin(l.down) };
  });
  const h = t.head;
  if (h.kind === 'f16') all.push(h.w);
  if (h.kind === 'int8') all.push(h.q, h.scale);
  sameDevice('decode stack', ...all);
  if (t.embed.size !== t.vocab * t.hidden) throw new Error(`decode stack: embedding ${fmt(t.embed.shape)} is not [${t.vocab}, ${t.hidden}]`);
  const head: FbiStackHead = h.kind === 'f16' ? { kind: 'f16', w: h.w.buf } : h.kind === 'int8' ? { kind: 'int8', q: h.q.buf, scale: h.scale.buf } : { kind: 'none' };
  return t.embed.backend.fbi.decodeStack({
    hidden: t.hidden, heads: t.heads, kvHeads: t.kvHeads, headDim: t.headDim, intermediate: t.intermediate, vocab: t.vocab,
    eps: t.eps, ropeTheta: t.ropeTheta, ropeStyle: t.ropeStyle, embed: t.embed.buf, norm: t.norm.buf, head, layers,
  });
}
