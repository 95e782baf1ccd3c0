// The plain reference of the TTT mini-batch scan (TypeScript loops, float64 accumulation): the
// TttKernels contract (src/backend/contracts.ts) as written out in ttt.py, forward, decoding-state
// forward and hand-written backward. The CPU (native/ttt.cc, native/ttt_bwd.cc) and WebGPU kernels
// are held against it by the tests; `frugal bench ttt-scan --reference` times it.
//
// Per (batch, head) the inner model f(x) = x + LN(x W + b) (TTT-Linear) or x + LN(gelu(x W1 + b1) W2 + b2)
// (TTT-MLP) is trained on each mini-batch of K tokens with gradients taken at the mini-batch's starting
// weights (ttt.py). A "segment" is a run of tokens inside one mini-batch: a full mini-batch, the
// remainder of a sequence, or a few decoded tokens. Gradient sums of earlier tokens of the same
// mini-batch (decoding) are carried in gW/gB and committed into W/b when the mini-batch completes.
import type { TttDims, TttGrads as Grads, TttInputs as Inputs, TttKernels, TttSaved as Saved, TttState } from '../contracts.ts';

type F32 = Float32Array;
type F64 = Float64Array;

const LN_EPS = 1e-6;
const GELU_C = Math.sqrt(2 / Math.PI);
// ttt.py's gelu_bwd uses these rounded constants for the inner model's gradient.
const GB_C = 0.79788456;
const GB_C3 = 0.1070322243;

const gelu = (x: number) => 0.5 * x * (1 + Math.tanh(GELU_C * (x + 0.044715 * x * x * x)));
function geluGrad(x: number): number {
  const th = Math.tanh(GELU_C * (x + 0.044715 * x * x * x));
  return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * GELU_C * (1 + 3 * 0.044715 * x * x);
}
/** ttt.py gelu_bwd: the derivative used inside the inner gradient. */
function innerGeluGrad(x: number): number {
  const th = Math.tanh(GB_C * x * (1 + 0.044715 * x * x));
  return 0.5 * x * ((1 - th * th) * (GB_C + GB_C3 * x * x)) + 0.5 * (1 + th);
}
/** d/dx of innerGeluGrad (needed because the outer loss differentiates through the inner gradient). */
function innerGeluGrad2(x: number): number {
  const th = Math.tanh(GB_C * x * (1 + 0.044715 * x * x));
  const up = GB_C + GB_C3 * x * x;
  return (1 - th * th) * (up - x * th * up * up + GB_C3 * x * x);
}

export type { TttDims };
export type TttInputs = Inputs<F32>;
/** Decoding state, [B, nh, ...] each; updated in place. */
export type TttStateBufs = TttState<F32>;
/** Weights at each segment start, [B, nh, nSeg, ...], saved by the forward for the backward. */
export type TttSaved = Saved<F32>;

export interface Segment { t0: number; n: number; o: number }

/** Splits [start, start + length) into runs that stay inside one mini-batch. */
function segmentsOf(start: number, length: number, k: number): Segment[] {
  const out: Segment[] = [];
  let t = 0;
  while (t < length) {
    const o = (start + t) % k;
    const n = Math.min(k - o, length - t);
    out.push({ t0: t, n, o });
    t += n;
  }
  return out;
}

/** One layer of the inner model with its per-segment work arrays. */
class InnerLayer {
  W: F64; b: F64; gW: F64; gB: F64;
  keys: F64; P: F64; G: F64; Z: F64; Zb: F64;
  dW: F64; db: F64; dWc: F64; dbc: F64; dKeys: F64; dP: F64; dG: F64; dZb: F64;
  constructor(readonly a: number, readonly d: number, k: number) {
    const n = (m: number) => new Float64Array(m);
    this.W = n(a * d); this.b = n(d); this.gW = n(a * d); this.gB = n(d);
    this.keys = n(k * a); this.P = n(k * a); this.G = n(k * d); this.Z = n(k * d); this.Zb = n(k * d);
    this.dW = n(a * d); this.db = n(d); this.dWc = n(a * d); this.dbc = n(d);
    this.dKeys = n(k * a); this.dP = n(k * a); this.dG = n(k * d); this.dZb = n(k * d);
  }

