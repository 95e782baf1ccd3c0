// The plain reference of the PEER kernels (src/backend/contracts.ts PeerKernels): retrieval scores all
// n^2 experts (no product-key shortcut), the expert mixture gathers each pick and sums in float64,
// the table gradients come out as one dense row per touched expert. BatchNorm1d's loops are here too
// (the CPU backend runs them as they are).
import type { PeerExpertDims, PeerKernels, PeerRetrieveDims, PeerTableGrads } from '../contracts.ts';
import { erf } from '../math.ts';

type F32 = Float32Array;
const f32 = (b: unknown) => b as F32;
const i32 = (b: unknown) => b as Int32Array;

/** Exact top-k over all n^2 experts of one (token, head): ties keep the lower expert id. */
function topPairs(q: F32, keys: F32, d: PeerRetrieveDims, t: number, h: number): { id: number; score: number; i: number; j: number }[] {
  const { heads: H, n, dh } = d;
  const kh = d.hk === 1 ? 0 : h;
  const q0 = (t * H + h) * 2 * dh, q1 = q0 + dh;
  const s0 = new Float64Array(n), s1 = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let a = 0, b = 0;
    for (let x = 0; x < dh; x++) {
      a += q[q0 + x] * keys[(kh * 2 * n + i) * dh + x];
      b += q[q1 + x] * keys[((kh * 2 + 1) * n + i) * dh + x];
    }
    s0[i] = Math.fround(a);
    s1[i] = Math.fround(b);
  }
  const all: { id: number; score: number; i: number; j: number }[] = [];
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) all.push({ id: i * n + j, score: s0[i] + s1[j], i, j });
  all.sort((a, b) => b.score - a.score || a.id - b.id);
  return all.slice(0, d.k);
}

const act = (kind: PeerExpertDims['activation'], s: number) => (kind === 'gelu' ? 0.5 * s * (1 + erf(s * Math.SQRT1_2)) : Math.max(0, s));
const actGrad = (kind: PeerExpertDims['activation'], s: number) => (kind === 'gelu'
  ? 0.5 * (1 + erf(s * Math.SQRT1_2)) + s * Math.exp(-0.5 * s * s) / Math.sqrt(2 * Math.PI)
  : (s > 0 ? 1 : 0));

/** Router weights g [tokens, heads, k] from raw scores: softmax over each head's k picks, or sigmoid. */
function routerWeights(z: F32, d: PeerExpertDims): Float64Array {
  const g = new Float64Array(d.tokens * d.heads * d.k);
  for (let b = 0; b < d.tokens * d.heads; b++) {
    const o = b * d.k;
    if (d.score === 'sigmoid') { for (let r = 0; r < d.k; r++) g[o + r] = 1 / (1 + Math.exp(-z[o + r])); continue; }
    let mx = -Infinity;
    for (let r = 0; r < d.k; r++) mx = Math.max(mx, z[o + r]);
    let sum = 0;
    for (let r = 0; r < d.k; r++) sum += Math.exp(z[o + r] - mx);
    for (let r = 0; r < d.k; r++) g[o + r] = Math.exp(z[o + r] - mx) / sum;
  }
  return g;
}

const dot = (a: F32, ao: number, b: F32, bo: number, n: number) => { let s = 0; for (let c = 0; c < n; c++) s += a[ao + c] * b[bo + c]; return s; };

