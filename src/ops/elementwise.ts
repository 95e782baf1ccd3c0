// Elementwise ops with NumPy broadcasting. All allocate a new output.
import type { BinaryOp, UnaryOp } from '../backend/types.ts';
import { record } from '../tensor/autograd.ts';
import { full, Tensor } from '../tensor/tensor.ts';
import { broadcastShapes, broadcastView, sumTo } from './shape.ts';
import { contiguousView, kernelsOf, like, likeOut, sameDevice } from './util.ts';

type Operand = Tensor | number;

function lift(x: Operand, ref: Tensor): Tensor {
  return typeof x === 'number' ? full([], x, { device: ref.device, dtype: ref.dtype }) : x;
}

function binaryRaw(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  sameDevice(op, a, b);
  if (a.dtype !== b.dtype) throw new Error(`${op}: dtypes differ (${a.dtype} vs ${b.dtype}); cast one first`);
  const shape = broadcastShapes(op, a.shape, b.shape);
  const out = likeOut(a, shape);
  kernelsOf(a).binary(op, a.buf, broadcastView(a.shape, shape), b.buf, broadcastView(b.shape, shape), out.buf);
  return out;
}

function binary(op: BinaryOp, x: Operand, y: Operand, grads: (a: Tensor, b: Tensor, out: Tensor, g: Tensor) => [Tensor | null, Tensor | null]): Tensor {
  const ref = x instanceof Tensor ? x : (y as Tensor);
  const a = lift(x, ref), b = lift(y, ref);
  const out = binaryRaw(op, a, b);
  return record(out, op, [a, b], (g) => {
    const [ga, gb] = grads(a, b, out, g);
    return [ga && sumTo(ga, a.shape), gb && sumTo(gb, b.shape)];
  });
}

export const add = (a: Operand, b: Operand): Tensor => binary('add', a, b, (_a, _b, _o, g) => [g, g]);
export const sub = (a: Operand, b: Operand): Tensor => binary('sub', a, b, (_a, _b, _o, g) => [g, neg(g)]);
export const mul = (a: Operand, b: Operand): Tensor =>
  binary('mul', a, b, (x, y, _o, g): [Tensor | null, Tensor | null] => [x.requiresGrad ? mul(g, y) : null, y.requiresGrad ? mul(g, x) : null]);
export const div = (a: Operand, b: Operand): Tensor =>
  binary('div', a, b, (x, y, o, g): [Tensor | null, Tensor | null] => [x.requiresGrad ? div(g, y) : null, y.requiresGrad ? neg(div(mul(g, o), y)) : null]);
export const pow = (a: Operand, b: Operand): Tensor =>
  binary('pow', a, b, (x, y, o, g): [Tensor | null, Tensor | null] => [
    x.requiresGrad ? mul(g, mul(y, pow(x, sub(y, 1)))) : null,
    y.requiresGrad ? mul(g, mul(o, unary('log', x))) : null,
  ]);
export const maximum = (a: Operand, b: Operand): Tensor =>
  binary('maximum', a, b, (x, y, _o, g) => {
    const m = binaryRaw('gt', y, x); // 1 where b wins strictly; ties go to a
    return [mul(g, sub(1, m)), mul(g, m)];
  });
export const minimum = (a: Operand, b: Operand): Tensor =>
  binary('minimum', a, b, (x, y, _o, g) => {
    const m = binaryRaw('gt', x, y); // 1 where b is strictly smaller
    return [mul(g, sub(1, m)), mul(g, m)];
  });
/** 1 where a > b else 0 (no gradient). */
export const greater = (a: Tensor, b: Operand) => binaryRaw('gt', a, lift(b, a));
export const equal = (a: Tensor, b: Operand) => binaryRaw('eq', a, lift(b, a));

export function unary(op: UnaryOp, x: Tensor): Tensor {
  const out = likeOut(x);
  kernelsOf(x).unary(op, x.buf, out.buf, 1, 0);
  if (op === 'sign') return out;
  return record(out, op, [x], (g) => {
    const dx = likeOut(x);
    kernelsOf(x).unaryBackward(op, x.buf, out.buf, g.buf, dx.buf);
    return [dx];
  });
}

export const neg = (x: Tensor) => unary('neg', x);
export const exp = (x: Tensor) => unary('exp', x);
export const log = (x: Tensor) => unary('log', x);
export const sqrt = (x: Tensor) => unary('sqrt', x);
export const rsqrt = (x: Tensor) => unary('rsqrt', x);
export const tanh = (x: Tensor) => unary('tanh', x);
export const sigmoid = (x: Tensor) => unary('sigmoid', x);
export const relu = (x: Tensor) => unary('relu', x);
export const silu = (x: Tensor) => unary('silu', x);
/** GELU, exact erf form (approximate = 'tanh' for the tanh form). */
export const gelu = (x: Tensor, approximate: 'none' | 'tanh' = 'none') => unary(approximate === 'tanh' ? 'gelu_tanh' : 'gelu', x);
export const abs = (x: Tensor) => unary('abs', x);
export const square = (x: Tensor) => unary('square', x);
export const sign = (x: Tensor) => unary('sign', x);

/**
 * SwiGLU's gating, silu(gate) * up, as one kernel (and one for its backward) instead of a silu, a
 * multiply and three backward kernels. gate and up must have the same shape (no broadcasting).
 */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  sameDevice('swiglu', gate, up);
  if (gate.dtype !== 'f32' || up.dtype !== 'f32') throw new Error(`swiglu: needs f32 tensors, got ${gate.dtype} and ${up.dtype}`);
  if (gate.shape.length !== up.shape.length || gate.shape.some((s, i) => s !== up.shape[i])) {
    throw new Error(`swiglu: gate [${gate.shape}] and up [${up.shape}] must have the same shape`);
  }
  const out = likeOut(gate);
  kernelsOf(gate).swiglu(gate.buf, up.buf, gate.size, out.buf);
  return record(out, 'swiglu', [gate, up], (g) => {
    const dgate = likeOut(gate), dup = likeOut(up);
    kernelsOf(gate).swigluBackward(gate.buf, up.buf, g.buf, gate.size, dgate.buf, dup.buf);
    return [dgate, dup];
  });
}

/** alpha * x + beta in one pass. */
export function affine(x: Tensor, alpha: number, beta = 0): Tensor {
  const out = likeOut(x);
  kernelsOf(x).unary('identity', x.buf, out.buf, alpha, beta);
  return record(out, 'affine', [x], (g) => [affine(g, alpha, 0)]);
}
export const scale = (x: Tensor, alpha: number) => affine(x, alpha, 0);

/** Copy as another dtype (no gradient). */
export function cast(x: Tensor, dtype: 'f32' | 'i32'): Tensor {
  if (x.dtype === dtype) return x;
  const src = x.dataSync();
  const out = like(x, x.shape, dtype);
  const arr = dtype === 'f32' ? Float32Array.from(src) : Int32Array.from(src, Math.trunc);
  kernelsOf(x).copy(out.backend.upload(arr), 0, out.buf, 0, x.size);
  return out;
}

export { contiguousView };
