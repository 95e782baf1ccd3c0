// Single-precision matrix multiply on the native addon (native/gemm.cc), row-major like numpy:
// C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C, op(X) = X or X^T.
// Offsets, leading dimensions and batch strides are in elements. beta = 0 overwrites C without
// reading it. Arguments are checked here so a bad call fails with a clear message instead of
// reading or writing outside the arrays.
import { nativeAddon } from './native.ts';

function checkCount(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new Error(`sgemm: ${name} must be a non-negative integer, got ${v}`);
}

// Validates that `rows` x `cols` with leading dimension `ld`, repeated `batch` times `stride` apart,
// starting at `off`, lies inside an array of length `len`.
function checkOperand(
  name: string, arr: unknown, off: number, ld: number, stride: number, batch: number, rows: number, cols: number,
): void {
  if (!(arr instanceof Float32Array)) throw new Error(`sgemm: ${name} must be a Float32Array`);
  checkCount(`${name} offset`, off);
  checkCount(`ld${name.toLowerCase()}`, ld);
  checkCount(`stride${name}`, stride);
  if (rows === 0 || cols === 0) return;
  if (ld < cols) {
    throw new Error(`sgemm: ld${name.toLowerCase()} = ${ld} is smaller than the ${cols} columns ${name} is stored with; pass ld >= ${cols}`);
  }
  const last = off + (batch - 1) * stride + (rows - 1) * ld + cols - 1;
  if (last >= arr.length) {
    throw new Error(`sgemm: ${name} has ${arr.length} elements but the shape needs index ${last}; check sizes, offset, ld and stride`);
  }
}

function checkScalar(name: string, v: number): void {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`sgemm: ${name} must be a finite number, got ${v}`);
}

/** Row counts up to which a single product takes the streaming small-M path. */
const SMALL_M = 8;

export function sgemmBatched(
  batch: number, transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  A: Float32Array, aOff: number, lda: number, strideA: number,
  B: Float32Array, bOff: number, ldb: number, strideB: number,
  beta: number, C: Float32Array, cOff: number, ldc: number, strideC: number,
): void {
  for (const [n, v] of [['batch', batch], ['M', M], ['N', N], ['K', K]] as const) checkCount(n, v);
  checkScalar('alpha', alpha);
  checkScalar('beta', beta);
  if (batch === 0 || M === 0 || N === 0) return;
  // A and B are only read when there is something to multiply (BLAS semantics).
  const readsAB = K > 0 && alpha !== 0;
  checkOperand('A', A, aOff, lda, strideA, batch, readsAB ? (transA ? K : M) : 0, transA ? M : K);
  checkOperand('B', B, bOff, ldb, strideB, batch, readsAB ? (transB ? N : K) : 0, transB ? K : N);
  checkOperand('C', C, cOff, ldc, strideC, batch, M, N);
  if (batch > 1 && strideC === 0) throw new Error('sgemm: strideC must be non-zero when batch > 1 (items would overwrite each other)');
  if (batch === 1 && M <= SMALL_M && !transA && readsAB) {
    // Decode-shaped products stream B once instead of packing panels (native/gemv.cc).
    nativeAddon().sgemvSmall(transB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc);
    return;
  }
  nativeAddon().sgemmBatched(batch, transA, transB, M, N, K, alpha, A, aOff, lda, strideA, B, bOff, ldb, strideB, beta, C, cOff, ldc, strideC);
}

export function sgemm(
  transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  A: Float32Array, aOff: number, lda: number,
  B: Float32Array, bOff: number, ldb: number,
  beta: number, C: Float32Array, cOff: number, ldc: number,
): void {
  sgemmBatched(1, transA, transB, M, N, K, alpha, A, aOff, lda, 0, B, bOff, ldb, 0, beta, C, cOff, ldc, 0);
}

/** Which microkernel the addon dispatches to on this machine: 'avx512' | 'avx2' | 'scalar'. */
export function sgemmIsa(): string {
  return nativeAddon().sgemmIsa() as string;
}
