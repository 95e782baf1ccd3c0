// Fused cross-entropy: hard labels (with ignore index) and soft targets from teacher logits.
import { record } from '../tensor/autograd.ts';
import { full, Tensor } from '../tensor/tensor.ts';
import { affine, div, maximum, mul } from './elementwise.ts';
import { reshape } from './shape.ts';
import { sum } from './reduce.ts';
import { checkIndices, contiguousView, expectDtype, fmt, kernelsOf, like, likeOut, sameDevice } from './util.ts';

export interface CrossEntropyOpts {
  ignoreIndex?: number;
}

function perRow(logits: Tensor, target: Tensor, soft: boolean, ignoreIndex: number): { loss: Tensor; dlogits: Tensor | null } {
  const n = logits.shape.at(-1)!;
  const rows = logits.size / n;
  const loss = likeOut(logits, [rows]);
  const dlogits = logits.requiresGrad ? likeOut(logits) : null;
  kernelsOf(logits).crossEntropy(logits.buf, target.buf, rows, n, soft, ignoreIndex, loss.buf, dlogits?.buf ?? null);
  return { loss, dlogits };
}

/**
 * Mean next-token cross-entropy of logits [..., V] against i32 targets [...]; targets equal to
 * ignoreIndex (default -100) are left out of the mean. Returns a scalar.
 */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: CrossEntropyOpts = {}): Tensor {
  const ignoreIndex = opts.ignoreIndex ?? -100;
  expectDtype('crossEntropy', targets, 'i32', 'targets');
  sameDevice('crossEntropy', logits, targets);
  const v = logits.shape.at(-1)!;
  if (targets.size * v !== logits.size) {
    throw new Error(`crossEntropy: targets ${fmt(targets.shape)} do not match logits ${fmt(logits.shape)}`);
  }
  checkIndices(targets, 0, v, ignoreIndex, (t) => `crossEntropy: target ${t} out of range for vocabulary ${v}`);
  // Where the targets are host memory the kept count is taken there; elsewhere on the device.
  const t = targets.dataSyncMaybe();
  let count = targets.size;
  if (t) {
    count = 0;
    for (let i = 0; i < t.length; i++) if (t[i] !== ignoreIndex) count++;
  }
  const { loss, dlogits } = perRow(logits, targets, false, ignoreIndex);
  const total = sum(loss);
  if (!t) {
    // Targets live on a device that cannot be read synchronously: count the kept targets there.
    const kept = keptCount(targets, ignoreIndex);
    return attachGrad(div(total, kept), logits, dlogits, 1, kept);
  }
  const out = affine(total, 1 / Math.max(count, 1));
  return attachGrad(out, logits, dlogits, 1 / Math.max(count, 1));
}

/** max(1, number of targets != ignoreIndex) as an f32 scalar, computed on the targets' backend. */
function keptCount(targets: Tensor, ignoreIndex: number): Tensor {
  const ignored = like(targets, [targets.size], 'f32');
  const ign = full([1], ignoreIndex, { dtype: 'i32', device: targets.device });
  kernelsOf(targets).binary('eq', targets.buf, contiguousView([targets.size]), ign.buf,
    { shape: [targets.size], strides: [0], offset: 0 }, ignored.buf);
  return maximum(affine(sum(ignored), -1, targets.size), full([], 1, { device: targets.device }));
}

/**
 * Distillation loss: mean over rows of -sum_v softmax(teacher)_v log softmax(student)_v
 * (temperature 1, as FBI-LLM). teacherLogits has the student's shape and gets no gradient.
 */
export function softCrossEntropy(logits: Tensor, teacherLogits: Tensor): Tensor {
  expectDtype('softCrossEntropy', teacherLogits, 'f32', 'teacher logits');
  sameDevice('softCrossEntropy', logits, teacherLogits);
  if (logits.size !== teacherLogits.size || logits.shape.at(-1) !== teacherLogits.shape.at(-1)) {
    throw new Error(`softCrossEntropy: teacher logits ${fmt(teacherLogits.shape)} do not match student logits ${fmt(logits.shape)} (same vocabulary needed)`);
  }
  const rows = logits.size / logits.shape.at(-1)!;
  const { loss, dlogits } = perRow(logits, teacherLogits, true, -1);
  return attachGrad(affine(sum(loss), 1 / rows), logits, dlogits, 1 / rows);
}

/** The kernel already produced d(row loss)/dlogits; scale it by the upstream gradient. */
function attachGrad(out: Tensor, logits: Tensor, dlogits: Tensor | null, factor: number, divisor?: Tensor): Tensor {
  const value = new Tensor(out.buf, out.shape, out.dtype, out.device);
  if (!dlogits) return value;
  return record(value, 'crossEntropy', [logits], (g) => {
    const scaled = divisor ? div(g, divisor) : affine(g, factor);
    return [mul(dlogits, reshape(scaled, []))];
  });
}