  /** Z = keys W + b. */
  project(n: number): void {
    const { a, d, W, b, keys, Z } = this;
    for (let s = 0; s < n; s++) {
      const zo = s * d;
      for (let j = 0; j < d; j++) Z[zo + j] = b[j];
      for (let i = 0; i < a; i++) {
        const x = keys[s * a + i];
        if (x === 0) continue;
        const wo = i * d;
        for (let j = 0; j < d; j++) Z[zo + j] += x * W[wo + j];
      }
    }
  }

  /** Dual form: Zb_t = P_t W + b - te_t (P_t gW + gB) - sum_{s<=t} te_t lr_s (P_t . keys_s + 1) G_s. */
  dual(n: number, te: F64, lr: F64, hasPrev: boolean): void {
    const { a, d, W, b, gW, gB, keys, P, G, Zb } = this;
    for (let t = 0; t < n; t++) {
      const zo = t * d, po = t * a;
      for (let j = 0; j < d; j++) Zb[zo + j] = b[j] - (hasPrev ? te[t] * gB[j] : 0);
      for (let i = 0; i < a; i++) {
        const x = P[po + i];
        const wo = i * d;
        if (hasPrev) {
          const xe = x * te[t];
          for (let j = 0; j < d; j++) Zb[zo + j] += x * W[wo + j] - xe * gW[wo + j];
        } else {
          for (let j = 0; j < d; j++) Zb[zo + j] += x * W[wo + j];
        }
      }
      for (let s = 0; s <= t; s++) {
        let dot = 1;
        for (let i = 0; i < a; i++) dot += P[po + i] * keys[s * a + i];
        const c = te[t] * lr[s] * dot;
        const go = s * d;
        for (let j = 0; j < d; j++) Zb[zo + j] -= c * G[go + j];
      }
    }
  }

  /** gW += sum_s lr_s keys_s^T G_s (gB likewise); on a completed mini-batch W -= teLast gW and the sums reset. */
  update(n: number, lr: F64, teLast: number, commit: boolean): void {
    const { a, d, W, b, gW, gB, keys, G } = this;
    for (let s = 0; s < n; s++) {
      const go = s * d;
      for (let j = 0; j < d; j++) gB[j] += lr[s] * G[go + j];
      for (let i = 0; i < a; i++) {
        const x = lr[s] * keys[s * a + i];
        const wo = i * d;
        for (let j = 0; j < d; j++) gW[wo + j] += x * G[go + j];
      }
    }
    if (!commit) return;
    for (let i = 0; i < a * d; i++) { W[i] -= teLast * gW[i]; gW[i] = 0; }
    for (let j = 0; j < d; j++) { b[j] -= teLast * gB[j]; gB[j] = 0; }
  }

  /** Backward of dual() with hasPrev = false; accumulates into dP, dKeys, dG, dW, db, dte, dlr. */
  dualBackward(n: number, te: F64, lr: F64, dte: F64, dlr: F64): void {
    const { a, d, W, keys, P, G, dZb, dP, dKeys, dG, dW, db } = this;
    for (let t = 0; t < n; t++) {
      const zo = t * d, po = t * a;
      for (let j = 0; j < d; j++) db[j] += dZb[zo + j];
      for (let i = 0; i < a; i++) {
        const wo = i * d;
        let acc = 0;
        const x = P[po + i];
        for (let j = 0; j < d; j++) {
          acc += dZb[zo + j] * W[wo + j];
          dW[wo + j] += x * dZb[zo + j];
        }
        dP[po + i] += acc;
      }
      for (let s = 0; s <= t; s++) {
        const go = s * d, ko = s * a;
        let m = 0;
        for (let j = 0; j < d; j++) m += dZb[zo + j] * G[go + j];
        let dot = 1;
        for (let i = 0; i < a; i++) dot += P[po + i] * keys[ko + i];
        dte[t] -= m * lr[s] * dot;
        dlr[s] -= m * te[t] * dot;
        const dA = -m * te[t] * lr[s];
        for (let i = 0; i < a; i++) {
          dP[po + i] += dA * keys[ko + i];
          dKeys[ko + i] += dA * P[po + i];
        }
        const c = te[t] * lr[s] * dot;
        for (let j = 0; j < d; j++) dG[go + j] -= c * dZb[zo + j];
      }
    }
  }

