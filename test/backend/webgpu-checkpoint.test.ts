// A training run on WebGPU saves checkpoints: the trainer reads the device tensors (weights and AdamW
// moments) to the host before writing, as WebGPU has no synchronous readback. The saved weights equal
// the device weights, and the run resumes from them.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { initWebGPU, webgpuAdapterName } from '../../src/backend/webgpu/index.ts';
import { BatchIterator, PackedDataset } from '../../src/data/index.ts';
import { CausalLM } from '../../src/models/index.ts';
import { loadModel, loadOptimizerState } from '../../src/train/checkpoint.ts';
import { train } from '../../src/train/trainer.ts';

let reason = '';
const gpu = await initWebGPU().catch((e: Error) => { reason = e.message; return null; });
console.log(gpu ? `# backend: webgpu (${webgpuAdapterName()})` : `# webgpu checkpoint NOT RUN: ${reason}`);

test('a WebGPU training run writes a checkpoint equal to its device weights, with optimizer moments', { skip: gpu ? false : reason }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'frugal-gpu-ckpt-'));
  try {
    const ids = Int32Array.from({ length: 400 }, (_, i) => (i * 7 + (i >> 3)) % 64);
    const data = () => new BatchIterator(new PackedDataset(ids, 8), { batchSize: 2, seed: 1 });
    const cfg = { vocabSize: 64, hiddenSize: 16, numLayers: 1, numHeads: 2, intermediateSize: 32, maxPositions: 16, linear: 'fbi' as const };
    const model = await new CausalLM(cfg, { seed: 2 }).moveTo('webgpu');
    const r = await train({ model, data: data(), steps: 2, lr: 1e-2, warmup: 0, outDir: dir });
    assert.equal(r.step, 2);
    const saved = new Map(loadModel(join(dir, 'model')).namedParameters());
    for (const [name, t] of model.namedParameters()) {
      assert.deepEqual([...saved.get(name)!.dataSync()], [...(await t.data())], name);
    }
    const opt = loadOptimizerState(join(dir, 'model'));
    assert.ok(opt && opt.step === 2 && opt.moments.size === model.namedParameters().length);
    const again = await new CausalLM(cfg, { seed: 9 }).moveTo('webgpu');
    const r2 = await train({ model: again, data: data(), steps: 3, lr: 1e-2, warmup: 0, outDir: dir, resume: true });
    assert.equal(r2.step, 3);
    assert.equal(r2.losses.length, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
