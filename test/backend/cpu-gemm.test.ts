// SGEMM against a float64 reference, on every dispatch path: this process runs whatever the CPU
// offers, and child processes rerun this file with FRUGAL_NO_AVX512 / FRUGAL_NO_AVX2 set.
// Tolerance: |C - ref| <= 4 * K * 2^-24 * (|alpha| * sum_k |a_ik * b_kj| + |beta * c_ij|), the
// classic worst-case bound for a K-term float32 dot product; a wrong element or a missed k slice
// is off by O(sum |a b|), far above it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { sgemm, sgemmBatched, sgemmIsa } from '../../src/backend/cpu/gemm.ts';
import { nativeAddon } from '../../src/backend/cpu/native.ts';

const EPS = 2 ** -24;
let seed = 12345;
function rand(): number {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 2 ** 31 - 1;
}
function randArray(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rand();
  return a;
}

interface Case {
  batch?: number; ta: boolean; tb: boolean; M: number; N: number; K: number; alpha: number; beta: number;
  padA?: number; padB?: number; padC?: number; offA?: number; offB?: number; offC?: number;
  strideA0?: boolean; strideB0?: boolean; interleaveC?: boolean;
}

// Builds operands for a case, runs sgemmBatched, and compares every element of C (including the
// padding columns, which must be untouched) against the float64 reference.
function check(c: Case): void {
  const batch = c.batch ?? 1;
  const { ta, tb, M, N, K, alpha, beta } = c;
  const aRows = ta ? K : M, aCols = ta ? M : K, bRows = tb ? N : K, bCols = tb ? K : N;
  const lda = aCols + (c.padA ?? 0), ldb = bCols + (c.padB ?? 0);
  const offA = c.offA ?? 0, offB = c.offB ?? 0, offC = c.offC ?? 0;
  const sA = c.strideA0 ? 0 : aRows * lda, sB = c.strideB0 ? 0 : bRows * ldb;
  // Interleaved C stores item b's row i at C[i * ldc + b * N], like a [M, batch, N] tensor.
  const ldc = c.interleaveC ? batch * N : N + (c.padC ?? 0);
  const sC = c.interleaveC ? N : M * ldc;
  const A = randArray(offA + (c.strideA0 ? 1 : batch) * aRows * lda);
  const B = randArray(offB + (c.strideB0 ? 1 : batch) * bRows * ldb);
  const Clen = offC + (c.interleaveC ? M * ldc : batch * M * ldc);
  const C = randArray(Clen);
  // beta = 0 must not read C: NaN there would leak into the result otherwise.
  if (beta === 0) for (let i = 0; i < Clen; i++) if (i % 7 === 0) C[i] = NaN;
  const expected = Float64Array.from(C);
  const bound = new Float64Array(Clen);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let dot = 0, abs = 0;
        for (let k = 0; k < K; k++) {
          const a = A[offA + b * sA + (ta ? k * lda + i : i * lda + k)];
          const bb = B[offB + b * sB + (tb ? j * ldb + k : k * ldb + j)];
          dot += a * bb;
          abs += Math.abs(a * bb);
        }
        const idx = offC + b * sC + i * ldc + j;
        const c0 = beta === 0 ? 0 : C[idx];
        expected[idx] = alpha * dot + beta * c0;
        bound[idx] = 4 * K * EPS * (Math.abs(alpha) * abs + Math.abs(beta * c0)) + 1e-30;
      }
    }
  }
  sgemmBatched(batch, ta, tb, M, N, K, alpha, A, offA, lda, sA, B, offB, ldb, sB, beta, C, offC, ldc, sC);
  for (let i = 0; i < Clen; i++) {
    const e = expected[i], got = C[i];
    if (Number.isNaN(e)) {
      assert.ok(Number.isNaN(got), `element ${i} outside C's shape was modified`);
      continue;
    }
    if (!(Math.abs(got - e) <= bound[i] + Math.abs(e) * EPS)) {
      assert.fail(`${JSON.stringify(c)}: C[${i}] = ${got}, expected ${e} (bound ${bound[i]})`);
    }
  }
}

