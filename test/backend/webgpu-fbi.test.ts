// Packed 1-bit FBI matmul on WebGPU against the CPU packed kernel (every scale pattern, batch-1 decode
// and small batches, rows that are not whole words), and a packed tiny model run on webgpu against the
// same packed model on the cpu.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { fbiInt8Matmul, fbiPackedMatmul, fbiPackSigns, fbiRepack } from '../../src/backend/cpu/fbi.ts';
import { initWebGPU, webgpuAdapterName, webgpuInt8Mma, webgpuRuntime } from '../../src/backend/webgpu/index.ts';
import type { Buf } from '../../src/backend/types.ts';
import { modelFromPacked, packModel } from '../../src/infer/packed-linear.ts';
import { setPackedActivations } from '../../src/nn/packed.ts';
import { loadPretrained } from '../../src/models/hf.ts';
import type { CausalLM } from '../../src/models/index.ts';
import { fromArray, noGrad, Rng, type Tensor } from '../../src/tensor/index.ts';
import { DEVICE, GOLDEN_DIR, randArray, relMaxAbs } from '../helpers.ts';

let reason = '';
const gpu = await initWebGPU().catch((e: Error) => { reason = e.message; return null; });
console.log(gpu ? `# backend: webgpu (${webgpuAdapterName()})` : `# webgpu packed FBI NOT RUN: ${reason}`);
if (!gpu && DEVICE === 'webgpu') test('webgpu backend initializes', () => assert.fail(reason));
if (!gpu) test('webgpu packed FBI (not run: no WebGPU adapter)', { skip: reason }, () => {});

const KERNEL_TOL = 1e-5; // relative to the cpu result's max-abs
// Whole-model logits also go through webgpu matmul/attention/norm kernels (different summation
// orders than the cpu ones): the golden output tolerance.
const MODEL_TOL = 1e-4;
const PATTERNS = ['column', 'row', 'single'] as const;