  /** Backward of a committing update() with no carried sums, given dWc/dbc = dL/d(W', b'). */
  updateBackward(n: number, lr: F64, teLast: number, dlr: F64): number {
    const { a, d, keys, G, dWc, dbc, dG, dKeys } = this;
    let dTeLast = 0;
    const u = new Float64Array(d);
    for (let s = 0; s < n; s++) {
      const go = s * d, ko = s * a;
      u.fill(0);
      for (let i = 0; i < a; i++) {
        const x = keys[ko + i];
        const wo = i * d;
        let acc = 0;
        for (let j = 0; j < d; j++) {
          u[j] += x * dWc[wo + j];
          acc += dWc[wo + j] * G[go + j];
        }
        dKeys[ko + i] -= teLast * lr[s] * acc;
      }
      let dcl = 0;
      for (let j = 0; j < d; j++) {
        dcl -= (u[j] + dbc[j]) * G[go + j];
        dG[go + j] -= teLast * lr[s] * (u[j] + dbc[j]);
      }
      dTeLast += dcl * lr[s];
      dlr[s] += dcl * teLast;
    }
    return dTeLast;
  }

  /** dKeys += dZ W^T, dW += keys^T dZ, db += sum dZ (backward of project()). */
  projectBackward(n: number, dZ: F64): void {
    const { a, d, W, keys, dKeys, dW, db } = this;
    for (let s = 0; s < n; s++) {
      const zo = s * d, ko = s * a;
      for (let j = 0; j < d; j++) db[j] += dZ[zo + j];
      for (let i = 0; i < a; i++) {
        const wo = i * d;
        const x = keys[ko + i];
        let acc = 0;
        for (let j = 0; j < d; j++) {
          acc += dZ[zo + j] * W[wo + j];
          dW[wo + j] += x * dZ[zo + j];
        }
        dKeys[ko + i] += acc;
      }
    }
  }
}

/**
 * Gradient of 1/2 ||LN(z) - target||^2 w.r.t. z for one row (ttt.py ln_fused_l2_bwd), written to g.
 * Returns nothing; the row statistics are recomputed by the backward.
 */
function lnL2Grad(z: F64, zo: number, tgt: F64, to: number, gam: F32, bet: F32, ho: number, D: number, g: F64, go: number): void {
  let mu = 0;
  for (let j = 0; j < D; j++) mu += z[zo + j];
  mu /= D;
  let v = 0;
  for (let j = 0; j < D; j++) v += (z[zo + j] - mu) ** 2;
  const std = Math.sqrt(v / D + LN_EPS);
  let s1 = 0, s2 = 0;
  for (let j = 0; j < D; j++) {
    const xh = (z[zo + j] - mu) / std;
    const gx = (gam[ho + j] * xh + bet[ho + j] - tgt[to + j]) * gam[ho + j];
    g[go + j] = gx;
    s1 += gx;
    s2 += gx * xh;
  }
  for (let j = 0; j < D; j++) {
    const xh = (z[zo + j] - mu) / std;
    g[go + j] = (g[go + j] - s1 / D - (xh * s2) / D) / std;
  }
}

/** Vector-Jacobian product of lnL2Grad: dz, dtarget (accumulated), dgamma, dbeta (accumulated). */
function lnL2GradBackward(
  z: F64, zo: number, tgt: F64, to: number, gam: F32, bet: F32, ho: number, D: number,
  dG: F64, dgo: number, dz: F64, dzo: number, dtgt: F64, dto: number, dgam: F64, dbet: F64, s: F64,
): void {
  let mu = 0;
  for (let j = 0; j < D; j++) mu += z[zo + j];
  mu /= D;
  let v = 0;
  for (let j = 0; j < D; j++) v += (z[zo + j] - mu) ** 2;
  const std = Math.sqrt(v / D + LN_EPS);
  // s holds per element: xh, go (= y - target), gxh, then d_xh.
  const xh = s.subarray(0, D), go = s.subarray(D, 2 * D), gx = s.subarray(2 * D, 3 * D), dxh = s.subarray(3 * D, 4 * D);
  let s1 = 0, s2 = 0, su = 0, sux = 0, dstd = 0;
  for (let j = 0; j < D; j++) {
    xh[j] = (z[zo + j] - mu) / std;
    go[j] = gam[ho + j] * xh[j] + bet[ho + j] - tgt[to + j];
    gx[j] = go[j] * gam[ho + j];
    s1 += gx[j];
    s2 += gx[j] * xh[j];
  }
  for (let j = 0; j < D; j++) {
    const u = dG[dgo + j] / std;
    su += u;
    sux += u * xh[j];
    const gOut = (gx[j] - s1 / D - (xh[j] * s2) / D) / std;
    dstd -= dG[dgo + j] * gOut / std;
  }
  let mdx = 0, mdxx = 0;
  for (let j = 0; j < D; j++) {
    const u = dG[dgo + j] / std;
    const dgx = u - su / D - (xh[j] * sux) / D;
    const dgoj = dgx * gam[ho + j];
    dgam[ho + j] += dgx * go[j] + dgoj * xh[j];
    dbet[ho + j] += dgoj;
    dtgt[dto + j] -= dgoj;
    dxh[j] = -(s2 / D) * u - (sux / D) * gx[j] + dgoj * gam[ho + j];
    mdx += dxh[j];
    mdxx += dxh[j] * xh[j];
  }
  mdx /= D; mdxx /= D;
  for (let j = 0; j < D; j++) dz[dzo + j] = (dxh[j] - mdx - xh[j] * mdxx) / std + (dstd * xh[j]) / D;
}

