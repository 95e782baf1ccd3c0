// Autoregressive distillation (FBI-LLM): the student learns the teacher's next-token distribution
// (soft cross-entropy on the teacher's logits), optionally mixed with the ground-truth cross-entropy.
import type { CausalLM } from '../models/index.ts';
import * as op from '../ops/index.ts';
import { noGrad } from '../tensor/index.ts';
import type { LossFn } from './trainer.ts';

/** loss = (1 - w) * softCE(student, teacher) + w * CE(student, targets); the teacher runs without gradients. */
export function distillLoss(teacher: CausalLM, gtWeight: number): LossFn {
  teacher.eval();
  return (student, x, y) => {
    const t = noGrad(() => teacher.forward(x));
    const logits = student.forward(x);
    const soft = op.softCrossEntropy(logits, t);
    if (gtWeight === 0) return soft;
    return op.add(op.scale(soft, 1 - gtWeight), op.scale(op.crossEntropy(logits, y), gtWeight));
  };
}
