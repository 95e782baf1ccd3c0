// Native GGUF block kernels (Q8_0 / Q4_0 / Q1_0 weights, int8 activations per 32 values) against a
// plain TypeScript formulation of the same arithmetic, on every instruction-set path of this CPU.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type QuantIsa, quantIsaAvailable, quantMatmul } from '../../src/backend/cpu/quant.ts';
import { dequantize, quantize } from '../../src/io/gguf.ts';
import { Rng } from '../../src/tensor/index.ts';
import { randArray } from '../helpers.ts';

/** Round half to even, as the kernel's nearbyint does. */
const roundEven = (v: number) => {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 ? r - 1 : r;
};

/** y = sum over 32-blocks of (activation scale * int8 activations) . (dequantized weights), in f64. */
function reference(x: Float32Array, rows: number, k: number, w: Float32Array, n: number): Float64Array {
  const y = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    const qa = new Float64Array(k);
    for (let b = 0; b < k / 32; b++) {
      let amax = 0;
      for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[r * k + b * 32 + i]));
      const d = Math.fround(amax / 127), id = d > 0 ? Math.fround(1 / d) : 0;
      for (let i = 0; i < 32; i++) qa[b * 32 + i] = d * roundEven(Math.fround(x[r * k + b * 32 + i] * id));
    }
    for (let o = 0; o < n; o++) {
      let s = 0;
      for (let i = 0; i < k; i++) s += qa[i] * w[o * k + i];
      y[r * n + o] = s;
    }
  }
  return y;
}

const ISAS: QuantIsa[] = ['scalar', 'avx2', 'avx512'];

for (const type of ['Q8_0', 'Q4_0', 'Q1_0'] as const) {
  test(`${type} kernel equals the int8-activation reference on every ISA (decode and prefill shapes)`, () => {
    const rng = new Rng(21);
    for (const [rows, k, n] of [[1, 256, 19], [3, 384, 8], [17, 512, 33], [64, 256, 40]]) {
      const w = randArray(n * k, rng);
      const blocks = quantize(type, w);
      const wd = dequantize(type, blocks, n * k);
      const x = randArray(rows * k, rng, 2);
      const ref = reference(x, rows, k, wd, n);
      let scale = 0;
      for (const v of ref) scale = Math.max(scale, Math.abs(v));
      for (const isa of ISAS) {
        if (!quantIsaAvailable(isa)) continue;
        const y = new Float32Array(rows * n);
        quantMatmul(x, rows, k, blocks, type, n, y, isa);
        for (let i = 0; i < y.length; i++) {
          assert.ok(Math.abs(y[i] - ref[i]) <= 2e-6 * scale * Math.sqrt(k / 32), `${type} ${isa} [${rows},${k}]x[${n}] #${i}: ${y[i]} vs ${ref[i]}`);
        }
      }
    }
  });
}

test('int8 activations keep the product within 1% of the f32 product of the same weights', () => {
  const rng = new Rng(22);
  const k = 1024, n = 64;
  const x = randArray(4 * k, rng);
  for (const type of ['Q8_0', 'Q4_0', 'Q1_0'] as const) {
    const blocks = quantize(type, randArray(n * k, rng));
    const wd = dequantize(type, blocks, n * k);
    const y = new Float32Array(4 * n);
    quantMatmul(x, 4, k, blocks, type, n, y);
    let num = 0, den = 0;
    for (let r = 0; r < 4; r++) for (let o = 0; o < n; o++) {
      let s = 0;
      for (let i = 0; i < k; i++) s += x[r * k + i] * wd[o * k + i];
      num += (y[r * n + o] - s) ** 2;
      den += s * s;
    }
    assert.ok(Math.sqrt(num / den) < 0.01, `${type}: relative error ${Math.sqrt(num / den)}`);
  }
});

test('bad sizes are refused before the native call', () => {
  const w = quantize('Q1_0', new Float32Array(256));
  assert.throws(() => quantMatmul(new Float32Array(100), 1, 100, w, 'Q1_0', 2, new Float32Array(2)), /multiple of 128/);
  assert.throws(() => quantMatmul(new Float32Array(128), 1, 128, w, 'Q1_0', 3, new Float32Array(3)), /weights have 36 bytes, need 54/);
  assert.throws(() => quantMatmul(new Float32Array(128), 1, 128, w, 'Q1_0', 2, new Float32Array(1)), /y has 1 values/);
  assert.throws(() => quantMatmul(new Float32Array(128), 1, 128, w, 'Q5_0' as never, 2, new Float32Array(2)), /block type/);
});
