// Golden parity with ttt.py TTTForCausalLM (linear / mlp x Mamba / Transformer backbones): logits,
// next-token loss, every parameter gradient, and cached decoding (prefill 32 then single tokens).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { saveCheckpointFolder } from '../../src/io/hf-folder.ts';
import type { TensorMap } from '../../src/io/raw.ts';
import { readSafetensors } from '../../src/io/safetensors.ts';
import { CausalLM } from '../../src/models/index.ts';
import '../../src/models/ttt-plugin.ts';
import { fromHf, loadPretrained } from '../../src/models/hf.ts';
import * as op from '../../src/ops/index.ts';
import { backward, fromArray, noGrad, type Tensor } from '../../src/tensor/index.ts';
import { DEVICE, GOLDEN_DIR, relMaxAbs, relNorm } from '../helpers.ts';

// Tolerances of the golden README: outputs max-abs 1e-4 relative, loss 1e-5 relative, grads 1e-3 relative norm.
const OUT_TOL = 1e-4, LOSS_TOL = 1e-5, GRAD_TOL = 1e-3;

for (const name of ['ttt_linear_mamba_tiny', 'ttt_linear_transformer_tiny', 'ttt_mlp_mamba_tiny', 'ttt_mlp_transformer_tiny']) {
  test(`golden ${name}: logits, loss, gradients, decode`, async () => {
    const { tensors, metadata } = readSafetensors(join(GOLDEN_DIR, `${name}.safetensors`));
    const meta = JSON.parse(metadata.meta) as { config: Record<string, unknown> };
    const model = new CausalLM(fromHf(meta.config), { device: DEVICE });
    const tensor = (key: string): Tensor => {
      const t = tensors.get(key);
      assert.ok(t, `missing ${key}`);
      return fromArray(t.data, t.shape, DEVICE);
    };
    let loaded = 0;
    for (const key of tensors.keys()) {
      const m = /^(param|buffer)\.(.*)$/.exec(key);
      if (!m) continue;
      model.setTensor(m[2], tensor(key));
      loaded++;
    }
    assert.equal(loaded, model.namedParameters().length + model.namedBuffers().length, 'every model tensor comes from the file');

    const ids = tensor('input.input_ids');
    const [b, l] = ids.shape;
    const logits = model.forward(ids);
    const refLogits = tensors.get('output.logits')!.data;
    const e = relMaxAbs(await logits.data(), refLogits);
    assert.ok(e <= OUT_TOL, `logits: ${e}`);

    const v = logits.shape[2];
    const loss = op.crossEntropy(
      op.reshape(op.slice(logits, 1, 0, l - 1), [b * (l - 1), v]),
      op.reshape(op.slice(ids, 1, 1, l), [b * (l - 1)]),
    );
    const refLoss = tensors.get('output.loss')!.data[0];
    const lossValue = await loss.item();
    assert.ok(Math.abs(lossValue - refLoss) <= LOSS_TOL * Math.abs(refLoss), `loss ${lossValue} vs ${refLoss}`);

    backward(loss);
    let checked = 0;
    for (const [pname, p] of model.namedParameters()) {
      const ref = tensors.get(`grad.${pname}`);
      assert.ok(ref, `no reference gradient for ${pname}`);
      assert.ok(p.grad, `no gradient for ${pname}`);
      const err = relNorm(await p.grad.data(), ref.data);
      assert.ok(err <= GRAD_TOL, `grad ${pname}: relative error ${err.toExponential(2)}`);
      checked++;
    }
    assert.equal(checked, [...tensors.keys()].filter((k) => k.startsWith('grad.')).length);

    // Decoding: prefill 32 tokens, then one token at a time.
    model.eval();
    const state = model.createState(b);
    const chunks = noGrad(() => {
      const out = [model.forward(op.slice(ids, 1, 0, 32), state)];
      for (let t = 32; t < l; t++) out.push(model.forward(op.slice(ids, 1, t, t + 1), state));
      return op.concat(out, 1);
    });
    const ed = relMaxAbs(await chunks.data(), tensors.get('output.decode_logits')!.data);
    assert.ok(ed <= OUT_TOL, `decode logits: ${ed}`);

    // Any split works: an unaligned prefill, a chunk that crosses a mini-batch boundary, then single
    // tokens; the state does not grow with the context.
    const state2 = model.createState(b);
    const size = () => state2.layers.reduce((s, ls) => s + (ls.mixer as { scan: { size: number } }).scan.size, 0);
    const size0 = size();
    const mixed = noGrad(() => {
      const out = [model.forward(op.slice(ids, 1, 0, 13), state2), model.forward(op.slice(ids, 1, 13, 35), state2)];
      for (let t = 35; t < l; t++) out.push(model.forward(op.slice(ids, 1, t, t + 1), state2));
      return op.concat(out, 1);
    });
    const em = relMaxAbs(await mixed.data(), refLogits);
    assert.ok(em <= OUT_TOL, `split decode logits: ${em}`);
    assert.equal(size(), size0);
  });
}

test('loadPretrained reads a ttt.py folder: its config.json and state dict give the reference logits', async () => {
  const { tensors, metadata } = readSafetensors(join(GOLDEN_DIR, 'ttt_linear_mamba_tiny.safetensors'));
  const meta = JSON.parse(metadata.meta) as { config: Record<string, unknown> };
  const state: TensorMap = new Map();
  for (const [key, t] of tensors) {
    const m = /^(param|buffer)\.(.*)$/.exec(key);
    if (m) state.set(m[2], t);
  }
  const dir = mkdtempSync(join(tmpdir(), 'frugal-ttt-folder-'));
  try {
    saveCheckpointFolder(dir, meta.config, state);
    const model = loadPretrained(dir, { device: DEVICE });
    assert.equal(model.config.mixer, meta.config.ttt_layer_type === 'mlp' ? 'ttt-mlp' : 'ttt-linear');
    const ids = tensors.get('input.input_ids')!;
    const logits = noGrad(() => model.forward(fromArray(ids.data, ids.shape, DEVICE)));
    const e = relMaxAbs(await logits.data(), tensors.get('output.logits')!.data);
    assert.ok(e <= OUT_TOL, `logits: ${e}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
