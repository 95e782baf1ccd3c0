// Define-by-run reverse mode. Ops call record() to attach a backward rule; backward() walks the tape
// in reverse topological order and accumulates gradients on leaves (dense, or row-sparse lists for
// parameters that allow it).
import { keep } from './scope.ts';
import { RowSparse, SlicePiece, Tensor, type Grad, type Node, emptyUninit, full } from './tensor.ts';

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs fn without recording the tape (inference, teacher forward, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Attaches a backward rule to out if any input needs a gradient. */
export function record(out: Tensor, op: string, inputs: Tensor[], backward: (g: Tensor) => Grad[]): Tensor {
  if (!gradEnabled || !inputs.some((t) => t.requiresGrad)) return out;
  out.requiresGrad = true;
  out.node = { op, inputs, backward } satisfies Node;
  return out;
}

function addInto(acc: Tensor, g: Tensor): void {
  const k = acc.backend.kernels;
  const v = { shape: acc.shape, strides: contiguousStrides(acc.shape), offset: 0 };
  k.binary('add', acc.buf, v, g.buf, v, acc.buf);
}

export function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** Dense copy of a row-sparse gradient (factored gradients are expanded row by row by a kernel). */
export function densify(g: RowSparse, shape: readonly number[], device = g.indices.device): Tensor {
  const out = full(shape, 0, { device });
  const width = shape.length > 1 ? shape[shape.length - 1] : 1;
  if (g.factors) {
    if (g.width !== width) throw new Error(`internal: factored gradient of width ${g.width} for shape [${shape}]`);
    out.backend.kernels.factoredRows(g.factoredBufs()!, out.buf, g.indices.buf);
    return out;
  }
  out.backend.kernels.scatterAdd(g.values.buf, g.indices.buf, g.indices.size, width, out.buf);
  return out;
}

/** Reverse-mode pass from a scalar (or with an explicit seed gradient). */
export function backward(root: Tensor, seed?: Tensor): void {
  if (!root.requiresGrad) throw new Error('backward(): the tensor does not require a gradient (no parameter fed into it)');
  if (!seed && root.size !== 1) throw new Error(`backward(): needs a seed gradient for a non-scalar [${root.shape}]`);
  const order: Tensor[] = [];
  const seen = new Set<number>();
  // Iterative post-order DFS (deep models overflow a recursive one).
  const stack: [Tensor, number][] = [[root, 0]];
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    if (i === 0 && seen.has(t.id)) { stack.pop(); continue; }
    seen.add(t.id);
    const inputs = t.node?.inputs ?? [];
    if (i < inputs.length) {
      top[1]++;
      const c = inputs[i];
      if (c.requiresGrad && !seen.has(c.id)) stack.push([c, 0]);
    } else {
      stack.pop();
      order.push(t);
    }
  }
  const grads = new Map<number, Tensor>();
  const pieces = new Map<number, SlicePiece[]>();
  grads.set(root.id, seed ?? full(root.shape, 1, { device: root.device }));
  noGrad(() => {
    for (let oi = order.length - 1; oi >= 0; oi--) {
      const t = order[oi];
      // Every consumer of t comes before it in this order: its slices' pieces are all in.
      const ps = pieces.get(t.id);
      if (ps) {
        pieces.delete(t.id);
        push(grads, t, SlicePiece.assemble!(ps, t.shape));
      }
      const g = grads.get(t.id);
      if (!g) continue;
      grads.delete(t.id);
      if (!t.node) {
        accumulateLeaf(t, g);
        continue;
      }
      const ins = t.node.backward(g);
      t.node.inputs.forEach((inp, j) => {
        const gi = ins[j];
        if (!gi || !inp.requiresGrad) return;
        if (gi instanceof SlicePiece) {
          const list = pieces.get(inp.id);
          if (list) list.push(gi);
          else pieces.set(inp.id, [gi]);
          return;
        }
        if (gi instanceof RowSparse) {
          // A sparse leaf keeps the gradient as given (rows, or the factored terms).
          if (!inp.node && inp.sparseGrad) { gi.tensors().forEach(keep); inp.sparseGrads.push(gi); return; }
          const d = densify(gi, inp.shape, inp.device);
          push(grads, inp, d);
          return;
        }
        if (gi.shape.length !== inp.shape.length || gi.shape.some((s, q) => s !== inp.shape[q])) {
          throw new Error(`internal: ${t.node!.op} backward gave [${gi.shape}] for input [${inp.shape}]`);
        }
        push(grads, inp, gi);
      });
    }
  });
}

// Backward rules may hand the same tensor to several inputs, so pending gradients are summed out of
// place; intermediates are released by the caller's tidy() scope.
function push(grads: Map<number, Tensor>, t: Tensor, g: Tensor): void {
  const prev = grads.get(t.id);
  if (!prev) { grads.set(t.id, g); return; }
  // One out-of-place add (not a copy then an in-place add): one kernel, one pass over memory.
  const sum = emptyUninit(prev.shape, { device: prev.device });
  const v = { shape: prev.shape, strides: contiguousStrides(prev.shape), offset: 0 };
  sum.backend.kernels.binary('add', prev.buf, v, g.buf, v, sum.buf);
  grads.set(t.id, sum);
}

function copyOf(g: Tensor): Tensor {
  const own = emptyUninit(g.shape, { device: g.device });
  own.backend.kernels.copy(g.buf, 0, own.buf, 0, g.size);
  return own;
}

// A leaf owns its .grad buffer (accumulated in place across micro-batches).
function accumulateLeaf(t: Tensor, g: Tensor): void {
  if (!t.grad) t.grad = keep(copyOf(g));
  else addInto(t.grad, g);
}
