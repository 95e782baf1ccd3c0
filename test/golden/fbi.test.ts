// FBI-LLM golden parity: HF LlamaForCausalLM with every projection but lm_head replaced by the official
// BinaryLinearWscales ("column" scales). The model is built from the reference config through the HF
// mapping and loaded three ways (safetensors params, torch .bin folder, sharded folder); each must
// reproduce the logits, the distillation loss and all its gradients, the next-token loss and greedy ids.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { readSafetensors } from '../../src/io/safetensors.ts';
import { saveCheckpointFolder } from '../../src/io/hf-folder.ts';
import type { TensorMap } from '../../src/io/raw.ts';
import { CausalLM } from '../../src/models/index.ts';
import { fromHf, loadPretrained } from '../../src/models/hf.ts';
import * as op from '../../src/ops/index.ts';
import { backward, fromArray, noGrad, tidy } from '../../src/tensor/index.ts';
import { DEVICE, GOLDEN_DIR, relMaxAbs, relNorm } from '../helpers.ts';

const file = readSafetensors(join(GOLDEN_DIR, 'fbi_llama_tiny.safetensors'));
const g = file.tensors;
const meta = JSON.parse(file.metadata.meta) as { config: Record<string, unknown> };
const get = (k: string) => {
  const t = g.get(k);
  assert.ok(t, `golden file lacks ${k}`);
  return t;
};
const paramNames = [...g.keys()].filter((k) => k.startsWith('param.')).map((k) => k.slice('param.'.length));

// Tolerances from the golden README.
const TOL_OUT = 1e-4, TOL_LOSS = 1e-5, TOL_GRAD = 1e-3, TIE = 1e-6;

function fromGoldenParams(): CausalLM {
  const shapes = new Map(paramNames.map((n) => [n, { shape: get(`param.${n}`).shape }]));
  const model = new CausalLM(fromHf(meta.config, shapes), { device: DEVICE });
  for (const n of paramNames) {
    const t = get(`param.${n}`);
    model.setTensor(n, fromArray(t.data.slice(), t.shape, DEVICE));
  }
  return model;
}

async function checkAll(model: CausalLM, label: string): Promise<void> {
  assert.equal(model.config.linear, 'fbi', `${label}: FBI linears detected`);
  assert.equal(model.config.fbiScale, 'column', `${label}: scale pattern`);
  const ids = get('input.input_ids');
  const [B, L] = ids.shape;
  const idsT = fromArray(ids.data as Int32Array, [B, L], DEVICE);

  // Logits, distillation loss and every gradient of it.
  for (const [, p] of model.namedParameters()) p.zeroGrad();
  const { logits, kd } = tidy(() => {
    const lg = model.forward(idsT);
    const teacher = get('input.teacher_logits');
    const loss = op.softCrossEntropy(lg, fromArray(teacher.data as Float32Array, teacher.shape, DEVICE));
    backward(loss);
    return { logits: lg, kd: loss };
  });
  const eLogits = relMaxAbs(await logits.data(), get('output.logits').data);
  assert.ok(eLogits <= TOL_OUT, `${label}: logits error ${eLogits.toExponential(2)}`);
  const kdRef = get('output.kd_loss').data[0];
  const eKd = Math.abs((await kd.item()) - kdRef) / Math.abs(kdRef);
  assert.ok(eKd <= TOL_LOSS, `${label}: kd_loss error ${eKd.toExponential(2)}`);
  const params = new Map(model.namedParameters());
  const gradNames = [...g.keys()].filter((k) => k.startsWith('grad.')).map((k) => k.slice('grad.'.length));
  assert.equal(gradNames.length, params.size, `${label}: golden has a gradient for every parameter`);
  for (const n of gradNames) {
    const p = params.get(n);
    assert.ok(p?.grad, `${label}: no gradient for ${n}`);
    const e = relNorm(await p.grad.data(), get(`grad.${n}`).data);
    assert.ok(e <= TOL_GRAD, `${label}: grad ${n} relative error ${e.toExponential(2)}`);
  }

  // Next-token loss.
  const ntl = noGrad(() => {
    const x = op.slice(idsT, 1, 0, L - 1);
    const y = op.reshape(op.slice(idsT, 1, 1, L), [B * (L - 1)]);
    return model.loss(x, y);
  });
  const ntlRef = get('output.next_token_loss').data[0];
  const eNtl = Math.abs((await ntl.item()) - ntlRef) / Math.abs(ntlRef);
  assert.ok(eNtl <= TOL_LOSS, `${label}: next_token_loss error ${eNtl.toExponential(2)}`);

  // Greedy generation with the KV cache: prefill the prompt, then one token at a time. Where our
  // choice differs from the reference it must be a tie within 1e-6; the reference token is fed on.
  const ref = get('output.greedy_ids');
  const prompt = 8, total = ref.shape[1];
  assert.deepEqual(Array.from(ref.data.subarray(0, prompt)), Array.from(ids.data.subarray(0, prompt)), 'greedy prompt is input_ids[:1,:8]');
  const state = model.createState(1);
  let next = fromArray(Int32Array.from(ids.data.subarray(0, prompt)), [1, prompt], DEVICE);
  for (let t = prompt; t < total; t++) {
    const lg = noGrad(() => model.forward(next, state));
    const v = lg.shape[2];
    const last = ((await lg.data()) as Float32Array).subarray((lg.shape[1] - 1) * v);
    let best = 0;
    for (let i = 1; i < v; i++) if (last[i] > last[best]) best = i;
    const want = ref.data[t];
    if (best !== want) assert.ok(last[best] - last[want] <= TIE, `${label}: greedy token ${t} is ${best}, reference ${want} (gap ${last[best] - last[want]})`);
    next = fromArray(Int32Array.of(want), [1, 1], DEVICE);
  }
}

test('FBI golden: model from safetensors params through the HF config mapping', async () => {
  await checkAll(fromGoldenParams(), 'safetensors');
});

for (const folder of ['fbi_checkpoint', 'fbi_checkpoint_sharded']) {
  test(`FBI golden: loadPretrained(${folder})`, async () => {
    const model = loadPretrained(join(GOLDEN_DIR, folder), { device: DEVICE });
    await checkAll(model, folder);
  });
}

test('loadPretrained names missing and unexpected tensors in one error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fbi-ckpt-'));
  try {
    const base: TensorMap = new Map(paramNames.map((n) => [n, get(`param.${n}`)]));
    const missing = new Map(base);
    missing.delete('model.layers.1.mlp.up_proj.wscale');
    missing.set('model.layers.0.rotary_emb.inv_freq', { dtype: 'f32', shape: [8], data: new Float32Array(8) });
    saveCheckpointFolder(join(dir, 'missing'), meta.config, missing);
    assert.throws(() => loadPretrained(join(dir, 'missing'), { device: DEVICE }), (e: Error) => /missing 1 tensor\(s\): model\.layers\.1\.mlp\.up_proj\.wscale/.test(e.message) && !/inv_freq/.test(e.message));
    const extra = new Map(base);
    extra.set('model.layers.0.mlp.extra_proj.weight', { dtype: 'f32', shape: [2], data: new Float32Array(2) });
    saveCheckpointFolder(join(dir, 'extra'), meta.config, extra);
    assert.throws(() => loadPretrained(join(dir, 'extra'), { device: DEVICE }), /unexpected 1 tensor\(s\): model\.layers\.0\.mlp\.extra_proj\.weight/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
