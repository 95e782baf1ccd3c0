// Shape ops. reshape shares storage (no copy); permute, slice, concat, expand and gather copy.
import { record } from '../tensor/autograd.ts';
import { numel, type Shape, SlicePiece, Tensor, zeros } from '../tensor/tensor.ts';
import { axisOf, contiguousView, expectDtype, fmt, kernelsOf, like, likeOut, sameDevice, splitAt } from './util.ts';
import { contiguousStrides } from '../tensor/autograd.ts';

/** Same data, new shape (one dim may be -1). Shares storage. */
export function reshape(x: Tensor, shape: Shape): Tensor {
  const s = [...shape];
  const neg = s.indexOf(-1);
  if (neg >= 0) {
    const rest = s.reduce((p, v, i) => (i === neg ? p : p * v), 1);
    if (rest === 0 || x.size % rest !== 0) throw new Error(`reshape: cannot infer -1 reshaping ${fmt(x.shape)} to ${fmt(shape)}`);
    s[neg] = x.size / rest;
  }
  if (numel(s) !== x.size) throw new Error(`reshape: ${fmt(x.shape)} (${x.size} elements) cannot become ${fmt(shape)}`);
  const out = new Tensor(x.buf, s, x.dtype, x.device);
  return record(out, 'reshape', [x], (g) => [reshape(g, x.shape)]);
}

export function permute(x: Tensor, perm: number[]): Tensor {
  if (perm.length !== x.ndim || [...perm].sort().some((p, i) => p !== i)) {
    throw new Error(`permute: ${fmt(perm)} is not a permutation of ${x.ndim} axes`);
  }
  const st = contiguousStrides(x.shape);
  const shape = perm.map((p) => x.shape[p]);
  const out = likeOut(x, shape);
  kernelsOf(x).copyStrided(x.buf, { shape, strides: perm.map((p) => st[p]), offset: 0 }, out.buf);
  const inv = new Array(perm.length);
  perm.forEach((p, i) => (inv[p] = i));
  return record(out, 'permute', [x], (g) => [permute(g, inv)]);
}

export function transpose(x: Tensor, a = -2, b = -1): Tensor {
  const i = axisOf('transpose', a, x.ndim), j = axisOf('transpose', b, x.ndim);
  const perm = [...Array(x.ndim).keys()];
  perm[i] = j;
  perm[j] = i;
  return permute(x, perm);
}

/** x[..., start:end, ...] along one axis (copies). */
export function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  const ax = axisOf('slice', axis, x.ndim);
  const n = x.shape[ax];
  if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= n)) {
    throw new Error(`slice: range ${start}:${end} out of bounds for axis ${ax} of size ${n} in ${fmt(x.shape)}`);
  }
  const shape = [...x.shape];
  shape[ax] = end - start;
  const st = contiguousStrides(x.shape);
  const out = likeOut(x, shape);
  kernelsOf(x).copyStrided(x.buf, { shape, strides: st, offset: start * st[ax] }, out.buf);
  // The gradient is a piece of x's: backward() assembles all slices of x at once (assembleSlices).
  return record(out, 'slice', [x], (g) => [start === 0 && end === n ? g : new SlicePiece(g, ax, start, end)]);
}

/**
 * The dense gradient of a tensor of `shape` from its slices' gradients: one concat of the pieces and
 * zeros for the ranges no slice covered. Pieces along different axes or overlapping ranges are padded
 * with zeros one by one and summed.
 */
function assembleSlices(pieces: SlicePiece[], shape: readonly number[]): Tensor {
  const ax = pieces[0].axis;
  const sorted = [...pieces].sort((a, b) => a.start - b.start);
  const disjoint = sorted.every((p, i) => p.axis === ax && (i === 0 || p.start >= sorted[i - 1].end));
  const padded = (ps: SlicePiece[]) => {
    const parts: Tensor[] = [];
    let at = 0;
    for (const p of ps) {
      if (p.start > at) parts.push(zerosAlong(p.g, shape, p.axis, p.start - at));
      parts.push(p.g);
      at = p.end;
    }
    if (at < shape[ps[0].axis]) parts.push(zerosAlong(ps[0].g, shape, ps[0].axis, shape[ps[0].axis] - at));
    return parts.length === 1 ? parts[0] : concat(parts, ps[0].axis);
  };
  if (disjoint) return padded(sorted);
  return pieces.map((p) => padded([p])).reduce((acc, t) => add2(acc, t));
}
SlicePiece.assemble = assembleSlices;

function add2(a: Tensor, b: Tensor): Tensor {
  const out = likeOut(a);
  const v = contiguousView(a.shape);
  kernelsOf(a).binary('add', a.buf, v, b.buf, v, out.buf);
  return out;
}

function zerosAlong(g: Tensor, shape: readonly number[], ax: number, len: number): Tensor {
  const s = [...shape];
  s[ax] = len;
  return zeros(s, { device: g.device });
}