/** The reference as a PeerKernels table (host typed-array buffers). */
export const referencePeer: PeerKernels = {
  retrieve(q, keys, d, o) {
    const idx = i32(o.indices), score = f32(o.scores), sub = i32(o.sub);
    for (let t = 0; t < d.tokens; t++) for (let h = 0; h < d.heads; h++) {
      topPairs(f32(q), f32(keys), d, t, h).forEach((p, r) => {
        const at = (t * d.heads + h) * d.k + r;
        idx[at] = p.id; score[at] = p.score; sub[2 * at] = p.i; sub[2 * at + 1] = p.j;
      });
    }
  },
  retrieveBackward(q, keys, sub, dz, d, dq, dkeys) {
    const Q = f32(q), Kt = f32(keys), S = i32(sub), Z = f32(dz), dQ = f32(dq), dK = f32(dkeys);
    const { heads: H, n, dh } = d;
    const gq = new Float64Array(dQ.length), gk = new Float64Array(dK.length);
    for (let t = 0; t < d.tokens; t++) for (let h = 0; h < H; h++) for (let r = 0; r < d.k; r++) {
      const at = (t * H + h) * d.k + r, g = Z[at], kh = d.hk === 1 ? 0 : h;
      const q0 = (t * H + h) * 2 * dh;
      const c0 = (kh * 2 * n + S[2 * at]) * dh, c1 = ((kh * 2 + 1) * n + S[2 * at + 1]) * dh;
      for (let x = 0; x < dh; x++) {
        gq[q0 + x] += g * Kt[c0 + x];
        gq[q0 + dh + x] += g * Kt[c1 + x];
        gk[c0 + x] += g * Q[q0 + x];
        gk[c1 + x] += g * Q[q0 + dh + x];
      }
    }
    dQ.set(gq);
    dK.set(gk);
  },
  expertsForward(x, d, y, saved) {
    const X = f32(x.x), U = f32(x.down), V = f32(x.up), I = i32(x.indices), Y = f32(y), G = f32(saved.g), P = f32(saved.pre);
    const g = routerWeights(f32(x.scores), d), M = d.heads * d.k;
    for (let t = 0; t < d.tokens; t++) {
      const acc = new Float64Array(d.c);
      for (let m = 0; m < M; m++) {
        const o = t * M + m, e = I[o];
        const pre = dot(U, e * d.c, X, t * d.c, d.c);
        P[o] = pre;
        G[o] = g[o];
        const w = g[o] * act(d.activation, pre);
        for (let c = 0; c < d.c; c++) acc[c] += w * V[e * d.c + c];
      }
      Y.set(acc, t * d.c);
    }
  },
  expertsBackward(x, d, saved, dy, dx, dz): PeerTableGrads {
    const X = f32(x.x), U = f32(x.down), V = f32(x.up), I = i32(x.indices), G = f32(saved.g), P = f32(saved.pre);
    const DY = f32(dy), DX = f32(dx), DZ = f32(dz), M = d.heads * d.k, C = d.c;
    const du = new Map<number, Float64Array>(), dv = new Map<number, Float64Array>();
    const row = (m: Map<number, Float64Array>, e: number) => { let r = m.get(e); if (!r) { r = new Float64Array(C); m.set(e, r); } return r; };
    for (let t = 0; t < d.tokens; t++) {
      const gx = new Float64Array(C);
      const dg = new Float64Array(M);
      for (let m = 0; m < M; m++) {
        const o = t * M + m, e = I[o], pre = P[o], a = act(d.activation, pre);
        const dyv = dot(DY, t * C, V, e * C, C);
        dg[m] = a * dyv;
        const ds = G[o] * dyv * actGrad(d.activation, pre);
        const ru = row(du, e), rv = row(dv, e);
        for (let c = 0; c < C; c++) {
          gx[c] += ds * U[e * C + c];
          ru[c] += ds * X[t * C + c];
          rv[c] += G[o] * a * DY[t * C + c];
        }
      }
      DX.set(gx, t * C);
      for (let h = 0; h < d.heads; h++) {
        const b = (t * d.heads + h) * d.k;
        if (d.score === 'sigmoid') { for (let r = 0; r < d.k; r++) DZ[b + r] = dg[h * d.k + r] * G[b + r] * (1 - G[b + r]); continue; }
        let s = 0;
        for (let r = 0; r < d.k; r++) s += G[b + r] * dg[h * d.k + r];
        for (let r = 0; r < d.k; r++) DZ[b + r] = G[b + r] * (dg[h * d.k + r] - s);
      }
    }
    const ids = [...du.keys()].sort((a, b) => a - b);
    const rows = Int32Array.from(ids), U2 = new Float32Array(ids.length * C), V2 = new Float32Array(ids.length * C);
    ids.forEach((e, q) => { U2.set(du.get(e)!, q * C); V2.set(dv.get(e)!, q * C); });
    return { form: 'rows', rows, count: ids.length, du: U2, dv: V2 };
  },
  batchNormForward: (x, w, b, rm, rv, d, y, mean, rstd) =>
    batchNormForward(f32(x), w && f32(w), b && f32(b), rm && f32(rm), rv && f32(rv), d.rows, d.features, d.training, d.momentum, d.eps,
      f32(y), f32(mean), f32(rstd)),
  batchNormBackward: (x, w, mean, rstd, dy, d, dx, dw, db) =>
    batchNormBackward(f32(x), w && f32(w), f32(mean), f32(rstd), f32(dy), d.rows, d.features, d.training, f32(dx), dw && f32(dw), db && f32(db)),
};

