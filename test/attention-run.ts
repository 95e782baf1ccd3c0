// One forward and backward pass of fused attention on a backend, outputs read back: shared by the
// WebGPU tile test and the attention probe (bench/probes/webgpu-attention-probe.ts), which compare
// the outputs of one backend (or tile shape) with another's.
import type { Backend, Buf } from '../src/backend/types.ts';

export interface AttnCase { b: number; l: number; s: number; h: number; hkv: number; d: number; causal: boolean }

/** Random q, k, v and dO for a case (q and dO: B x L x H x D; k and v: B x S x Hkv x D). */
export function attnInputs(c: AttnCase, randn: (n: number) => Float32Array): Float32Array[] {
  const qn = c.b * c.l * c.h * c.d, kn = c.b * c.s * c.hkv * c.d;
  return [randn(qn), randn(kn), randn(kn), randn(qn)];
}

/** [o, lse, dq, dk, dv] of the case on `be`, from inputs [q, k, v, dO]; every buffer is freed. */
export async function runAttention(be: Backend, c: AttnCase, ins: Float32Array[]): Promise<Float32Array[]> {
  const p = { ...c, scale: 1 / Math.sqrt(c.d) };
  const [q, k, v, g] = ins.map((x) => be.upload(x.slice()));
  const qn = ins[0].length, kn = ins[1].length;
  const z = (n: number) => be.upload(new Float32Array(n));
  const o = z(qn), lse = z(c.b * c.h * c.l), dq = z(qn), dk = z(kn), dv = z(kn);
  be.attention.forward(q, k, v, o, lse, p);
  be.attention.backward(q, k, v, o, g, lse, dq, dk, dv, p);
  const outs: Float32Array[] = [];
  for (const x of [o, lse, dq, dk, dv]) outs.push((await be.read(x)).slice() as Float32Array);
  for (const x of [q, k, v, g, o, lse, dq, dk, dv]) be.free(x as Buf);
  return outs;
}
