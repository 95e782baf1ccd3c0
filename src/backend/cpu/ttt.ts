// TTT scan on the native addon: the CPU's TttKernels (src/backend/contracts.ts, which documents the
// layouts). Forward (native/ttt.cc): the same contract as `tttForwardReference` in
// ../reference/ttt.ts, one pool task per (batch, head), small vectorized GEMMs
// per mini-batch. The decode step (one token through a TttStateBufs) runs here too, so its cost is
// the fixed state size, not the context length. Backward (native/ttt_bwd.cc): the same contract as
// `tttBackwardReference`, float64 like it, one task per (batch, head), batch-shared gradients summed
// in a fixed order.
import { nativeAddon } from './native.ts';
import type { TttDims, TttKernels, TttGrads as Grads, TttInputs as Inputs, TttSaved as Saved, TttState as State } from '../contracts.ts';

type F32 = Float32Array;
type TttInputs = Inputs<F32>;
type TttStateBufs = State<F32>;
type TttSaved = Saved<F32>;
type TttGrads = Grads<F32>;

function checkIn(fn: string, name: string, a: unknown, want: number): void {
  if (!(a instanceof Float32Array)) throw new Error(`${fn}: ${name} must be a Float32Array`);
  if (a.length !== want) throw new Error(`${fn}: ${name} has ${a.length} elements, expected ${want}`);
}
const check = (name: string, a: unknown, want: number) => checkIn('tttForwardNative', name, a, want);

function checkDims(fn: string, d: TttDims): void {
  const { mlp, batch: B, heads: nh, length: L, dim: f, hidden: h, miniBatch: K } = d;
  for (const [n, v] of [['batch', B], ['heads', nh], ['length', L], ['dim', f], ['miniBatch', K]] as const) {
    if (!Number.isSafeInteger(v) || v < 1) throw new Error(`${fn}: ${n} must be a positive integer, got ${v}`);
  }
  if (h !== (mlp ? 4 * f : f)) throw new Error(`${fn}: hidden must be ${mlp ? '4 * dim' : 'dim'} = ${mlp ? 4 * f : f}, got ${h}`);
}

/** Number of segments (runs inside one mini-batch) of [start, start + length). */
function segmentCount(start: number, length: number, k: number): number {
  let n = 0;
  for (let t = 0; t < length; n++) t += Math.min(k - ((start + t) % k), length - t);
  return n;
}

export function tttForwardNative(
  d: TttDims, x: TttInputs, out: Float32Array, start: number, state: TttStateBufs | null, saved: TttSaved | null,
): void {
  const { mlp, batch: B, heads: nh, length: L, dim: f, hidden: h, miniBatch: K } = d;
  checkDims('tttForwardNative', d);
  if (!Number.isSafeInteger(start) || start < 0) throw new Error(`tttForwardNative: start must be a non-negative integer, got ${start}`);
  const xn = B * nh * L * f;
  check('xq', x.xq, xn); check('xk', x.xk, xn); check('xv', x.xv, xn); check('out', out, xn);
  check('lr', x.lr, B * nh * L); check('tokenEta', x.tokenEta, K);
  check('w1', x.w1, nh * f * h); check('b1', x.b1, nh * h);
  if (mlp) { check('w2', x.w2, nh * h * f); check('b2', x.b2, nh * f); }
  check('lnW', x.lnW, nh * f); check('lnB', x.lnB, nh * f);
  const sizes = [f * h, h, h * f, f];
  let st: (Float32Array | null)[] | null = null;
  if (state) {
    st = [state.w1, state.b1, state.w2, state.b2, state.gw1, state.gb1, state.gw2, state.gb2];
    st.forEach((a, i) => { if (mlp || i % 4 < 2) check(`state[${i}]`, a, B * nh * sizes[i % 4]); });
  }
  let sv: (Float32Array | null)[] | null = null;
  if (saved) {
    const nSeg = segmentCount(start, L, K);
    sv = [saved.w1, saved.b1, saved.w2, saved.b2];
    sv.forEach((a, i) => { if (mlp || i < 2) check(`saved[${i}]`, a, B * nh * nSeg * sizes[i]); });
  }
  nativeAddon().tttForward(
    mlp ? 1 : 0, B, nh, L, f, h, K, start, x.xq, x.xk, x.xv, x.lr, x.tokenEta, x.w1, x.b1, x.w2, x.b2, x.lnW, x.lnB,
    out, st, sv,
  );
}

/**
 * Backward of a stateless forward from position 0 (the contract of `tttBackwardReference`): `saved`
 * holds the weights at each segment start as written by the forward; every gradient in `g` is
 * overwritten.
 */
export function tttBackwardNative(d: TttDims, x: TttInputs, saved: TttSaved, dOut: Float32Array, g: TttGrads): void {
  const fn = 'tttBackwardNative';
  const { mlp, batch: B, heads: nh, length: L, dim: f, hidden: h, miniBatch: K } = d;
  checkDims(fn, d);
  const c = (name: string, a: unknown, want: number) => checkIn(fn, name, a, want);
  const xn = B * nh * L * f;
  c('xq', x.xq, xn); c('xk', x.xk, xn); c('xv', x.xv, xn); c('dOut', dOut, xn);
  c('lr', x.lr, B * nh * L); c('tokenEta', x.tokenEta, K);
  c('w1', x.w1, nh * f * h); c('b1', x.b1, nh * h);
  if (mlp) { c('w2', x.w2, nh * h * f); c('b2', x.b2, nh * f); }
  c('lnW', x.lnW, nh * f); c('lnB', x.lnB, nh * f);
  const nSeg = Math.ceil(L / K);
  c('saved.w1', saved.w1, B * nh * nSeg * f * h); c('saved.b1', saved.b1, B * nh * nSeg * h);
  if (mlp) { c('saved.w2', saved.w2, B * nh * nSeg * h * f); c('saved.b2', saved.b2, B * nh * nSeg * f); }
  c('dxq', g.dxq, xn); c('dxk', g.dxk, xn); c('dxv', g.dxv, xn); c('dlr', g.dlr, B * nh * L);
  c('dTokenEta', g.dTokenEta, K); c('dw1', g.dw1, nh * f * h); c('db1', g.db1, nh * h);
  if (mlp) { c('dw2', g.dw2, nh * h * f); c('db2', g.db2, nh * f); }
  c('dlnW', g.dlnW, nh * f); c('dlnB', g.dlnB, nh * f);
  nativeAddon().tttBackward(
    mlp ? 1 : 0, B, nh, L, f, h, K, x.xq, x.xk, x.xv, x.lr, x.tokenEta, x.w1, x.b1, x.w2, x.b2, x.lnW, x.lnB,
    [saved.w1, saved.b1, saved.w2, saved.b2], dOut,
    [g.dxq, g.dxk, g.dxv, g.dlr, g.dTokenEta, g.dw1, g.db1, g.dw2, g.db2, g.dlnW, g.dlnB],
  );
}

/** The CPU's TTT table. */
export const cpuTtt: TttKernels = {
  forward: (d, x, out, start, state, saved) =>
    tttForwardNative(d, x as TttInputs, out as unknown as F32, start, state as TttStateBufs | null, saved as TttSaved | null),
  backward: (d, x, saved, dOut, g) => tttBackwardNative(d, x as TttInputs, saved as TttSaved, dOut as unknown as F32, g as TttGrads),
};