/** Per-(batch, head) workspace. */
class HeadWork {
  readonly layers: InnerLayer[];
  readonly q: F64; readonly v: F64; readonly tgt: F64; readonly out: F64;
  readonly lr: F64; readonly te: F64; readonly dte: F64; readonly dlr: F64;
  readonly dq: F64; readonly dv: F64; readonly dtgt: F64; readonly dZ2: F64; readonly dZ1: F64; readonly H: F64;
  readonly scratch: F64;
  constructor(readonly d: TttDims) {
    const { dim: f, hidden: h, miniBatch: k, mlp } = d;
    this.layers = mlp ? [new InnerLayer(f, h, k), new InnerLayer(h, f, k)] : [new InnerLayer(f, f, k)];
    const n = (m: number) => new Float64Array(m);
    this.q = n(k * f); this.v = n(k * f); this.tgt = n(k * f); this.out = n(k * f);
    this.lr = n(k); this.te = n(k); this.dte = n(k); this.dlr = n(k);
    this.dq = n(k * f); this.dv = n(k * f); this.dtgt = n(k * f); this.dZ2 = n(k * f); this.dZ1 = n(k * h); this.H = n(k * h);
    this.scratch = n(4 * Math.max(f, h));
  }
  get last(): InnerLayer { return this.layers[this.layers.length - 1]; }
}

// Workspaces are reused across calls (decoding calls the kernel once per token and layer).
const workCache = new Map<string, HeadWork>();
function workFor(d: TttDims): HeadWork {
  const key = `${d.mlp}:${d.dim}:${d.hidden}:${d.miniBatch}:${d.heads}:${d.length}`;
  let w = workCache.get(key);
  if (!w) {
    w = new HeadWork({ ...d });
    if (workCache.size > 16) workCache.clear();
    workCache.set(key, w);
  }
  return w;
}

/** Loads a segment's inputs (rows t0..t0+n-1 of head (bi, hh)) into the workspace. */
function loadSegment(w: HeadWork, x: TttInputs, bh: number, seg: Segment): void {
  const { dim: f, length: L } = w.d;
  const first = w.layers[0];
  for (let t = 0; t < seg.n; t++) {
    const src = (bh * L + seg.t0 + t) * f;
    for (let j = 0; j < f; j++) {
      const q = x.xq[src + j], k = x.xk[src + j], v = x.xv[src + j];
      w.q[t * f + j] = q;
      first.P[t * f + j] = q;
      first.keys[t * f + j] = k;
      w.v[t * f + j] = v;
      w.tgt[t * f + j] = v - k;
    }
    w.lr[t] = x.lr[bh * L + seg.t0 + t];
    w.te[t] = x.tokenEta[seg.o + t];
  }
}

