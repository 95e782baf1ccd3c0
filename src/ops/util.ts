// Shared helpers for op definitions: output allocation, views and shape checks.
import type { Kernels, Strided } from '../backend/types.ts';
import { contiguousStrides } from '../tensor/autograd.ts';
import { empty, emptyUninit, type Shape, Tensor } from '../tensor/tensor.ts';

export function kernelsOf(t: Tensor): Kernels {
  t.assertAlive();
  return t.backend.kernels;
}

/**
 * Raises `message(value)` for the first index of idx outside [lo, hi) (entries equal to skip
 * allowed): at once on backends that read synchronously, at the next readback elsewhere.
 */
export function checkIndices(idx: Tensor, lo: number, hi: number, skip: number | null, message: (value: number) => string): void {
  const found = like(idx, [3], 'i32');
  idx.backend.kernels.findOutOfRange(idx.buf, idx.size, lo, hi, skip, found.buf);
  idx.backend.raiseIf(found.buf, message);
  found.dispose();
}

export function like(t: Tensor, shape: Shape = t.shape, dtype = t.dtype): Tensor {
  return empty(shape, { dtype, device: t.device });
}

/** like() for an output its kernel overwrites entirely: not zero-filled first (see emptyUninit). */
export function likeOut(t: Tensor, shape: Shape = t.shape, dtype = t.dtype): Tensor {
  return emptyUninit(shape, { dtype, device: t.device });
}

export function contiguousView(shape: Shape): Strided {
  return { shape: [...shape], strides: contiguousStrides(shape), offset: 0 };
}

export function sameDevice(op: string, ...ts: Tensor[]): void {
  for (const t of ts) {
    if (t.device !== ts[0].device) {
      throw new Error(`${op}: tensors are on different devices (${ts.map((x) => x.device).join(', ')}); move them first`);
    }
  }
}

export function expectDtype(op: string, t: Tensor, dtype: 'f32' | 'i32', what = 'input'): void {
  if (t.dtype !== dtype) throw new Error(`${op}: ${what} must be ${dtype}, got ${t.dtype} [${t.shape}]`);
}

export function fmt(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

/** Normalizes a possibly negative axis. */
export function axisOf(op: string, axis: number, ndim: number): number {
  const a = axis < 0 ? axis + ndim : axis;
  if (!Number.isInteger(a) || a < 0 || a >= ndim) throw new Error(`${op}: axis ${axis} out of range for ${ndim} dims`);
  return a;
}

/** Product of dims before, at, and after an axis. */
export function splitAt(shape: Shape, axis: number): [number, number, number] {
  let outer = 1, inner = 1;
  for (let i = 0; i < axis; i++) outer *= shape[i];
  for (let i = axis + 1; i < shape.length; i++) inner *= shape[i];
  return [outer, shape[axis], inner];
}
