// Shared test utilities: the backend under test (FRUGAL_DEVICE), tolerance checks, gradient checks.
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import type { DeviceName } from '../src/backend/types.ts';
import { backward, fromArray, noGrad, Rng, tidy, type Tensor } from '../src/tensor/index.ts';
import { initWebGPU } from '../src/backend/webgpu/index.ts';

export const DEVICE = (process.env.FRUGAL_DEVICE ?? 'cpu') as DeviceName;
// The webgpu backend needs an asynchronous device request before any tensor is made; a failure here
// fails the run with the reason (no silent fallback to the CPU).
if (DEVICE === 'webgpu') await initWebGPU();
export const GOLDEN_DIR = resolve(process.env.FRUGAL_GOLDEN_DIR ?? resolve(import.meta.dirname, 'fixtures', 'golden'));

export function randArray(n: number, rng: Rng, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal() * scale;
  return a;
}

export function randTensor(shape: number[], rng: Rng, scale = 1): Tensor {
  return fromArray(randArray(shape.reduce((p, s) => p * s, 1), rng, scale), shape, DEVICE);
}

/** max |a - b| / max |b| (relative to the reference's max-abs). */
export function relMaxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, `length ${a.length} vs ${b.length}`);
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / Math.max(m, 1e-30);
}

/** ||a - b|| / ||b||. */
export function relNorm(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, `length ${a.length} vs ${b.length}`);
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    d += (a[i] - b[i]) ** 2;
    m += b[i] ** 2;
  }
  return Math.sqrt(d) / Math.max(Math.sqrt(m), 1e-30);
}

export function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string): void {
  const e = relMaxAbs(a, b);
  assert.ok(e <= tol, `${what}: relative max-abs error ${e.toExponential(2)} > ${tol}`);
}

/**
 * Central finite differences of L = sum(f(inputs) * cotangent), accumulated in float64, against the
 * analytic gradient from backward(). Inputs are f32 leaves; eps is relative to each element's scale.
 */
export async function gradcheck(
  f: (...xs: Tensor[]) => Tensor,
  inputs: Tensor[],
  opts: { eps?: number; tol?: number; rng?: Rng; check?: number[] } = {},
): Promise<void> {
  const eps = opts.eps ?? 1e-2;
  const tol = opts.tol ?? 1e-2;
  const rng = opts.rng ?? new Rng(7);
  const which = opts.check ?? inputs.map((_, i) => i).filter((i) => inputs[i].dtype === 'f32');
  for (const i of which) inputs[i].requiresGrad = true;
  const out0 = tidy(() => noGrad(() => f(...inputs)));
  const cot = randArray(out0.size, rng);
  const cotT = fromArray(cot, out0.shape, DEVICE);
  const loss = async (): Promise<number> => {
    const y = await noGrad(() => f(...inputs)).data();
    let s = 0;
    for (let j = 0; j < y.length; j++) s += y[j] * cot[j];
    return s;
  };
  for (const t of inputs) t.zeroGrad();
  const y = f(...inputs);
  backward(y, cotT);
  for (const i of which) {
    const x = inputs[i];
    const analytic = await x.grad!.data();
    const data = (await x.data()).slice();
    const numeric = new Float64Array(data.length);
    for (let j = 0; j < data.length; j++) {
      const h = eps * Math.max(1, Math.abs(data[j]));
      const orig = data[j];
      const set = async (v: number) => {
        data[j] = v;
        x.backend.kernels.copy(x.backend.upload(Float32Array.of(v)), 0, x.buf, j, 1);
      };
      await set(orig + h);
      const lp = await loss();
      await set(orig - h);
      const lm = await loss();
      await set(orig);
      numeric[j] = (lp - lm) / (2 * h);
    }
    const e = relNorm(analytic, numeric);
    assert.ok(e <= tol, `gradient of input ${i} [${x.shape}]: relative error ${e.toExponential(2)} > ${tol}`);
  }
}