/** Inner gradients at the segment's starting weights: G (linear) or G1, G2 (MLP). */
function innerGradients(w: HeadWork, x: TttInputs, hh: number, n: number): void {
  const { dim: f } = w.d;
  const [l1, l2] = w.layers;
  l1.project(n);
  if (!l2) {
    for (let s = 0; s < n; s++) lnL2Grad(l1.Z, s * f, w.tgt, s * f, x.lnW, x.lnB, hh * f, f, l1.G, s * f);
    return;
  }
  const h = l1.d;
  for (let i = 0; i < n * h; i++) l2.keys[i] = gelu(l1.Z[i]);
  l2.project(n);
  for (let s = 0; s < n; s++) lnL2Grad(l2.Z, s * f, w.tgt, s * f, x.lnW, x.lnB, hh * f, f, l2.G, s * f);
  // G1 = (G2 W2^T) * gelu'(Z1); H = G2 W2^T kept for the backward.
  for (let s = 0; s < n; s++) {
    for (let i = 0; i < h; i++) {
      let acc = 0;
      for (let j = 0; j < f; j++) acc += l2.G[s * f + j] * l2.W[i * f + j];
      w.H[s * h + i] = acc;
      l1.G[s * h + i] = acc * innerGeluGrad(l1.Z[s * h + i]);
    }
  }
}

/** Output rows: q + LN(Zb) with the head's LN weight and bias. */
function outputRows(w: HeadWork, x: TttInputs, hh: number, n: number): void {
  const f = w.d.dim;
  const zb = w.last.Zb;
  for (let t = 0; t < n; t++) {
    const o = t * f;
    let mu = 0;
    for (let j = 0; j < f; j++) mu += zb[o + j];
    mu /= f;
    let v = 0;
    for (let j = 0; j < f; j++) v += (zb[o + j] - mu) ** 2;
    const std = Math.sqrt(v / f + LN_EPS);
    for (let j = 0; j < f; j++) w.out[o + j] = w.q[o + j] + x.lnW[hh * f + j] * ((zb[o + j] - mu) / std) + x.lnB[hh * f + j];
  }
}

function forwardSegment(w: HeadWork, x: TttInputs, hh: number, seg: Segment, hasPrev: boolean): void {
  const [l1, l2] = w.layers;
  innerGradients(w, x, hh, seg.n);
  l1.dual(seg.n, w.te, w.lr, hasPrev);
  if (l2) {
    for (let i = 0; i < seg.n * l1.d; i++) l2.P[i] = gelu(l1.Zb[i]);
    l2.dual(seg.n, w.te, w.lr, hasPrev);
  }
  outputRows(w, x, hh, seg.n);
}

function storeOut(w: HeadWork, out: F32, bi: number, hh: number, seg: Segment): void {
  const { dim: f, heads: nh, length: L } = w.d;
  for (let t = 0; t < seg.n; t++) {
    const dst = ((bi * L + seg.t0 + t) * nh + hh) * f;
    for (let j = 0; j < f; j++) out[dst + j] = w.out[t * f + j];
  }
}

type WeightKey = 'w1' | 'b1' | 'w2' | 'b2';
const WEIGHTS: [WeightKey, 'W' | 'b', number][] = [['w1', 'W', 0], ['b1', 'b', 0], ['w2', 'W', 1], ['b2', 'b', 1]];

function copyIn(dst: F64, src: F32, off: number): void {
  for (let i = 0; i < dst.length; i++) dst[i] = src[off + i];
}
function copyOut(dst: F32, off: number, src: F64): void {
  for (let i = 0; i < src.length; i++) dst[off + i] = src[i];
}

/**
 * Forward scan. start: absolute position of the first token (its mini-batch offset is start % K).
 * Without state the weights start from the parameters (tiled over the batch) with empty gradient sums.
 */
export function tttForwardReference(
  d: TttDims, x: TttInputs, out: F32, start: number, state: TttStateBufs | null, saved: TttSaved | null,
): void {
  const segs = segmentsOf(start, d.length, d.miniBatch);
  const w = workFor(d);
  // A state at position 0 has seen nothing: start from the parameters.
  const resume = state !== null && start > 0;
  for (let bi = 0; bi < d.batch; bi++) {
    for (let hh = 0; hh < d.heads; hh++) {
      const bh = bi * d.heads + hh;
      for (const [key, field, li] of WEIGHTS) {
        const l = w.layers[li];
        if (!l) continue;
        const dst = l[field];
        const gdst = field === 'W' ? l.gW : l.gB;
        if (resume) {
          copyIn(dst, state![key]!, bh * dst.length);
          copyIn(gdst, state![('g' + key) as 'gw1']!, bh * gdst.length);
        } else {
          copyIn(dst, x[key]!, hh * dst.length);
          gdst.fill(0);
        }
      }
      let hasPrev = resume && start % d.miniBatch !== 0;
      segs.forEach((seg, si) => {
        if (saved) {
          for (const [key, field, li] of WEIGHTS) {
            const l = w.layers[li];
            if (l) copyOut(saved[key]!, (bh * segs.length + si) * l[field].length, l[field]);
          }
        }
        loadSegment(w, x, bh, seg);
        forwardSegment(w, x, hh, seg, hasPrev);
        storeOut(w, out, bi, hh, seg);
        const commit = seg.o + seg.n === d.miniBatch;
        for (const l of w.layers) l.update(seg.n, w.lr, x.tokenEta[d.miniBatch - 1], commit);
        hasPrev = !commit;
      });
      if (state) {
        for (const [key, field, li] of WEIGHTS) {
          const l = w.layers[li];
          if (!l) continue;
          copyOut(state[key]!, bh * l[field].length, l[field]);
          copyOut(state[('g' + key) as 'gw1']!, bh * l[field].length, field === 'W' ? l.gW : l.gB);
        }
      }
    }
  }
}

