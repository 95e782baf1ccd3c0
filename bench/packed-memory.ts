// GPU memory of a packed 1-bit FBI model as the playground loads it (packedModelFromFiles: sign bits
// and scales uploaded as stored) beside the same model with f32 weights on the GPU (what expanding
// the packed folder on load gave: the latent model's tensors). Both are measured as the growth of the
// WebGPU pool's live buffers while the model is built; one decode step checks the packed model runs.
// Run: node bin/frugal.js bench packed-memory [--preset fbi-130m]
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { destroyWebGPU, initWebGPU, syncWebGPU, webgpuAdapterName, webgpuPoolStats } from '../src/backend/webgpu/index.ts';
import { packedMemory, packedModelFromFiles } from '../src/infer/packed-device.ts';
import { savePackedModel } from '../src/infer/packed-linear.ts';
import { CausalLM } from '../src/models/index.ts';
import { PRESETS } from '../src/models/presets.ts';
import { fromArray, noGrad } from '../src/tensor/index.ts';

/** The --key options run() reads (`frugal bench packed-memory` rejects any other). */
export const options: readonly string[] = ['preset'];

export async function run(args: Record<string, string | boolean> = {}): Promise<Record<string, unknown>> {
  const preset = String(args.preset ?? 'fbi-130m');
  const fbiPresets = Object.keys(PRESETS).filter((n) => PRESETS[n].linear === 'fbi');
  if (!fbiPresets.includes(preset)) throw new Error(`--preset must be one of ${fbiPresets.join(', ')}, got '${preset}'`);
  await initWebGPU();
  const latent = new CausalLM(PRESETS[preset], { seed: 1 });
  const dir = mkdtempSync(join(tmpdir(), 'frugal-packed-memory-'));
  try {
    savePackedModel(latent, dir);
    const config = readFileSync(join(dir, 'config.json')), weights = readFileSync(join(dir, 'model.safetensors'));
    const live = () => webgpuPoolStats().liveBytes;

    let before = live();
    const packed = packedModelFromFiles(config, weights, 'webgpu');
    await syncWebGPU();
    const packedPool = live() - before;
    const mem = packedMemory(packed);
    const logits = noGrad(() => packed.forward(fromArray(Int32Array.of(1), [1, 1], 'webgpu')));
    const finite = (await logits.data()).every(Number.isFinite);
    logits.dispose();
    for (const [, t] of [...packed.namedParameters(), ...packed.namedBuffers()]) t.dispose();

    before = live();
    const f32 = await latent.moveTo('webgpu');
    await syncWebGPU();
    const f32Pool = live() - before;
    const res = {
      bench: 'packed-memory', adapter: webgpuAdapterName(), preset, parameters: latent.numParameters(),
      storedBytes: weights.length,
      packed: { poolBytes: packedPool, weightBytes: mem.otherBytes + mem.packedBytes, linearBytes: mem.packedBytes, decodeStepFinite: finite },
      f32: { poolBytes: f32Pool, weightBytes: f32.numParameters() * 4, linearBytes: mem.packedAsF32Bytes },
      poolRatio: f32Pool / packedPool,
      linearRatio: mem.packedAsF32Bytes / mem.packedBytes,
    };
    console.log(JSON.stringify(res));
    return res;
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await destroyWebGPU();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await run({ preset: process.argv[2] ?? 'fbi-130m' });
