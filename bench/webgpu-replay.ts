// Per-step host overhead of a small model's training step on WebGPU: eager (op code runs and encodes
// every kernel each step) vs a captured step replayed as one command buffer. Prints/returns JSON.
// Run: node --import tsx -e "import('./bench/webgpu-replay.ts').then(m => m.run([]))"
import { captureWebGPUStep, destroyWebGPU, initWebGPU, syncWebGPU, webgpuAdapterName } from '../src/backend/webgpu/index.ts';
import { CausalLM } from '../src/models/index.ts';
import { backward, fromArray, Rng, tidy } from '../src/tensor/index.ts';
import { AdamW } from '../src/train/optim.ts';

export async function run(args: string[] = []): Promise<Record<string, unknown>> {
  const steps = Number(args[0] ?? 20);
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

if (import.meta.url === `file://${process.argv[1]}`) await run(process.argv.slice(2));
