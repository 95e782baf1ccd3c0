// Global-norm clipping computed on the device (AdamW.updateClipped): the same update as the host
// path (gradNorm read back, clipFactor, update) on the CPU and on WebGPU, and on WebGPU a captured
// step with clip replays to the same losses, norms and weights as eager steps.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { captureWebGPUStep, initWebGPU, writeBuffer } from '../../src/backend/webgpu/index.ts';
import type { DeviceName } from '../../src/backend/types.ts';
import { CausalLM } from '../../src/models/index.ts';
import { backward, fromArray, Rng, tidy } from '../../src/tensor/index.ts';
import { AdamW, clipFactor, gradNorm } from '../../src/train/optim.ts';
import { assertClose, DEVICE } from '../helpers.ts';

let reason = '';
try { await initWebGPU(); } catch (e) { reason = (e as Error).message; }
if (reason) console.log(`# webgpu clip tests NOT RUN: ${reason}`);
const gpuOpts = reason ? (DEVICE === 'webgpu' ? {} : { skip: reason }) : {};

const cfg = { vocabSize: 32, hiddenSize: 16, numLayers: 1, numHeads: 2, intermediateSize: 24 };
const B = 2, T = 8;
// Small enough that every step's norm is above it (asserted), so the clip really scales the update.
const MAX_NORM = 0.3;

function batches(n: number): [Int32Array, Int32Array][] {
  const rng = new Rng(21);
  return Array.from({ length: n }, () => {
    const inp = new Int32Array(B * T), tgt = new Int32Array(B * T);
    for (let i = 0; i < B * T; i++) { inp[i] = rng.int(cfg.vocabSize); tgt[i] = (inp[i] * 7 + 3) % cfg.vocabSize; }
    return [inp, tgt] as [Int32Array, Int32Array];
  });
}

async function weights(model: CausalLM): Promise<Float32Array> {
  const parts = await Promise.all(model.parameters().map((p) => p.data()));
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

/** Steps with the host clip (readback) or the device clip; gradScale 0.5 stands for 2-step accumulation. */
async function train(device: DeviceName, onDevice: boolean): Promise<{ norms: number[]; w: Float32Array }> {
  const model = new CausalLM(cfg, { seed: 5, device });
  const opt = new AdamW(model.namedParameters(), { lr: 1e-2, weightDecay: 0.01 });
  const norms: number[] = [];
  for (const [a, b] of batches(4)) {
    tidy(() => backward(model.loss(fromArray(a, [B, T], device), fromArray(b, [B * T], device))));
    if (onDevice) {
      const clip = opt.updateClipped(MAX_NORM, 0.5);
      const [factor, norm] = await clip.data();
      clip.dispose();
      assert.ok(Math.abs(factor - 0.5 * clipFactor(norm, MAX_NORM)) <= 1e-6 * factor, `factor ${factor} for norm ${norm}`);
      norms.push(norm);
    } else {
      const norm = (await gradNorm(model.parameters())) * 0.5;
      opt.update(clipFactor(norm, MAX_NORM) * 0.5);
      norms.push(norm);
    }
    opt.zeroGrad();
  }
  return { norms, w: await weights(model) };
}

for (const device of ['cpu', 'webgpu'] as const) {
  test(`${device}: updateClipped equals the host clip (gradNorm, clipFactor, update)`, device === 'webgpu' ? gpuOpts : {}, async () => {
    if (device === 'webgpu' && reason) assert.fail(reason);
    const host = await train(device, false), dev = await train(device, true);
    for (const n of host.norms) assert.ok(n > MAX_NORM, `norm ${n} should exceed ${MAX_NORM} so the clip acts`);
    assertClose(dev.norms, host.norms, 1e-5, 'grad norms');
    assertClose(dev.w, host.w, 1e-5, 'weights after 4 clipped steps');
  });
}

test('webgpu: a captured step with clip replays to the same losses, norms and weights as eager steps', gpuOpts, async () => {
  if (reason) assert.fail(reason);
  const run = async (replay: boolean) => {
    const model = new CausalLM(cfg, { seed: 5, device: 'webgpu' });
    const opt = new AdamW(model.namedParameters(), { lr: 1e-2, weightDecay: 0.01 });
    const inp = fromArray(new Int32Array(B * T), [B, T], 'webgpu');
    const tgt = fromArray(new Int32Array(B * T), [B * T], 'webgpu');
    const step = () => {
      const loss = tidy(() => { const x = model.loss(inp, tgt); backward(x); return x; });
      const clip = opt.updateClipped(MAX_NORM);
      opt.zeroGrad();
      return { loss, clip };
    };
    const losses: number[] = [], norms: number[] = [];
    let cap: ReturnType<typeof captureWebGPUStep<ReturnType<typeof step>>> | null = null;
    let i = 0;
    for (const [a, b] of batches(5)) {
      i++;
      writeBuffer(inp.buf, a);
      writeBuffer(tgt.buf, b);
      let r: ReturnType<typeof step>;
      // Step 1 is eager in both runs (it creates the optimizer moments).
      if (!replay || i === 1) r = step();
      else if (!cap) { cap = captureWebGPUStep(step); r = cap.result; }
      else { cap.step.replay({ adam: { step: i } }); r = cap.result; }
      losses.push(await r.loss.item());
      norms.push((await r.clip.data())[1]);
      if (r !== cap?.result) { r.loss.dispose(); r.clip.dispose(); }
    }
    const w = await weights(model);
    cap?.step.dispose();
    return { losses, norms, w };
  };
  const eager = await run(false), replayed = await run(true);
  console.log(`# eager norms ${eager.norms.map((x) => x.toFixed(4)).join(' ')}; replay ${replayed.norms.map((x) => x.toFixed(4)).join(' ')}`);
  for (const n of eager.norms) assert.ok(n > MAX_NORM, `norm ${n} should exceed ${MAX_NORM} so the clip acts`);
  assertClose(replayed.losses, eager.losses, 1e-5, 'losses');
  assertClose(replayed.norms, eager.norms, 1e-5, 'grad norms');
  assertClose(replayed.w, eager.w, 1e-5, 'weights');
});
