// PEER layer benchmark, side by side in one run:
// (a) retrieval (query Linear + BatchNorm + product-key top-k) at 4096 tokens for N = 128^2 .. 2048^2;
// (b) PEER forward+backward (N = 1024^2, h = 8, k = 16, C = 512) against a dense SwiGLU FFN of width
//     4C on the same tokens, and retrieval against brute-force scoring of all N keys (the naive
//     formulation: one GEMM against the full [N, dk] key matrix + top-k; measured on a subset of
//     tokens and scaled linearly, since its cost is linear in tokens);
// (c) peak memory of the forward+backward beyond the parameters (optimizer state excluded), and the
//     bytes the expert-table gradients actually hold (factored: a few scalars per retrieval plus two
//     [T, C] bases) next to what materialized [U, C] row gradients would take;
// (d) the lazy AdamW update of the two expert tables from those gradients.
// Usage: node --import tsx bench/peer.ts [--tokens 512] [--reps 3] [--retrieval-tokens 4096]
import '../src/tensor/index.ts';
import { adviseHugePages } from '../src/backend/cpu/peer.ts';
import { sgemm } from '../src/backend/cpu/gemm.ts';
import { nativeAddon } from '../src/backend/cpu/native.ts';
import { Linear, SwiGLU } from '../src/nn/layers.ts';
import * as op from '../src/ops/index.ts';
import { batchNorm1d, peerExperts, peerRetrieve } from '../src/ops/peer.ts';
import { backward, fromArray, noGrad, Rng, type Tensor } from '../src/tensor/index.ts';
import { AdamW } from '../src/train/optim.ts';
import { bestOfMs, runBenchIfMain } from './kit.ts';

const HEADS = 8, TOPK = 16, DIM_KEY = 128, PRESET_DIM = 768;

/** Cheap deterministic uniform fill with a given std (large tables: Box-Muller would take minutes). */
function table(rows: number, cols: number, std: number, seed: number): Tensor {
  const a = new Float32Array(rows * cols);
  adviseHugePages(a);
  const scale = std * Math.sqrt(12);
  let s = seed >>> 0;
  for (let i = 0; i < a.length; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; a[i] = (s / 4294967296 - 0.5) * scale; }
  return fromArray(a, [rows, cols]);
}


/** The retrieval half of a PEER layer: queries (Linear with bias + BatchNorm) -> product-key top-k. */
function makeRetrieval(dim: number, n: number, rng: Rng) {
  const query = new Linear(dim, HEADS * DIM_KEY, { rng, std: 1 / Math.sqrt(dim) }, true);
  const bnW = fromArray(new Float32Array(HEADS * DIM_KEY).fill(1), [HEADS * DIM_KEY]);
  const bnB = fromArray(new Float32Array(HEADS * DIM_KEY), [HEADS * DIM_KEY]);
  const keys = table(2 * n, DIM_KEY / 2, 1 / Math.sqrt(DIM_KEY / 2), 7 + n);
  const keys4 = op.reshape(keys, [1, 2, n, DIM_KEY / 2]);
  return {
    keys,
    run(x: Tensor) {
      const T = x.shape[0];
      const q = batchNorm1d(query.forward(x), bnW, bnB, null, { training: true });
      return { q, ...peerRetrieve(op.reshape(q, [T, HEADS, 2, DIM_KEY / 2]), keys4, TOPK) };
    },
  };
}


