// Per-step host overhead of a small model's training step on WebGPU: eager (op code runs and encodes
// every kernel each step) vs a captured step replayed as one command buffer. Prints/returns JSON.
// Run: node bin/frugal.js bench webgpu-replay [--steps 20]
import { captureWebGPUStep, destroyWebGPU, initWebGPU, syncWebGPU, webgpuAdapterName } from '../src/backend/webgpu/index.ts';
import { CausalLM } from '../src/models/index.ts';
import { backward, fromArray, Rng, tidy } from '../src/tensor/index.ts';
import { AdamW } from '../src/train/optim.ts';

/** The --key options run() reads (`frugal bench webgpu-replay` rejects any other). */
export const options: readonly string[] = ['steps'];

export async function run(args: Record<string, string | boolean> = {}): Promise<Record<string, unknown>> {
  const steps = Number(args.steps ?? 20);
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`--steps must be a positive integer, got '${args.steps}'`);
  await initWebGPU();
  const cfg = { vocabSize: 64, hiddenSize: 32, numLayers: 2, numHeads: 2, intermediateSize: 64 };
  const B = 2, T = 16;
  const model = new CausalLM(cfg, { seed: 1, device: 'webgpu' });
  const opt = new AdamW(model.namedParameters(), { lr: 1e-3 });
  const rng = new Rng(2);
  const ids = Int32Array.from({ length: B * T }, () => rng.int(cfg.vocabSize));
  const inp = fromArray(ids, [B, T], 'webgpu'), tgt = fromArray(ids.slice(), [B * T], 'webgpu');
  const step = () => {
    const l = tidy(() => { const x = model.loss(inp, tgt); backward(x); return x; });
    opt.update();
    opt.zeroGrad();
    return l;
  };
  step().dispose(); // warm-up: pipelines compiled, optimizer moments created
  await syncWebGPU();
  let t0 = performance.now();
  for (let i = 0; i < steps; i++) step().dispose();
  const eagerHost = (performance.now() - t0) / steps;
  await syncWebGPU();
  const eagerTotal = (performance.now() - t0) / steps;
  const cap = captureWebGPUStep(step);
  await syncWebGPU();
  t0 = performance.now();
  for (let i = 0; i < steps; i++) cap.step.replay({ adam: { step: opt.step + 1 + i } });
  const replayHost = (performance.now() - t0) / steps;
  await syncWebGPU();
  const replayTotal = (performance.now() - t0) / steps;
  const res = {
    bench: 'webgpu-replay', adapter: webgpuAdapterName(), steps, commandsPerStep: cap.step.commandCount,
    eager: { hostMsPerStep: eagerHost, msPerStep: eagerTotal },
    replay: { hostMsPerStep: replayHost, msPerStep: replayTotal },
    hostOverheadRatio: eagerHost / replayHost,
  };
  cap.step.dispose();
  await destroyWebGPU();
  console.log(JSON.stringify(res));
  return res;
}

if (import.meta.url === `file://${process.argv[1]}`) await run({ steps: process.argv[2] ?? '20' });
