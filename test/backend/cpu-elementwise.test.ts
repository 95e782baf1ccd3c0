// Native vectorized elementwise kernels against plain float64 formulas, including extreme inputs and
// lengths that are not multiples of the vector width.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { nativeElementwise } from '../../src/backend/cpu/elementwise.ts';
import { Rng } from '../../src/tensor/rng.ts';

const rng = new Rng(3);
const close = (a: number, b: number, rel: number, what: string) =>
  assert.ok(Math.abs(a - b) <= rel * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);

test('silu and its backward, including |x| > 88', () => {
  const xs = Float32Array.from([-200, -100, -88.5, -20, -1, 0, 1e-3, 1, 20, 88.5, 100, 200,
    ...Array.from({ length: 37 }, () => rng.normal() * 5)]);
  const n = xs.length, y = new Float32Array(n), g = Float32Array.from({ length: n }, () => rng.normal()), dx = new Float32Array(n);
  nativeElementwise().silu(xs, y, n);
  nativeElementwise().siluBackward(xs, g, dx, n);
  for (let i = 0; i < n; i++) {
    const x = xs[i], s = 1 / (1 + Math.exp(-x));
    close(y[i], x * s, 1e-5, `silu(${x})`);
    close(dx[i], g[i] * s * (1 + x * (1 - s)), 1e-5, `silu'(${x})`);
  }
});

test('cross-entropy rows (hard and soft) match the log-sum-exp formula', () => {
  const rows = 3, n = 37;
  const x = Float32Array.from({ length: rows * n }, () => rng.normal() * 4);
  const t = Float32Array.from({ length: rows * n }, () => rng.normal() * 4);
  const y = Int32Array.from([5, -100, 36]);
  for (const soft of [false, true]) {
    const loss = new Float32Array(rows), d = new Float32Array(rows * n);
    nativeElementwise().crossEntropy(x, soft ? t : y, rows, n, soft, -100, loss, d);
    for (let r = 0; r < rows; r++) {
      const row = Array.from(x.subarray(r * n, (r + 1) * n));
      const m = Math.max(...row), lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
      const q = row.map((v) => Math.exp(v - lse));
      let want = 0;
      const dwant = new Array(n).fill(0);
      if (soft) {
        const tr = Array.from(t.subarray(r * n, (r + 1) * n));
        const tm = Math.max(...tr), tz = tr.reduce((s, v) => s + Math.exp(v - tm), 0);
        tr.forEach((v, j) => { const p = Math.exp(v - tm) / tz; want -= p * (row[j] - lse); dwant[j] = q[j] - p; });
      } else if (y[r] !== -100) {
        want = lse - row[y[r]];
        q.forEach((v, j) => (dwant[j] = v - (j === y[r] ? 1 : 0)));
      }
      close(loss[r], want, 1e-5, `loss row ${r} soft=${soft}`);
      for (let j = 0; j < n; j++) close(d[r * n + j], dwant[j], 1e-5, `dlogits[${r},${j}] soft=${soft}`);
    }
  }
});

test('adamw matches the PyTorch update rule', () => {
  const n = 41, w = Float32Array.from({ length: n }, () => rng.normal());
  const g = Float32Array.from({ length: n }, () => rng.normal()), m = Float32Array.from({ length: n }, () => rng.normal() * 0.1);
  const v = Float32Array.from({ length: n }, () => Math.abs(rng.normal()) * 0.1);
  const [w0, m0, v0] = [w.slice(), m.slice(), v.slice()];
  const lr = 1e-2, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1, step = 3, gs = 0.5;
  nativeElementwise().adamw(w, g, m, v, n, lr, b1, b2, eps, wd, step, gs);
  for (let i = 0; i < n; i++) {
    const gg = g[i] * gs, mm = b1 * m0[i] + (1 - b1) * gg, vv = b2 * v0[i] + (1 - b2) * gg * gg;
    const want = w0[i] * (1 - lr * wd) - (lr / (1 - b1 ** step)) * mm / (Math.sqrt(vv / (1 - b2 ** step)) + eps);
    close(m[i], mm, 1e-6, 'm');
    close(v[i], vv, 1e-6, 'v');
    close(w[i], want, 1e-6, 'w');
  }
});