/**
 * BatchNorm1d forward over x [rows, F]. Training: batch mean and biased variance normalize, and
 * running stats (when given) move by momentum with the unbiased variance (PyTorch semantics).
 * Eval: running stats normalize. Saves xhat-free state: mean and 1/std per feature.
 */
export function batchNormForward(x: F32, weight: F32 | null, bias: F32 | null, runMean: F32 | null, runVar: F32 | null,
  rows: number, F: number, training: boolean, momentum: number, eps: number, y: F32, mean: F32, rstd: F32): void {
  if (training) {
    const s = new Float64Array(F), ss = new Float64Array(F);
    for (let r = 0; r < rows; r++) for (let f = 0; f < F; f++) s[f] += x[r * F + f];
    for (let f = 0; f < F; f++) mean[f] = s[f] / rows;
    for (let r = 0; r < rows; r++) for (let f = 0; f < F; f++) { const d = x[r * F + f] - mean[f]; ss[f] += d * d; }
    for (let f = 0; f < F; f++) {
      const varB = ss[f] / rows;
      rstd[f] = 1 / Math.sqrt(varB + eps);
      if (runMean && runVar) {
        runMean[f] = (1 - momentum) * runMean[f] + momentum * mean[f];
        runVar[f] = (1 - momentum) * runVar[f] + momentum * (rows > 1 ? ss[f] / (rows - 1) : varB);
      }
    }
  } else {
    if (!runMean || !runVar) throw new Error('batchNorm1d: eval mode needs running mean and variance');
    for (let f = 0; f < F; f++) { mean[f] = runMean[f]; rstd[f] = 1 / Math.sqrt(runVar[f] + eps); }
  }
  for (let r = 0; r < rows; r++) {
    for (let f = 0; f < F; f++) {
      const i = r * F + f;
      y[i] = (x[i] - mean[f]) * rstd[f] * (weight ? weight[f] : 1) + (bias ? bias[f] : 0);
    }
  }
}

/** dx (and dweight/dbias when given); `training` selects the batch-statistics backward. */
export function batchNormBackward(x: F32, weight: F32 | null, mean: F32, rstd: F32, dy: F32, rows: number, F: number,
  training: boolean, dx: F32, dweight: F32 | null, dbias: F32 | null): void {
  const sdy = new Float64Array(F), sdyx = new Float64Array(F);
  for (let r = 0; r < rows; r++) {
    for (let f = 0; f < F; f++) {
      const i = r * F + f;
      sdy[f] += dy[i];
      sdyx[f] += dy[i] * (x[i] - mean[f]) * rstd[f];
    }
  }
  for (let f = 0; f < F; f++) {
    if (dweight) dweight[f] = sdyx[f];
    if (dbias) dbias[f] = sdy[f];
  }
  for (let r = 0; r < rows; r++) {
    for (let f = 0; f < F; f++) {
      const i = r * F + f, wf = weight ? weight[f] : 1;
      if (!training) { dx[i] = dy[i] * wf * rstd[f]; continue; }
      const xhat = (x[i] - mean[f]) * rstd[f];
      dx[i] = wf * rstd[f] * (dy[i] - sdy[f] / rows - xhat * sdyx[f] / rows);
    }
  }
}

