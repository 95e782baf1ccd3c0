// Packed models built on WebGPU straight from the bytes of a packed folder (the browser's path,
// packedModelFromFiles): the same logits as the CPU packed model of the same folder, the binarized
// linears kept as sign bits on the GPU (no f32 weight of theirs anywhere), the memory figure, and the
// folders it refuses.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { initWebGPU, webgpuAdapterName, webgpuPoolStats } from '../../src/backend/webgpu/index.ts';
import { packedMemory, packedModelFromFiles } from '../../src/infer/packed-device.ts';
import { loadPackedModel, savePackedModel } from '../../src/infer/packed-linear.ts';
import { PackedLinear } from '../../src/nn/packed.ts';
import { loadPretrained } from '../../src/models/hf.ts';
import type { CausalLM } from '../../src/models/index.ts';
import { fromArray, noGrad } from '../../src/tensor/index.ts';
import { DEVICE, GOLDEN_DIR, relMaxAbs } from '../helpers.ts';

let reason = '';
const gpu = await initWebGPU().catch((e: Error) => { reason = e.message; return null; });
console.log(gpu ? `# backend: webgpu (${webgpuAdapterName()})` : `# webgpu packed models NOT RUN: ${reason}`);
if (!gpu && DEVICE === 'webgpu') test('webgpu backend initializes', () => assert.fail(reason));
if (!gpu) test('webgpu packed models from files (not run: no WebGPU adapter)', { skip: reason }, () => {});

// Whole-model logits go through webgpu matmul/attention/norm kernels with other summation orders
// than the cpu ones: the tolerance of the other WebGPU packed-model parity test.
const MODEL_TOL = 1e-4;
const dir = mkdtempSync(join(tmpdir(), 'frugal-packed-device-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const files = (name: string) => ({ config: readFileSync(join(dir, name, 'config.json')), weights: readFileSync(join(dir, name, 'model.safetensors')) });

if (gpu) {
  const latent = loadPretrained(join(GOLDEN_DIR, 'fbi_checkpoint'));
  savePackedModel(latent, join(dir, 'f16')); // the default: f16 embedding and head
  savePackedModel(latent, join(dir, 'int8'), { head: 'int8' });

  test('a packed folder loaded from bytes on webgpu gives the logits of the cpu packed model', async () => {
    const cpu = loadPackedModel(join(dir, 'f16'));
    const f = files('f16');
    const webgpu = packedModelFromFiles(f.config, f.weights, 'webgpu');
    const ids = Int32Array.from({ length: 2 * 12 }, (_, i) => (i * 37 + 11) % 320);
    const logits = (m: CausalLM, device: 'cpu' | 'webgpu', shape: number[]) =>
      noGrad(() => m.forward(fromArray(ids.slice(0, shape[0] * shape[1]), shape, device))).data();
    for (const shape of [[2, 12], [1, 1]]) {
      const e = relMaxAbs(await logits(webgpu, 'webgpu', shape), await logits(cpu, 'cpu', shape));
      assert.ok(e < MODEL_TOL, `logits [${shape}]: relative max-abs error ${e}`);
    }
  });

  test('the binarized linears stay sign bits on the GPU and the memory figure counts them', () => {
    const before = webgpuPoolStats().liveBytes;
    const f = files('f16');
    const model = packedModelFromFiles(f.config, f.weights, 'webgpu');
    const grown = webgpuPoolStats().liveBytes - before;
    const cpuPacked = loadPackedModel(join(dir, 'f16')).modules().filter((m): m is PackedLinear => m instanceof PackedLinear);
    const devPacked = model.modules().filter((m): m is PackedLinear => m instanceof PackedLinear);
    assert.ok(cpuPacked.length > 0);
    assert.equal(devPacked.length, cpuPacked.length);
    for (const [name, t] of [...model.namedParameters(), ...model.namedBuffers()]) {
      assert.equal(t.device, 'webgpu', name);
      // A binarized linear's only [out, in] f32 tensor would be its weight: it must not exist.
      assert.ok(!/(proj|fc\d?)\.weight$/.test(name) || name.startsWith('lm_head'), `f32 weight ${name} on the GPU`);
    }
    const mem = packedMemory(model);
    assert.equal(mem.linears, cpuPacked.length);
    assert.equal(mem.packedBytes, cpuPacked.reduce((s, l) => s + l.storageBytes, 0));
    assert.equal(mem.binarizedWeights, cpuPacked.reduce((s, l) => s + l.inFeatures * l.outFeatures, 0));
    const scaleBytes = cpuPacked.reduce((s, l) => s + l.storageScaleCount * 4, 0);
    assert.equal(mem.packedAsF32Bytes, mem.binarizedWeights * 4 + scaleBytes);
    const latentBytes = latent.numParameters() * 4;
    assert.equal(mem.otherBytes + mem.packedAsF32Bytes, latentBytes, 'with f32 weights the model is the latent model');
    // What the GPU holds: at least the exact bytes (buffers are bucketed), and less than the f32 model.
    assert.ok(grown >= mem.otherBytes + mem.packedBytes && grown < latentBytes, `GPU buffers grew by ${grown} bytes for ${mem.otherBytes + mem.packedBytes} packed vs ${latentBytes} f32`);
    console.log(`# packed linears ${mem.packedBytes} B on the GPU vs ${mem.packedAsF32Bytes} B as f32; model ${mem.otherBytes + mem.packedBytes} B vs ${latentBytes} B; pool grew ${grown} B`);
  });

  test('packed files it cannot run on the GPU are refused with one clear message', () => {
    const int8 = files('int8');
    assert.throws(() => packedModelFromFiles(int8.config, int8.weights, 'webgpu'), /int8 LM head .*cpu only/);
    const f = files('f16');
    assert.throws(() => packedModelFromFiles(readFileSync(join(GOLDEN_DIR, 'fbi_checkpoint', 'config.json')), f.weights, 'webgpu', 'model/'),
      /model\/ is not a packed model folder/);
    assert.throws(() => packedModelFromFiles(new TextEncoder().encode('{"frugal'), f.weights, 'webgpu'), /config\.json is not valid JSON/);
    assert.throws(() => packedModelFromFiles(f.config, f.weights.subarray(0, 100), 'webgpu'), /not a valid safetensors file/);
    const cfg = JSON.parse(f.config.toString());
    writeFileSync(join(dir, 'v9.json'), JSON.stringify({ ...cfg, frugal_packed: { ...cfg.frugal_packed, version: 9 } }));
    assert.throws(() => packedModelFromFiles(readFileSync(join(dir, 'v9.json')), f.weights, 'webgpu'), /packed format .* is not supported/);
  });

  test('the same bytes build the same packed model on the cpu (one PackedLinear for every backend)', async () => {
    const f = files('f16');
    const fromBytes = packedModelFromFiles(f.config, f.weights, 'cpu'), fromFolder = loadPackedModel(join(dir, 'f16'));
    const ids = fromArray(Int32Array.from({ length: 12 }, (_, i) => (i * 37 + 11) % 320), [1, 12]);
    const a = await noGrad(() => fromBytes.forward(ids)).data(), b = await noGrad(() => fromFolder.forward(ids)).data();
    // The folder loader multiplies the f16 head from its halves; the byte loader widens them to f32 once.
    assert.ok(relMaxAbs(a, b) < 1e-5, `relative max-abs ${relMaxAbs(a, b)}`);
  });
}
