// WebGPU TTT scan kernels: the webgpu TttKernels (src/backend/contracts.ts), held against the
// reference loops (src/backend/reference/ttt.ts): the same dims, the same buffer
// layouts, the same decoding-state and saved-state semantics. Inputs are packed into two read-only
// buffers (X: xq | xk | xv | lr, PR: tokenEta and the parameters) and all work, state, saved weights and
// gradients go through one scratch buffer, so each kernel binds four storage buffers; GPU-side copies
// move state and results between the caller's buffers and the scratch.
import type { TttDims, TttGrads, TttInputs, TttKernels, TttSaved, TttState } from '../contracts.ts';
import type { Buf } from '../types.ts';
import { GpuBuf } from './pool.ts';
import { Uniform, type Runtime } from './runtime.ts';
import {
  backwardCode, forwardCode, headLayout, paramLayout, scanBindings, sumBlocksKernel, type TttShape, UNIFORM_FIELDS, type UniformValues, WGS,
} from './ttt-wgsl.ts';

type TttInputsGpu = TttInputs;
type TttStateGpu = TttState;
type TttSavedGpu = TttSaved;
type TttGradsGpu = TttGrads;

const gb = (b: Buf | null): GpuBuf => {
  if (!b) throw new Error('internal: missing TTT buffer');
  if (!(b instanceof GpuBuf)) {
    throw new Error("tttScan: a buffer (e.g. the decoding state) is not on the webgpu device; create the state with device 'webgpu' (model.createState does)");
  }
  return b;
};

function shapeOf(d: TttDims): TttShape {
  return { mlp: d.mlp, f: d.dim, h: d.hidden, k: d.miniBatch };
}

/** Sizes of one head's W1, b1, W2, b2. */
function weightSizes(s: TttShape): number[] {
  return s.mlp ? [s.f * s.h, s.h, s.h * s.f, s.f] : [s.f * s.h, s.h, 0, 0];
}

class Bump {
  size = 0;
  at(n: number): number { const o = this.size; this.size += n; return o; }
}

function copy(rt: Runtime, src: GpuBuf, srcOff: number, dst: GpuBuf, dstOff: number, n: number): void {
  rt.copyBytes(src.buffer, srcOff * 4, dst.buffer, dstOff * 4, n * 4);
}

/** Packs xq | xk | xv | lr and the parameters into the two read-only buffers the kernels bind. */
function packInputs(rt: Runtime, d: TttDims, s: TttShape, x: TttInputsGpu) {
  const n = d.batch * d.heads * d.length * d.dim;
  const X = rt.temp(Math.max(1, 3 * n + d.batch * d.heads * d.length), 'f32');
  [x.xq, x.xk, x.xv].forEach((b, i) => copy(rt, gb(b), 0, X, i * n, n));
  copy(rt, gb(x.lr), 0, X, 3 * n, d.batch * d.heads * d.length);
  const pl = paramLayout(s, d.heads);
  const PR = rt.temp(pl.size, 'f32');
  const ws = weightSizes(s);
  copy(rt, gb(x.tokenEta), 0, PR, pl.te, s.k);
  const pw = [pl.w1, pl.b1, pl.w2, pl.b2];
  [x.w1, x.b1, x.w2, x.b2].forEach((b, i) => { if (ws[i]) copy(rt, gb(b), 0, PR, pw[i], d.heads * ws[i]); });
  copy(rt, gb(x.lnW), 0, PR, pl.lnW, d.heads * d.dim);
  copy(rt, gb(x.lnB), 0, PR, pl.lnB, d.heads * d.dim);
  return { X, PR, n, pl };
}

function uniformOf(v: Partial<UniformValues>): Uniform {
  const un = new Uniform();
  for (const k of UNIFORM_FIELDS) un.u(v[k] ?? 0);
  return un;
}

const keyOf = (s: TttShape) => `${s.mlp ? 'mlp' : 'linear'}:${s.f}:${s.h}:${s.k}`;

/** Forward scan (see tttForwardReference): out [B, L, nh * f]; state and saved as in the CPU kernel. */
function tttForwardWebGPU(
  rt: Runtime, d: TttDims, x: TttInputsGpu, out: Buf, start: number, state: TttStateGpu | null, saved: TttSavedGpu | null,
): void {
  const s = shapeOf(d);
  const bh = d.batch * d.heads;
  const { X, PR, n, pl } = packInputs(rt, d, s, x);
  const ws = weightSizes(s);
  const nSeg = segmentCount(start, d.length, d.miniBatch);
  const lay = new Bump();
  lay.at(bh * headLayout(s).size);
  const st = ws.map((w) => lay.at(state ? bh * w : 0));
  const sg = ws.map((w) => lay.at(state ? bh * w : 0));
  const sv = ws.map((w) => lay.at(saved ? bh * nSeg * w : 0));
  const S = rt.temp(lay.size, 'f32');
  const stBufs = state ? [state.w1, state.b1, state.w2, state.b2] : [];
  const sgBufs = state ? [state.gw1, state.gb1, state.gw2, state.gb2] : [];
  const resume = state !== null && start > 0;
  if (resume) {
    ws.forEach((w, i) => {
      if (!w) return;
      copy(rt, gb(stBufs[i]), 0, S, st[i], bh * w);
      copy(rt, gb(sgBufs[i]), 0, S, sg[i], bh * w);
    });
  }
  const un = uniformOf({
    B: d.batch, nh: d.heads, L: d.length, N: n, start, resume: resume ? 1 : 0, useState: state ? 1 : 0,
    save: saved ? 1 : 0, nSeg,
    st0: st[0], st1: st[1], st2: st[2], st3: st[3], sg0: sg[0], sg1: sg[1], sg2: sg[2], sg3: sg[3],
    sv0: sv[0], sv1: sv[1], sv2: sv[2], sv3: sv[3],
    pw0: pl.w1, pw1: pl.b1, pw2: pl.w2, pw3: pl.b2, pte: pl.te, plnW: pl.lnW, plnB: pl.lnB,
  });
  rt.dispatch({ key: `tttFwd:${keyOf(s)}`, ...scanBindings('fwd'), code: () => forwardCode(s) }, [X, PR, gb(out), S], un, [bh]);
  if (state) {
    ws.forEach((w, i) => {
      if (!w) return;
      copy(rt, S, st[i], gb(stBufs[i]), 0, bh * w);
      copy(rt, S, sg[i], gb(sgBufs[i]), 0, bh * w);
    });
  }
  if (saved) {
    const svBufs = [saved.w1, saved.b1, saved.w2, saved.b2];
    ws.forEach((w, i) => { if (w) copy(rt, S, sv[i], gb(svBufs[i]), 0, bh * nSeg * w); });
  }
}