const cases: Case[] = [
  { ta: false, tb: false, M: 1, N: 1, K: 1, alpha: 1, beta: 0 },
  { ta: false, tb: false, M: 17, N: 33, K: 5, alpha: 1, beta: 0 },
  { ta: true, tb: false, M: 17, N: 33, K: 5, alpha: 1, beta: 0 },
  { ta: false, tb: true, M: 17, N: 33, K: 5, alpha: 1, beta: 0 },
  { ta: true, tb: true, M: 17, N: 33, K: 5, alpha: 1, beta: 0 },
  { ta: false, tb: false, M: 15, N: 47, K: 300, alpha: 0.5, beta: 1.5 },
  { ta: true, tb: true, M: 29, N: 31, K: 257, alpha: -2, beta: 0.25 },
  { ta: false, tb: false, M: 5, N: 7, K: 0, alpha: 1, beta: 2 },
  { ta: false, tb: false, M: 5, N: 7, K: 3, alpha: 0, beta: 0.5 },
  { ta: false, tb: true, M: 23, N: 19, K: 40, alpha: 1, beta: 1, padA: 3, padB: 5, padC: 9, offA: 2, offB: 1, offC: 4 },
  { ta: true, tb: false, M: 23, N: 19, K: 40, alpha: 1, beta: 0, padA: 3, padB: 5, padC: 9 },
  // Large enough to use every thread: row split with several MC blocks, and a column split (short M).
  { ta: false, tb: false, M: 400, N: 300, K: 40, alpha: 1, beta: 0 },
  { ta: true, tb: true, M: 5, N: 3000, K: 200, alpha: 1, beta: 1 },
  // N beyond one NC block with a ragged edge.
  { ta: false, tb: false, M: 3, N: 2100, K: 4, alpha: 1, beta: 0, padC: 1 },
  { ta: false, tb: false, M: 130, N: 140, K: 600, alpha: 1, beta: -1, padA: 1, padB: 2, padC: 3 },
];
const batchedCases: Case[] = [
  { batch: 3, ta: false, tb: false, M: 9, N: 10, K: 11, alpha: 1, beta: 0, strideB0: true },
  { batch: 3, ta: true, tb: false, M: 9, N: 10, K: 11, alpha: 1, beta: 1, strideA0: true },
  { batch: 8, ta: false, tb: true, M: 33, N: 20, K: 64, alpha: 1, beta: 0, interleaveC: true },
  { batch: 5, ta: false, tb: false, M: 70, N: 50, K: 90, alpha: 2, beta: 0.5, padC: 2 },
  // Few large items: run one after another, each over all threads.
  { batch: 3, ta: false, tb: true, M: 300, N: 260, K: 200, alpha: 1, beta: 0, strideB0: true },
];

const expectedIsa = process.env.FRUGAL_EXPECT_ISA;
test(`dispatch path is the one asked for (${expectedIsa ?? 'native'})`, () => {
  if (expectedIsa) assert.equal(sgemmIsa(), expectedIsa);
  else assert.ok(['avx512', 'avx2', 'scalar'].includes(sgemmIsa()));
});

test(`sgemm matches the float64 reference (${sgemmIsa()})`, () => {
  for (const c of cases) check(c);
});

test(`sgemmBatched matches the float64 reference, stride 0 and interleaved C (${sgemmIsa()})`, () => {
  for (const c of batchedCases) check(c);
});

test('sgemm single-call wrapper equals the batched call with batch 1', () => {
  const A = randArray(6 * 4), B = randArray(4 * 5), C1 = new Float32Array(30), C2 = new Float32Array(30);
  sgemm(false, false, 6, 5, 4, 1, A, 0, 4, B, 0, 5, 0, C1, 0, 5);
  sgemmBatched(1, false, false, 6, 5, 4, 1, A, 0, 4, 0, B, 0, 5, 0, 0, C2, 0, 5, 0);
  assert.deepEqual(C1, C2);
  assert.ok(C1.some((v) => v !== 0));
});

test('bad arguments give one clear error', () => {
  const A = new Float32Array(12), B = new Float32Array(12), C = new Float32Array(9);
  assert.throws(() => sgemm(false, false, 3, 3, 4, 1, A, 0, 3, B, 0, 3, 0, C, 0, 3), /lda = 3 is smaller than the 4 columns/);
  assert.throws(() => sgemm(false, false, 3, 3, 4, 1, A, 1, 4, B, 0, 3, 0, C, 0, 3), /A has 12 elements but the shape needs index 12/);
  assert.throws(() => sgemm(false, false, 3, 3, 4.5, 1, A, 0, 4, B, 0, 3, 0, C, 0, 3), /K must be a non-negative integer/);
  assert.throws(() => sgemm(false, false, 3, 3, 4, NaN, A, 0, 4, B, 0, 3, 0, C, 0, 3), /alpha must be a finite number/);
  assert.throws(() => sgemmBatched(2, false, false, 3, 3, 4, 1, A, 0, 4, 0, B, 0, 3, 0, 0, C, 0, 3, 0), /strideC must be non-zero/);
});

// Rerun this file with the wider paths switched off. Skipped inside those children, and for paths
// the CPU cannot take anyway (then this process already ran the narrower one).
const features = nativeAddon().cpuFeatures() as { avx512: boolean; avx2: boolean };
const children: Array<[string, Record<string, string>]> = [];
if (!expectedIsa && features.avx512) children.push(['avx2', { FRUGAL_NO_AVX512: '1' }]);
if (!expectedIsa && (features.avx512 || features.avx2)) children.push(['scalar', { FRUGAL_NO_AVX512: '1', FRUGAL_NO_AVX2: '1' }]);
for (const [isa, env] of children) {
  const expect = isa === 'avx2' && !features.avx2 ? 'scalar' : isa;
  test(`the ${expect} path passes the same checks (child process)`, () => {
    // NODE_TEST_CONTEXT would make the child report to this runner instead of running its tests.
    const { NODE_TEST_CONTEXT: _, ...parentEnv } = process.env;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', fileURLToPath(import.meta.url)], {
      env: { ...parentEnv, ...env, FRUGAL_EXPECT_ISA: expect }, encoding: 'utf8',
    });
    assert.equal(r.status, 0, `child with ${JSON.stringify(env)} failed:\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /# pass 5\b/, `child did not run its checks:\n${r.stdout}`);
  });
}
