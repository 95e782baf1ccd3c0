// A PEER language model whose expert tables are above the WebGPU binding limit (lowered here to
// 600 KB so a 4096 x 64 table, 1 MiB, splits in two while every other tensor stays whole) trains
// the same as on the CPU: eager steps, then the step captured and replayed, global-norm clip and
// AdamW on the device.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { initWebGPU, webgpuAdapterName, webgpuStorageParts, captureWebGPUStep, syncWebGPU } from '../../src/backend/webgpu/index.ts';

const LIMIT = 600_000;
let reason = '';
const gpu = await initWebGPU({ maxBindingBytes: LIMIT }).catch((e: Error) => { reason = e.message; return null; });
const { assertClose, DEVICE } = await import('../helpers.ts');
const { CausalLM } = await import('../../src/models/index.ts');
const { DEFAULT_PEER } = await import('../../src/models/config.ts');
const { AdamW } = await import('../../src/train/optim.ts');
const { backward, fromArray, Rng, tidy } = await import('../../src/tensor/index.ts');

console.log(gpu ? `# backend: webgpu (${webgpuAdapterName()}), binding limit lowered to ${LIMIT} bytes` : `# webgpu split PEER model NOT RUN: ${reason}`);
if (!gpu && DEVICE === 'webgpu') test('webgpu backend initializes', () => assert.fail(reason));
if (!gpu) test('webgpu split PEER model (not run: no WebGPU adapter)', { skip: reason }, () => {});

if (gpu) {
  test('PEER model with split expert tables: 4 training steps (2 eager, 1 captured, 1 replayed) = cpu', async () => {
    const config = {
      vocabSize: 256, hiddenSize: 64, numLayers: 2, numHeads: 4, intermediateSize: 160, maxPositions: 64,
      ffn: ['swiglu', 'peer'] as ('swiglu' | 'peer')[],
      peer: { ...DEFAULT_PEER, numExperts: 64 * 64, heads: 4, topk: 4, dimKey: 32 },
    };
    const B = 2, L = 16;
    const rng = new Rng(5);
    const ids = Int32Array.from({ length: B * (L + 1) }, () => rng.int(256));
    const inpA = new Int32Array(B * L), tgtA = new Int32Array(B * L);
    for (let b = 0; b < B; b++) {
      inpA.set(ids.subarray(b * (L + 1), b * (L + 1) + L), b * L);
      tgtA.set(ids.subarray(b * (L + 1) + 1, (b + 1) * (L + 1)), b * L);
    }
    const losses: number[][] = [], norms: number[][] = [], tables: Float32Array[] = [];
    for (const device of ['cpu', 'webgpu'] as const) {
      const model = new CausalLM(config, { seed: 0, device });
      const named = model.namedParameters();
      const table = named.find(([n]) => n.endsWith('weight_down_embed.weight') || n.endsWith('down.weight'))?.[1];
      assert.ok(table && table.shape[0] === 4096, 'the model has a 4096-expert table');
      if (device === 'webgpu') {
        assert.equal(webgpuStorageParts(table.buf), 2, 'the expert table is split');
        for (const [n, p] of named) if (p !== table && p.shape[0] !== 4096) assert.equal(webgpuStorageParts(p.buf), 1, `${n} is whole`);
      }
      const opt = new AdamW(named, { lr: 3e-3, weightDecay: 0.1 });
      const inp = fromArray(inpA.slice(), [B, L], device), tgt = fromArray(tgtA.slice(), [B * L], device);
      const step = () => {
        const loss = tidy(() => { const l = model.loss(inp, tgt); backward(l); return l; });
        const clip = opt.updateClipped(1.0);
        opt.zeroGrad();
        return { loss, clip };
      };
      const ls: number[] = [], ns: number[] = [];
      const record = async (r: { loss: typeof inp; clip: typeof inp }) => { ls.push(await r.loss.item()); ns.push((await r.clip.data())[1]); };
      for (let i = 0; i < 2; i++) await record(step());
      if (device === 'cpu') {
        for (let i = 0; i < 2; i++) await record(step());
      } else {
        const cap = captureWebGPUStep(step);
        await syncWebGPU();
        await record(cap.result);
        cap.step.replay({ adam: { step: opt.step + 1 } });
        opt.step++;
        await record(cap.result);
        cap.step.dispose();
      }
      losses.push(ls);
      norms.push(ns);
      tables.push((await table.data()) as Float32Array);
    }
    assertClose(losses[1], losses[0], 1e-4, 'losses of the 4 steps');
    assertClose(norms[1], norms[0], 1e-3, 'gradient norms of the 4 steps');
    assertClose(tables[1], tables[0], 1e-3, 'expert table after 4 steps');
    assert.ok(losses[0][3] < losses[0][0], `the loss falls over the steps (${losses[0].join(', ')})`);
  });
}