if (gpu) {
  test('packed matmul on webgpu = cpu packed kernel (all scale patterns, decode and small batches)', async () => {
    const rng = new Rng(3);
    const kernel = (x: Buf, bits: Buf, alpha: Buf, beta: Buf, pattern: 'column' | 'row' | 'single', rows: number, inF: number, outF: number, y: Buf) =>
      gpu.fbi.packedMatmul({ x, bits, alpha, beta, pattern, rows, inF, outF, y });
    // rows: 1 (decode kernel; in 1000: many words per lane, in 2500: two staged chunks of 64 words), 5 and 9
    // (partial tiles of 4 tokens); in: whole and partial words; out > 64 threads and not a multiple of 16.
    for (const pattern of PATTERNS) {
      for (const [rows, inF, outF] of [[1, 64, 33], [5, 100, 7], [9, 160, 20], [1, 37, 9], [3, 300, 130], [1, 1000, 70], [1, 2500, 41]]) {
        const w = randArray(outF * inF, rng);
        const ns = pattern === 'column' ? inF : pattern === 'row' ? outF : 1;
        const alpha = Float32Array.from(randArray(ns, rng), (v) => 0.1 + Math.abs(v));
        const beta = randArray(ns, rng, 0.1);
        const x = randArray(rows * inF, rng);
        const bits = fbiPackSigns(w, inF, outF);
        const ref = new Float32Array(rows * outF);
        fbiPackedMatmul(x, bits, alpha, beta, pattern, rows, inF, outF, ref);
        const y = gpu.upload(new Float32Array(rows * outF));
        kernel(gpu.upload(x), gpu.upload(new Int32Array(bits.buffer)), gpu.upload(alpha), gpu.upload(beta), pattern, rows, inF, outF, y);
        const e = relMaxAbs(await gpu.read(y), ref);
        assert.ok(e < KERNEL_TOL, `${pattern} [${rows},${inF}]x[${outF}]: error ${e}`);
        // int8 activations: the same quantization as the CPU's int8 kernel, integer sums on both.
        const ref8 = new Float32Array(rows * outF);
        fbiInt8Matmul(x, fbiRepack(bits, inF, outF), alpha, beta, pattern, rows, inF, outF, ref8);
        const y8 = gpu.upload(new Float32Array(rows * outF));
        gpu.fbi.int8Matmul({ x: gpu.upload(x), bits: gpu.upload(new Int32Array(bits.buffer)), alpha: gpu.upload(alpha), beta: gpu.upload(beta),
          pattern, rows, inF, outF, y: y8 });
        const e8 = relMaxAbs(await gpu.read(y8), ref8);
        assert.ok(e8 < KERNEL_TOL, `int8 ${pattern} [${rows},${inF}]x[${outF}]: error ${e8}`);
      }
    }
    assert.throws(() => kernel(gpu.upload(new Float32Array(4)), gpu.upload(new Int32Array(2)), gpu.upload(new Float32Array(40)),
      gpu.upload(new Float32Array(40)), 'column', 1, 40, 1, gpu.upload(new Float32Array(1))), /x has 4 elements, needs 40/);
  });

  // The tensor-core path (FRUGAL_WEBGPU_SUBGROUP_MATRIX=1 on a device whose self-check passes) sums the
  // same integers as the scalar int8 kernel: the outputs must be identical, bit for bit.
  const mma = webgpuInt8Mma();
  test('int8 packed matmul on subgroup matrices = the scalar int8 kernel, bit for bit', { skip: mma ? false : 'no int8 subgroup matrices on this device (or FRUGAL_WEBGPU_SUBGROUP_MATRIX unset)' }, async () => {
    const rt = webgpuRuntime();
    const rng = new Rng(5);
    // Whole and partial 64-token / 128-output blocks, partial words, several K steps.
    for (const pattern of PATTERNS) {
      for (const [rows, inF, outF] of [[16, 64, 33], [64, 300, 130], [100, 2048, 256], [130, 96, 200]]) {
        const w = randArray(outF * inF, rng);
        const ns = pattern === 'column' ? inF : pattern === 'row' ? outF : 1;
        const alpha = Float32Array.from(randArray(ns, rng), (v) => 0.1 + Math.abs(v));
        const beta = randArray(ns, rng, 0.1);
        const x = randArray(rows * inF, rng);
        const bits = fbiPackSigns(w, inF, outF);
        const run = async () => {
          const y = gpu.upload(new Float32Array(rows * outF));
          gpu.fbi.int8Matmul({ x: gpu.upload(x), bits: gpu.upload(new Int32Array(bits.buffer)), alpha: gpu.upload(alpha), beta: gpu.upload(beta),
            pattern, rows, inF, outF, y });
          return (await gpu.read(y)) as Float32Array;
        };
        const viaMma = await run();
        rt.int8Mma = null;
        let scalar: Float32Array;
        try { scalar = await run(); } finally { rt.int8Mma = mma; }
        let diff = 0;
        for (let i = 0; i < scalar.length; i++) if (!Object.is(scalar[i], viaMma[i])) diff++;
        assert.equal(diff, 0, `${pattern} [${rows},${inF}]x[${outF}]: ${diff} outputs differ from the scalar kernel`);
        const ref8 = new Float32Array(rows * outF);
        fbiInt8Matmul(x, fbiRepack(bits, inF, outF), alpha, beta, pattern, rows, inF, outF, ref8);
        const e = relMaxAbs(viaMma, ref8);
        assert.ok(e < KERNEL_TOL, `${pattern} [${rows},${inF}]x[${outF}] vs cpu int8: error ${e}`);
      }
    }
  });

  async function toWebGPU(model: CausalLM): Promise<CausalLM> {
    for (const [name, t] of [...model.namedParameters(), ...model.namedBuffers()]) {
      model.setTensor(name, fromArray((await t.data()).slice(), t.shape, 'webgpu'));
    }
    for (const p of model.parameters()) p.requiresGrad = false;
    return model;
  }

  test('a packed model gives the same logits on webgpu as on the cpu (prompt and batch-1 decode)', async () => {
    const latent = loadPretrained(join(GOLDEN_DIR, 'fbi_checkpoint'));
    const data = packModel(latent);
    const cpu = modelFromPacked(data);
    // Both activation modes, each against the CPU in the same mode.
    for (const mode of ['f32', 'int8'] as const) {
      setPackedActivations(cpu, mode);
      const webgpu = await toWebGPU(modelFromPacked(data));
      setPackedActivations(webgpu, mode);
      const ids = Int32Array.from({ length: 2 * 12 }, (_, i) => (i * 37 + 11) % 320);
      const logits = async (m: CausalLM, a: Int32Array, shape: number[]) => {
        const t: Tensor = noGrad(() => m.forward(fromArray(a.slice(), shape, m === cpu ? 'cpu' : 'webgpu')));
        return t.data();
      };
      for (const [a, shape] of [[ids, [2, 12]], [Int32Array.of(42), [1, 1]]] as const) {
        const ref = await logits(cpu, a, [...shape]);
        const e = relMaxAbs(await logits(webgpu, a, [...shape]), ref);
        assert.ok(e < MODEL_TOL, `${mode} logits [${shape}]: relative max-abs error ${e}`);
      }
    }
  });
}
