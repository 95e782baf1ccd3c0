// The small-M (decode-shaped) path of sgemm against a float64 reference, both B layouts, with
// leading dimensions, offsets and beta.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sgemm } from '../../src/backend/cpu/gemm.ts';
import { Rng } from '../../src/tensor/rng.ts';

const rng = new Rng(11);
const rand = (n: number) => Float32Array.from({ length: n }, () => rng.normal());

for (const transB of [false, true]) {
  for (const [M, N, K] of [[1, 1, 1], [1, 300, 70], [3, 517, 129], [8, 1000, 33], [2, 4096, 256]]) {
    test(`small-M sgemm M=${M} N=${N} K=${K} transB=${transB}`, () => {
      const lda = K + 3, ldb = (transB ? K : N) + 5, ldc = N + 2, off = 4;
      const A = rand(off + M * lda), B = rand(off + (transB ? N : K) * ldb), C = rand(off + M * ldc);
      const C0 = C.slice();
      const alpha = 0.75, beta = M === 3 ? 0.5 : 0;
      sgemm(false, transB, M, N, K, alpha, A, off, lda, B, off, ldb, beta, C, off, ldc);
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) {
          let s = 0, mag = 0;
          for (let k = 0; k < K; k++) {
            const p = A[off + m * lda + k] * B[off + (transB ? n * ldb + k : k * ldb + n)];
            s += p;
            mag += Math.abs(p);
          }
          const want = alpha * s + beta * C0[off + m * ldc + n];
          const got = C[off + m * ldc + n];
          assert.ok(Math.abs(got - want) <= 4 * K * 6e-8 * (alpha * mag + Math.abs(beta * C0[off + m * ldc + n])) + 1e-6,
            `C[${m},${n}] = ${got}, want ${want}`);
        }
        // Padding between rows is untouched.
        if (m < M - 1) assert.equal(C[off + m * ldc + N], C0[off + m * ldc + N]);
      }
    });
  }
}