/** The --key options run() reads (`frugal bench peer` rejects any other). */
export const options: readonly string[] = ['reps', 'tokens', 'retrieval-tokens', 'bruteforce-tokens'];
export async function run(args: Record<string, string | boolean>): Promise<Record<string, unknown>> {
  const reps = args.reps ? Number(args.reps) : 3;
  const T = args.tokens ? Number(args.tokens) : 512;
  const retrievalTokens = args['retrieval-tokens'] ? Number(args['retrieval-tokens']) : 4096;
  const bruteTokens = args['bruteforce-tokens'] ? Number(args['bruteforce-tokens']) : 16;
  const C = 512, n = 1024, N = n * n;
  const rng = new Rng(1);

  // (b, c) PEER forward+backward at N = 1024^2, C = 512.
  const down = table(N, C, 0.02, 1), up = table(N, C, 0.02, 2);
  for (const t of [down, up]) { t.requiresGrad = true; t.sparseGrad = true; }
  const retr = makeRetrieval(C, n, rng);
  const x = table(T, C, 1, 3);
  x.requiresGrad = true;
  const cot = table(T, C, 1, 4);
  const peerStep = () => {
    for (const t of [x, down, up]) t.zeroGrad();
    const { indices, scores } = retr.run(x);
    backward(peerExperts(x, down, up, indices, scores), cot);
  };
  global.gc?.();
  const rss0 = process.memoryUsage().rss, peak0 = process.resourceUsage().maxRSS * 1024;
  peerStep();
  const extraBytes = Math.max(process.memoryUsage().rss - rss0, process.resourceUsage().maxRSS * 1024 - Math.max(rss0, peak0));
  const touchedRows = down.sparseGrads[0].indices.size;
  // Every tensor the two tables' gradients hold, counted once (the tables share rows and terms).
  const held = new Map<number, Tensor>();
  for (const t of [down, up]) for (const s of t.sparseGrads) for (const h of s.tensors()) held.set(h.id, h);
  const gradBytes = [...held.values()].reduce((b, h) => b + h.size * 4, 0);
  const peerMs = bestOfMs(peerStep, reps);

  // (d) AdamW on the expert tables from one step's gradients (moments are created on the first
  // update, during the warm-up call). The same tokens retrieve the same rows every rep, so this is
  // the update of resident rows; rows first touched pay page faults on top.
  const opt = new AdamW([['down', down], ['up', up]], { lr: 1e-4 });
  let adamwMs = Infinity;
  for (let r = 0; r <= reps; r++) {
    peerStep();
    const t0 = performance.now();
    opt.update();
    if (r > 0) adamwMs = Math.min(adamwMs, performance.now() - t0);
  }

  const swiglu = new SwiGLU(C, 4 * C, (i, o) => new Linear(i, o, { rng, std: 0.02 }));
  const denseMs = bestOfMs(() => {
    for (const p of [x, ...swiglu.parameters()]) p.zeroGrad();
    backward(swiglu.forward(x), cot);
  }, reps);

  // Retrieval alone at the same tokens, and the brute-force reference on a subset of them.
  const ours = noGrad(() => retr.run(x));
  const oursRetrievalMs = bestOfMs(() => noGrad(() => retr.run(x)), reps);
  const rows = bruteTokens * HEADS;
  const qSub = (ours.q.dataSync() as Float32Array).slice(0, rows * DIM_KEY);
  const kd = retr.keys.dataSync() as Float32Array;
  const half = n * DIM_KEY / 2;
  const bf = peerRetrieveBruteForce(qSub, kd.subarray(0, half), kd.subarray(half, 2 * half), rows, n, DIM_KEY / 2, TOPK);
  const oursIdx = ours.indices.dataSync();
  let match = 0;
  for (let i = 0; i < rows * TOPK; i++) if (bf.idx[i] === oursIdx[i]) match++;
  const bruteforceMs = bf.gemmMs * (T / bruteTokens);

  // (a) retrieval scaling at the preset's query dims.
  const xr = table(retrievalTokens, PRESET_DIM, 1, 5);
  const retrieval: { n_experts: number; ms: number }[] = [];
  for (const side of [128, 256, 512, 1024, 2048]) {
    const r = makeRetrieval(PRESET_DIM, side, rng);
    retrieval.push({ n_experts: side * side, ms: +bestOfMs(() => noGrad(() => r.run(xr)), reps).toFixed(1) });
  }
  const ms = (s: number) => retrieval.find((r) => r.n_experts === s * s)!.ms;

  return {
    retrieval,
    retrieval_ratio_1024sq_over_256sq: +(ms(1024) / ms(256)).toFixed(2),
    peer_ms: +peerMs.toFixed(1),
    dense_ms: +denseMs.toFixed(1),
    peer_over_dense: +(peerMs / denseMs).toFixed(2),
    retrieval_ms: +oursRetrievalMs.toFixed(1),
    bruteforce_ms: +bruteforceMs.toFixed(1),
    bruteforce_over_retrieval: +(bruteforceMs / oursRetrievalMs).toFixed(1),
    bruteforce_tokens_measured: bruteTokens,
    bruteforce_indices_match: +(match / (rows * TOPK)).toFixed(4),
    extra_mib: +(extraBytes / 2 ** 20).toFixed(1),
    touched_rows: touchedRows,
    grad_mib: +(gradBytes / 2 ** 20).toFixed(1),
    materialized_row_grad_mib: +((2 * touchedRows * C * 4) / 2 ** 20).toFixed(1),
    adamw_ms: +adamwMs.toFixed(1),
    config: { tokens: T, retrieval_tokens: retrievalTokens, dim: C, preset_dim: PRESET_DIM, n_experts: N, heads: HEADS, topk: TOPK, dim_key: DIM_KEY },
    threads: nativeAddon().numThreads(),
    isa: nativeAddon().peerIsa(),
  };
}

await runBenchIfMain(import.meta.url, run);

/**
 * The naive formulation of retrieval (the benchmark's peer): scores every one of the N = n^2 full keys [c_i ; c'_j] with one
 * GEMM per chunk of keys and keeps a running top-k. Cost O(N dk) per query instead of O(sqrt(N) dk).
 * q [R, dk] (rows = token-head pairs), c0/c1 [n, dh] (one head's sub-keys). Returns idx/score [R, k].
 */
function peerRetrieveBruteForce(q: Float32Array, c0: Float32Array, c1: Float32Array, R: number, n: number, dh: number, k: number): { idx: Int32Array; score: Float32Array; gemmMs: number } {
  const addon = nativeAddon();
  const dk = 2 * dh;
  const chunkI = Math.max(1, Math.floor((1 << 16) / n)); // 64k keys per chunk
  const keysChunk = new Float32Array(chunkI * n * dk);
  const scores = new Float32Array(R * chunkI * n);
  const idx = new Int32Array(R * k), score = new Float32Array(R * k);
  let gemmMs = 0;
  for (let i0 = 0; i0 < n; i0 += chunkI) {
    const ci = Math.min(chunkI, n - i0), m = ci * n;
    for (let i = 0; i < ci; i++) {
      for (let j = 0; j < n; j++) {
        const row = (i * n + j) * dk;
        keysChunk.set(c0.subarray((i0 + i) * dh, (i0 + i + 1) * dh), row);
        keysChunk.set(c1.subarray(j * dh, (j + 1) * dh), row + dh);
      }
    }
    const t0 = performance.now();
    sgemm(false, true, R, m, dk, 1, q, 0, dk, keysChunk, 0, dk, 0, scores, 0, m);
    addon.peerTopkMerge(scores, R, m, k, i0 * n, score, idx, i0 === 0);
    gemmMs += performance.now() - t0;
  }
  return { idx, score, gemmMs };
}
