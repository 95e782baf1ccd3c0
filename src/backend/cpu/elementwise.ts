// Native vectorized kernels for the memory-bound parts of a training step (see native/elementwise.cc).
import { nativeAddon } from './native.ts';

interface ElementwiseAddon {
  crossEntropy(logits: Float32Array, target: Int32Array | Float32Array, rows: number, n: number, soft: boolean,
    ignoreIndex: number, loss: Float32Array, dlogits: Float32Array | null): void;
  adamw(w: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, n: number, lr: number, b1: number,
    b2: number, eps: number, weightDecay: number, step: number, gradScale: number): void;
  silu(x: Float32Array, y: Float32Array, n: number): void;
  siluBackward(x: Float32Array, g: Float32Array, dx: Float32Array, n: number): void;
  sumSquares(x: Float32Array, n: number): number;
  /** op 0..3 = add, sub, mul, div; b holds bn elements: n (same shape), 1 (scalar) or a last-axis row. */
  binary(op: number, a: Float32Array, b: Float32Array, out: Float32Array, n: number, bn: number): void;
}

export const nativeElementwise = (): ElementwiseAddon => nativeAddon() as unknown as ElementwiseAddon;