function segmentCount(start: number, length: number, k: number): number {
  let c = 0;
  for (let t = 0; t < length;) { t += Math.min(k - ((start + t) % k), length - t); c++; }
  return c;
}

/** Backward of a stateless forward from position 0 (see tttBackward in the CPU kernel). */
function tttBackwardWebGPU(rt: Runtime, d: TttDims, x: TttInputsGpu, saved: TttSavedGpu, dOut: Buf, g: TttGradsGpu): void {
  const s = shapeOf(d);
  const bh = d.batch * d.heads;
  const { X, PR, n, pl } = packInputs(rt, d, s, x);
  const ws = weightSizes(s);
  const nSeg = segmentCount(0, d.length, d.miniBatch);
  // Per-batch block of parameter gradients (summed over the batch afterwards): dte per head, then the
  // parameters in the packed order.
  const blk = new Bump();
  const gte = blk.at(d.heads * s.k);
  const gw = ws.map((w) => blk.at(d.heads * w));
  const glnW = blk.at(d.heads * d.dim), glnB = blk.at(d.heads * d.dim);
  const lay = new Bump();
  lay.at(bh * headLayout(s).size);
  const sv = ws.map((w) => lay.at(bh * nSeg * w));
  const dxq = lay.at(n), dxk = lay.at(n), dxv = lay.at(n), dlr = lay.at(bh * d.length);
  const pg = lay.at(d.batch * blk.size), pgSum = lay.at(blk.size), teSum = lay.at(s.k);
  const S = rt.temp(lay.size, 'f32');
  const svBufs = [saved.w1, saved.b1, saved.w2, saved.b2];
  ws.forEach((w, i) => { if (w) copy(rt, gb(svBufs[i]), 0, S, sv[i], bh * nSeg * w); });
  const un = uniformOf({
    B: d.batch, nh: d.heads, L: d.length, N: n, nSeg,
    sv0: sv[0], sv1: sv[1], sv2: sv[2], sv3: sv[3], dxq, dxk, dxv, dlr,
    pw0: pl.w1, pw1: pl.b1, pw2: pl.w2, pw3: pl.b2, pte: pl.te, plnW: pl.lnW, plnB: pl.lnB,
    pg, pgBlk: blk.size, gw0: gw[0], gw1: gw[1], gw2: gw[2], gw3: gw[3], gte, glnW, glnB,
  });
  rt.dispatch({ key: `tttBwd:${keyOf(s)}`, ...scanBindings('bwd'), code: () => backwardCode(s) }, [X, PR, gb(dOut), S], un, [bh]);
  const sum = (src: number, stride: number, count: number, len: number, dst: number) => {
    rt.dispatch(sumBlocksKernel, [S], new Uniform().u(src, stride, count, len, dst),
      [Math.ceil(len / WGS)]);
  };
  sum(pg, blk.size, d.batch, blk.size, pgSum);
  sum(pgSum + gte, s.k, d.heads, s.k, teSum);
  copy(rt, S, dxq, gb(g.dxq), 0, n);
  copy(rt, S, dxk, gb(g.dxk), 0, n);
  copy(rt, S, dxv, gb(g.dxv), 0, n);
  copy(rt, S, dlr, gb(g.dlr), 0, bh * d.length);
  copy(rt, S, teSum, gb(g.dTokenEta), 0, s.k);
  const gBufs = [g.dw1, g.db1, g.dw2, g.db2];
  ws.forEach((w, i) => { if (w && gBufs[i]) copy(rt, S, pgSum + gw[i], gb(gBufs[i]), 0, d.heads * w); });
  copy(rt, S, pgSum + glnW, gb(g.dlnW), 0, d.heads * d.dim);
  copy(rt, S, pgSum + glnB, gb(g.dlnB), 0, d.heads * d.dim);
}

/** The webgpu TTT table, bound to a runtime. */
export function webgpuTtt(rt: Runtime): TttKernels {
  return {
    forward: (d, x, out, start, state, saved) => tttForwardWebGPU(rt, d, x, out, start, state, saved),
    backward: (d, x, saved, dOut, g) => tttBackwardWebGPU(rt, d, x, saved, dOut, g),
  };
}