export type TttGrads = Grads<F32>;

/** Backward of a stateless forward from position 0: reverses the scan, recomputing each segment. */
export function tttBackwardReference(d: TttDims, x: TttInputs, saved: TttSaved, dOut: F32, g: TttGrads): void {
  const { dim: f, heads: nh, length: L, miniBatch: K } = d;
  const segs = segmentsOf(0, L, K);
  const w = workFor(d);
  const dTe = new Float64Array(K);
  const dlnW = new Float64Array(nh * f), dlnB = new Float64Array(nh * f);
  const dParams = WEIGHTS.map(([key]) => (g[('d' + key) as 'dw1'] ? new Float64Array(g[('d' + key) as 'dw1']!.length) : null));
  for (let bi = 0; bi < d.batch; bi++) {
    for (let hh = 0; hh < nh; hh++) {
      const bh = bi * nh + hh;
      for (const l of w.layers) { l.dWc.fill(0); l.dbc.fill(0); }
      for (let si = segs.length - 1; si >= 0; si--) {
        const seg = segs[si];
        const n = seg.n;
        for (const [key, field, li] of WEIGHTS) {
          const l = w.layers[li];
          if (l) copyIn(l[field], saved[key]!, (bh * segs.length + si) * l[field].length);
        }
        loadSegment(w, x, bh, seg);
        forwardSegment(w, x, hh, seg, false);
        const commit = seg.o + n === K;
        for (const l of w.layers) {
          // W' = W - ... so dL/dW starts from dL/dW'.
          l.dW.set(l.dWc); l.db.set(l.dbc);
          l.dKeys.fill(0, 0, n * l.a); l.dP.fill(0, 0, n * l.a); l.dG.fill(0, 0, n * l.d);
        }
        w.dte.fill(0); w.dlr.fill(0); w.dq.fill(0); w.dv.fill(0); w.dtgt.fill(0);
        backwardSegment(w, x, dOut, bi, hh, seg, commit, dlnW, dlnB);
        for (let t = 0; t < n; t++) dTe[seg.o + t] += w.dte[t];
        // Write input gradients of this segment.
        const first = w.layers[0];
        for (let t = 0; t < n; t++) {
          const dst = (bh * L + seg.t0 + t) * f;
          for (let j = 0; j < f; j++) {
            g.dxq[dst + j] = w.dq[t * f + j] + first.dP[t * f + j];
            g.dxk[dst + j] = first.dKeys[t * f + j] - w.dtgt[t * f + j];
            g.dxv[dst + j] = w.dtgt[t * f + j];
          }
          g.dlr[bh * L + seg.t0 + t] = w.dlr[t];
        }
        for (const l of w.layers) { l.dWc.set(l.dW); l.dbc.set(l.db); }
      }
      WEIGHTS.forEach(([, field, li], k) => {
        const l = w.layers[li];
        const acc = dParams[k];
        if (!l || !acc) return;
        const src = field === 'W' ? l.dWc : l.dbc;
        const off = hh * src.length;
        for (let i = 0; i < src.length; i++) acc[off + i] += src[i];
      });
    }
  }
  WEIGHTS.forEach(([key], k) => {
    const dst = g[('d' + key) as 'dw1'];
    if (dst && dParams[k]) copyOut(dst, 0, dParams[k]!);
  });
  copyOut(g.dTokenEta, 0, dTe);
  copyOut(g.dlnW, 0, dlnW);
  copyOut(g.dlnB, 0, dlnB);
}

