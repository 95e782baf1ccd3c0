// GPU memory stays flat over a long training loop: with tidy() around each step and AdamW, the pool's
// live buffer count and the number of GPU buffers ever created stop growing after warm-up. Also
// checks that a captured training step replays to the same losses as running the step eagerly.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { captureWebGPUStep, initWebGPU, webgpuPoolStats, writeBuffer } from '../../src/backend/webgpu/index.ts';
import { CausalLM } from '../../src/models/index.ts';
import { backward, fromArray, Rng, tidy } from '../../src/tensor/index.ts';
import { AdamW } from '../../src/train/optim.ts';
import { DEVICE } from '../helpers.ts';

let reason = '';
try { await initWebGPU(); } catch (e) { reason = (e as Error).message; }
if (reason) console.log(`# webgpu memory test NOT RUN: ${reason}`);
const opts = reason ? (DEVICE === 'webgpu' ? {} : { skip: reason }) : {};

const cfg = { vocabSize: 32, hiddenSize: 16, numLayers: 1, numHeads: 2, intermediateSize: 24 };
const B = 2, T = 8;
function batch(rng: Rng): [Int32Array, Int32Array] {
  const inp = new Int32Array(B * T), tgt = new Int32Array(B * T);
  for (let i = 0; i < B * T; i++) { inp[i] = rng.int(cfg.vocabSize); tgt[i] = (inp[i] * 7 + 3) % cfg.vocabSize; }
  return [inp, tgt];
}

// The full 1000-step loop (about 3-4 minutes on SwiftShader with 2 cores).
const STEPS = 1000;
const CHECK = STEPS / 4;

test(`GPU memory stays flat over ${STEPS} training steps`, opts, async () => {
  if (reason) assert.fail(reason);
  const model = new CausalLM(cfg, { seed: 3, device: 'webgpu' });
  const opt = new AdamW(model.namedParameters(), { lr: 1e-2, weightDecay: 0.01 });
  const rng = new Rng(11);
  const seen: { step: number; live: number; created: number }[] = [];
  let first = 0, last = 0;
  for (let step = 1; step <= STEPS; step++) {
    const [inp, tgt] = batch(rng);
    const loss = tidy(() => {
      const l = model.loss(fromArray(inp, [B, T], 'webgpu'), fromArray(tgt, [B * T], 'webgpu'));
      backward(l);
      return l;
    });
    opt.update();
    opt.zeroGrad();
    if (step === 1 || step % CHECK === 0) {
      const v = await loss.item();
      if (step === 1) first = v; else last = v;
      const s = webgpuPoolStats();
      seen.push({ step, live: s.live, created: s.created });
    }
    loss.dispose();
  }
  console.log(`# pool over training: ${JSON.stringify(seen)}; loss ${first.toFixed(3)} -> ${last.toFixed(3)}`);
  const warm = seen[1];
  for (const s of seen.slice(2)) {
    assert.equal(s.live, warm.live, `live buffers grew from ${warm.live} (step ${warm.step}) to ${s.live} (step ${s.step})`);
    assert.equal(s.created, warm.created, `GPU buffers created grew from ${warm.created} to ${s.created}`);
  }
  assert.ok(last < first - 0.5, `the model should learn the fixed mapping: loss ${first} -> ${last}`);
});

test('a captured training step replays to the same losses as eager steps', opts, async () => {
  if (reason) assert.fail(reason);
  const run = async (replay: boolean): Promise<number[]> => {
    const model = new CausalLM(cfg, { seed: 5, device: 'webgpu' });
    const opt = new AdamW(model.namedParameters(), { lr: 1e-2, weightDecay: 0.01 });
    const rng = new Rng(21);
    const inp = fromArray(new Int32Array(B * T), [B, T], 'webgpu');
    const tgt = fromArray(new Int32Array(B * T), [B * T], 'webgpu');
    const step = () => {
      const l = tidy(() => { const x = model.loss(inp, tgt); backward(x); return x; });
      opt.update();
      opt.zeroGrad();
      return l;
    };
    const losses: number[] = [];
    let captured: ReturnType<typeof captureWebGPUStep<ReturnType<typeof step>>> | null = null;
    for (let i = 1; i <= 6; i++) {
      const [a, b] = batch(rng);
      writeBuffer(inp.buf, a);
      writeBuffer(tgt.buf, b);
      // Step 1 runs eagerly in both runs: it creates the optimizer moments, which a capture would
      // otherwise record (and replay) as zero-fills.
      if (!replay || i === 1) { const l = step(); losses.push(await l.item()); l.dispose(); continue; }
      if (!captured) { captured = captureWebGPUStep(step); losses.push(await captured.result.item()); continue; }
      captured.step.replay({ adam: { step: i } });
      losses.push(await captured.result.item());
    }
    captured?.step.dispose();
    return losses;
  };
  const eager = await run(false);
  const replayed = await run(true);
  console.log(`# eager ${eager.map((x) => x.toFixed(5)).join(' ')}\n# replay ${replayed.map((x) => x.toFixed(5)).join(' ')}`);
  for (let i = 0; i < eager.length; i++) {
    assert.ok(Math.abs(eager[i] - replayed[i]) <= 1e-5 * Math.abs(eager[i]), `step ${i + 1}: eager ${eager[i]} vs replay ${replayed[i]}`);
  }
});