export function concat(xs: Tensor[], axis: number): Tensor {
  if (xs.length === 0) throw new Error('concat: needs at least one tensor');
  sameDevice('concat', ...xs);
  const ax = axisOf('concat', axis, xs[0].ndim);
  for (const t of xs) {
    if (t.ndim !== xs[0].ndim || t.shape.some((s, i) => i !== ax && s !== xs[0].shape[i]) || t.dtype !== xs[0].dtype) {
      throw new Error(`concat: shapes ${xs.map((t) => fmt(t.shape)).join(', ')} differ outside axis ${ax}`);
    }
  }
  const shape = [...xs[0].shape];
  shape[ax] = xs.reduce((p, t) => p + t.shape[ax], 0);
  const out = likeOut(xs[0], shape);
  const [outer, , inner] = splitAt(shape, ax);
  const k = kernelsOf(xs[0]);
  let off = 0;
  for (const t of xs) {
    const w = t.shape[ax] * inner;
    // Row-block copies: outer blocks of w contiguous elements each.
    if (outer === 1) k.copy(t.buf, 0, out.buf, off * inner, w);
    else {
      // Scatter via a strided view of the output is not a kernel; copy each outer block.
      for (let o = 0; o < outer; o++) k.copy(t.buf, o * w, out.buf, o * shape[ax] * inner + off * inner, w);
    }
    off += t.shape[ax];
  }
  return record(out, 'concat', xs, (g) => {
    let o = 0;
    return xs.map((t) => {
      const r = slice(g, ax, o, o + t.shape[ax]);
      o += t.shape[ax];
      return r;
    });
  });
}

/** Broadcast to a larger shape (copies). */
export function expand(x: Tensor, shape: Shape): Tensor {
  const out = likeOut(x, shape);
  kernelsOf(x).copyStrided(x.buf, broadcastView(x.shape, shape), out.buf);
  return record(out, 'expand', [x], (g) => [sumTo(g, x.shape)]);
}

/** The strided view that reads x as if broadcast to `to`. */
export function broadcastView(from: Shape, to: Shape) {
  if (from.length > to.length) throw new Error(`cannot broadcast ${fmt(from)} to ${fmt(to)}`);
  const st = contiguousStrides(from);
  const pad = to.length - from.length;
  const strides = to.map((d, i) => {
    if (i < pad) return 0;
    const f = from[i - pad];
    if (f === d) return f === 1 ? 0 : st[i - pad];
    if (f === 1) return 0;
    throw new Error(`cannot broadcast ${fmt(from)} to ${fmt(to)}`);
  });
  return { shape: [...to], strides, offset: 0 };
}

export function broadcastShapes(op: string, a: Shape, b: Shape): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1, y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error(`${op}: shapes ${fmt(a)} and ${fmt(b)} do not broadcast`);
    out.push(x === 1 ? y : x);
  }
  return out;
}

/** Sums a broadcast gradient back down to `shape`. */
export function sumTo(g: Tensor, shape: Shape): Tensor {
  if (g.ndim === shape.length && g.shape.every((s, i) => s === shape[i])) return g;
  let cur = g;
  const pad = g.ndim - shape.length;
  for (let i = 0; i < g.ndim; i++) {
    const target = i < pad ? 1 : shape[i - pad];
    if (cur.shape[i] !== target) cur = sumAxisKeep(cur, i);
  }
  return reshape(cur, shape);
}

function sumAxisKeep(x: Tensor, axis: number): Tensor {
  const [outer, n, inner] = splitAt(x.shape, axis);
  const shape = [...x.shape];
  shape[axis] = 1;
  const out = likeOut(x, shape);
  kernelsOf(x).reduce('sum', x.buf, outer, n, inner, out.buf);
  return out;
}

/** Rows of x selected along axis 0 by i32 indices: out[i, ...] = x[idx[i], ...]. */
export function indexSelect(x: Tensor, idx: Tensor): Tensor {
  expectDtype('indexSelect', idx, 'i32', 'indices');
  sameDevice('indexSelect', x, idx);
  const width = x.size / x.shape[0];
  const out = likeOut(x, [...idx.shape, ...x.shape.slice(1)]);
  kernelsOf(x).gather(x.buf, idx.buf, idx.size, width, out.buf);
  return record(out, 'indexSelect', [x], (g) => {
    const gx = zeros(x.shape, { device: x.device });
    kernelsOf(g).scatterAdd(g.buf, idx.buf, idx.size, width, gx.buf);
    return [gx];
  });
}

/** Contiguous copy (for API symmetry with views). */
export function contiguous(x: Tensor): Tensor {
  const out = likeOut(x);
  kernelsOf(x).copyStrided(x.buf, contiguousView(x.shape), out.buf);
  return record(out, 'contiguous', [x], (g) => [g]);
}
