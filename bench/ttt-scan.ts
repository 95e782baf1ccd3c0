// TTT scan: the native dual form over whole mini-batches against the TypeScript reference loops and
// against the token-by-token primal loop (one token per call through the decoding state, the naive
// formulation, on the native kernel), batch 1, forward. Also times the forward + hand-written
// backward of the fused op, native (both kernels on the addon) against the TypeScript reference loops,
// and reports how far the native gradients are from the reference ones.
// Usage: node --import tsx bench/ttt-scan.ts [--len 2048] [--heads 12] [--dim 64] [--kind linear|mlp]
import { type TttDims, type TttGrads, tttBackwardReference, tttForwardReference } from '../src/backend/reference/ttt.ts';
import { tttBackwardNative, tttForwardNative as tttForward } from '../src/backend/cpu/ttt.ts';
import { nativeAddon } from '../src/backend/cpu/native.ts';
import { Rng } from '../src/tensor/rng.ts';
import { bestOfMs, runBenchIfMain } from './kit.ts';



/** The --key options run() reads (`frugal bench ttt-scan` rejects any other). */
export const options: readonly string[] = ['len', 'heads', 'dim', 'kind'];
export async function run(args: Record<string, string | boolean>): Promise<Record<string, unknown>> {
  const L = Number(args.len ?? 2048), nh = Number(args.heads ?? 12), f = Number(args.dim ?? 64), K = 16;
  const mlp = args.kind === 'mlp';
  const h = mlp ? 4 * f : f;
  const rng = new Rng(1);
  const rnd = (n: number, s: number) => Float32Array.from({ length: n }, () => rng.normal() * s);
  const n = nh * L * f;
  const x = {
    xq: rnd(n, 1), xk: rnd(n, 1), xv: rnd(n, 1),
    lr: Float32Array.from({ length: nh * L }, () => 0.5 / f), tokenEta: Float32Array.from({ length: K }, (_, i) => 1 / (i + 1)),
    w1: rnd(nh * f * h, 0.02), b1: new Float32Array(nh * h), w2: mlp ? rnd(nh * h * f, 0.02) : null, b2: mlp ? new Float32Array(nh * f) : null,
    lnW: new Float32Array(nh * f).fill(1), lnB: new Float32Array(nh * f),
  };
  const d: TttDims = { mlp, batch: 1, heads: nh, length: L, dim: f, hidden: h, miniBatch: K };
  const outDual = new Float32Array(n);
  const dualMs = bestOfMs(() => tttForward(d, x, outDual, 0, null, null), 5);
  const outRef = new Float32Array(n);
  const refMs = bestOfMs(() => tttForwardReference(d, x, outRef, 0, null, null), 2);

  // Token-by-token: L calls of one token each, carrying the state (weights + running gradient sums).
  const outPrimal = new Float32Array(n);
  const primalMs = bestOfMs(() => {
    const z = (m: number) => new Float32Array(m);
    const st = { w1: z(nh * f * h), b1: z(nh * h), w2: mlp ? z(nh * h * f) : null, b2: mlp ? z(nh * f) : null,
      gw1: z(nh * f * h), gb1: z(nh * h), gw2: mlp ? z(nh * h * f) : null, gb2: mlp ? z(nh * f) : null };
    const one: TttDims = { ...d, length: 1 };
    const tok = { ...x };
    const o1 = new Float32Array(nh * f);
    for (let t = 0; t < L; t++) {
      // Gather token t of every head ([nh, 1, f] slices of [nh, L, f]).
      const pick = (a: Float32Array) => {
        const r = new Float32Array(nh * f);
        for (let hh = 0; hh < nh; hh++) r.set(a.subarray((hh * L + t) * f, (hh * L + t + 1) * f), hh * f);
        return r;
      };
      tok.xq = pick(x.xq); tok.xk = pick(x.xk); tok.xv = pick(x.xv);
      tok.lr = Float32Array.from({ length: nh }, (_, hh) => x.lr[hh * L + t]);
      tttForward(one, tok, o1, t, st, null);
      outPrimal.set(o1, t * nh * f);
    }
  }, 1);
  const rel = (a: Float32Array, b: Float32Array) => {
    let maxDiff = 0, maxRef = 0;
    for (let i = 0; i < n; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
      maxRef = Math.max(maxRef, Math.abs(b[i]));
    }
    return maxDiff / maxRef;
  };

  const nSeg = Math.ceil(L / K);
  const mkSaved = () => ({ w1: new Float32Array(nh * nSeg * f * h), b1: new Float32Array(nh * nSeg * h),
    w2: mlp ? new Float32Array(nh * nSeg * h * f) : null, b2: mlp ? new Float32Array(nh * nSeg * f) : null });
  const dOut = rnd(n, 1);
  const mkGrads = (): TttGrads => ({ dxq: new Float32Array(n), dxk: new Float32Array(n), dxv: new Float32Array(n), dlr: new Float32Array(nh * L),
    dTokenEta: new Float32Array(K), dw1: new Float32Array(nh * f * h), db1: new Float32Array(nh * h),
    dw2: mlp ? new Float32Array(nh * h * f) : null, db2: mlp ? new Float32Array(nh * f) : null,
    dlnW: new Float32Array(nh * f), dlnB: new Float32Array(nh * f) });
  const savedNat = mkSaved(), gradsNat = mkGrads();
  const fwdBwdNativeMs = bestOfMs(() => {
    tttForward(d, x, outDual, 0, null, savedNat);
    tttBackwardNative(d, x, savedNat, dOut, gradsNat);
  }, 3);
  const savedRef = mkSaved(), gradsRef = mkGrads();
  const fwdBwdRefMs = bestOfMs(() => {
    tttForwardReference(d, x, outRef, 0, null, savedRef);
    tttBackwardReference(d, x, savedRef, dOut, gradsRef);
  }, 1);
  // Worst gradient, each relative to its own max-abs (the native forward's float32 saved weights feed
  // the native backward, so this is end to end).
  let gradRel = 0;
  for (const [k, a] of Object.entries(gradsRef) as [keyof TttGrads, Float32Array | null][]) {
    const b = gradsNat[k];
    if (!a || !b) continue;
    let maxDiff = 0, maxRef = 0;
    for (let i = 0; i < a.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
      maxRef = Math.max(maxRef, Math.abs(a[i]));
    }
    gradRel = Math.max(gradRel, maxDiff / Math.max(maxRef, 1e-30));
  }
  return {
    kind: mlp ? 'mlp' : 'linear',
    native: `f32, ${nativeAddon().numThreads?.() ?? 'pool'} threads, ${nativeAddon().tttIsa?.() ?? '?'} dispatch`,
    reference: 'TypeScript loops (float64 accumulation), 1 thread',
    len: L, heads: nh, head_dim: f, mini_batch: K,
    dual_native_ms: +dualMs.toFixed(2), dual_reference_ms: +refMs.toFixed(1),
    primal_token_loop_ms: +primalMs.toFixed(1), primal_us_per_token: +((primalMs / L) * 1000).toFixed(1),
    reference_over_native: +(refMs / dualMs).toFixed(1), primal_over_dual: +(primalMs / dualMs).toFixed(1),
    max_rel_diff_native_vs_reference: rel(outDual, outRef), max_rel_diff_primal_vs_dual: rel(outPrimal, outDual),
    forward_backward_native_ms: +fwdBwdNativeMs.toFixed(1), forward_backward_reference_ms: +fwdBwdRefMs.toFixed(1),
    forward_backward_reference_over_native: +(fwdBwdRefMs / fwdBwdNativeMs).toFixed(1),
    backward: 'native: float64 per (batch, head) task; reference: TypeScript loops',
    max_rel_diff_grads_native_vs_reference: gradRel,
  };
}

await runBenchIfMain(import.meta.url, run);