function backwardSegment(
  w: HeadWork, x: TttInputs, dOut: F32, bi: number, hh: number, seg: Segment, commit: boolean, dlnW: F64, dlnB: F64,
): void {
  const { dim: f, heads: nh, length: L, miniBatch: K } = w.d;
  const n = seg.n;
  const [l1, l2] = w.layers;
  const last = w.last;
  // out = q + LN(Zb): LayerNorm backward into last.dZb.
  for (let t = 0; t < n; t++) {
    const src = ((bi * L + seg.t0 + t) * nh + hh) * f;
    const o = t * f;
    let mu = 0;
    for (let j = 0; j < f; j++) mu += last.Zb[o + j];
    mu /= f;
    let v = 0;
    for (let j = 0; j < f; j++) v += (last.Zb[o + j] - mu) ** 2;
    const std = Math.sqrt(v / f + LN_EPS);
    let m1 = 0, m2 = 0;
    const dxh = w.scratch;
    for (let j = 0; j < f; j++) {
      const dy = dOut[src + j];
      const xh = (last.Zb[o + j] - mu) / std;
      w.dq[o + j] += dy;
      dlnW[hh * f + j] += dy * xh;
      dlnB[hh * f + j] += dy;
      dxh[j] = dy * x.lnW[hh * f + j];
      m1 += dxh[j];
      m2 += dxh[j] * xh;
    }
    m1 /= f; m2 /= f;
    for (let j = 0; j < f; j++) {
      const xh = (last.Zb[o + j] - mu) / std;
      last.dZb[o + j] = (dxh[j] - m1 - xh * m2) / std;
    }
  }
  if (l2) {
    l2.dualBackward(n, w.te, w.lr, w.dte, w.dlr);
    for (let i = 0; i < n * l1.d; i++) l1.dZb[i] = l2.dP[i] * geluGrad(l1.Zb[i]);
  }
  l1.dualBackward(n, w.te, w.lr, w.dte, w.dlr);
  if (commit) {
    let dTeLast = 0;
    for (const l of w.layers) dTeLast += l.updateBackward(n, w.lr, x.tokenEta[K - 1], w.dlr);
    w.dte[K - 1 - seg.o] += dTeLast;
  }
  // Inner gradients backward.
  if (!l2) {
    for (let s = 0; s < n; s++) {
      lnL2GradBackward(l1.Z, s * f, w.tgt, s * f, x.lnW, x.lnB, hh * f, f, l1.dG, s * f, w.dZ2, s * f, w.dtgt, s * f, dlnW, dlnB, w.scratch);
    }
    l1.projectBackward(n, w.dZ2);
    return;
  }
  const h = l1.d;
  // G1 = H * gp(Z1), H = G2 W2^T.
  for (let s = 0; s < n; s++) {
    for (let i = 0; i < h; i++) {
      const z = l1.Z[s * h + i];
      const dg1 = l1.dG[s * h + i];
      const dH = dg1 * innerGeluGrad(z);
      w.dZ1[s * h + i] = dg1 * w.H[s * h + i] * innerGeluGrad2(z);
      for (let j = 0; j < f; j++) {
        l2.dG[s * f + j] += dH * l2.W[i * f + j];
        l2.dW[i * f + j] += dH * l2.G[s * f + j];
      }
    }
  }
  for (let s = 0; s < n; s++) {
    lnL2GradBackward(l2.Z, s * f, w.tgt, s * f, x.lnW, x.lnB, hh * f, f, l2.dG, s * f, w.dZ2, s * f, w.dtgt, s * f, dlnW, dlnB, w.scratch);
  }
  l2.projectBackward(n, w.dZ2); // dKeys of layer 2 = dX2
  for (let i = 0; i < n * h; i++) w.dZ1[i] += l2.dKeys[i] * geluGrad(l1.Z[i]);
  l1.projectBackward(n, w.dZ1);
}

/** The reference as a TttKernels table (host Float32Array buffers). */
export const referenceTtt: TttKernels = {
  forward: (d, x, out, start, state, saved) =>
    tttForwardReference(d, x as TttInputs, out as unknown as F32, start, state as TttStateBufs | null, saved as TttSaved | null),
  backward: (d, x, saved, dOut, g) => tttBackwardReference(d, x as TttInputs, saved as TttSaved, dOut as unknown as F32, g as TttGrads),
};
