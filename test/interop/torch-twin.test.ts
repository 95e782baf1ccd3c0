// Parity of the PyTorch twin (python/frugal_lm_torch) with CausalLM: small models of every layer
// family are saved here, loaded by the twin, and its logits, loss and gradients must equal ours.
// Skips (saying so) when `python3 -c "import torch"` fails.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { readSafetensors } from '../../src/io/safetensors.ts';
import { CausalLM, type ModelConfig } from '../../src/models/index.ts';
import { saveCheckpoint } from '../../src/train/checkpoint.ts';
import { backward, densify, fromArray, Rng, type Tensor } from '../../src/tensor/index.ts';
import { relMaxAbs } from '../helpers.ts';
import { pythonWithTorch } from '../../src/train/torch-engine.ts';

const PY_DIR = resolve(import.meta.dirname, '..', '..', 'python');
const PYTHON = pythonWithTorch();
const HAS_TORCH = PYTHON !== null;
const SKIP = HAS_TORCH ? false : 'PyTorch is not installed (python3 -c "import torch" failed): torch twin parity not run';

// Tolerances: relative max-abs against the reference (f32 on both sides).
const LOGIT_TOL = 1e-5;
const LOSS_TOL = 1e-6;
const GRAD_TOL = 1e-4;

const base: Partial<ModelConfig> = { vocabSize: 48, hiddenSize: 32, numLayers: 2, numHeads: 4, intermediateSize: 40, maxPositions: 64 };
const tttSmall = { miniBatch: 8, baseLr: 1.0, convKernel: 4 };
const peerSmall = { numExperts: 64, heads: 2, topk: 3, dimKey: 8, activation: 'gelu' as const, score: 'softmax' as const };
const CASES: [string, Partial<ModelConfig>][] = [
  ['dense attention, GQA, untied', { ...base, numKvHeads: 2 }],
  ['fbi column, tied, interleaved rope', { ...base, linear: 'fbi', tieEmbeddings: true, ropeStyle: 'interleaved' }],
  ['fbi row', { ...base, linear: 'fbi', fbiScale: 'row' }],
  ['ttt-linear mamba', { ...base, mixer: 'ttt-linear', ttt: { ...tttSmall, backbone: 'mamba' } }],
  ['ttt-linear transformer', { ...base, mixer: 'ttt-linear', ttt: { ...tttSmall, backbone: 'transformer' } }],
  ['ttt-mlp mamba', { ...base, mixer: 'ttt-mlp', ttt: { ...tttSmall, baseLr: 0.1, backbone: 'mamba' } }],
  ['ttt-mlp transformer, fbi', { ...base, mixer: 'ttt-mlp', linear: 'fbi', ttt: { ...tttSmall, baseLr: 0.1, backbone: 'transformer' } }],
  ['peer shared keys + batchnorm', { ...base, ffn: 'peer', peer: { ...peerSmall, queryNorm: 'batchnorm', sharedKeys: true } }],
  ['peer per-head keys, mixed with swiglu', { ...base, ffn: ['swiglu', 'peer'], peer: { ...peerSmall, queryNorm: 'none', sharedKeys: false } }],
  ['hybrid fbi + ttt-linear + peer', { ...base, linear: 'fbi', mixer: 'ttt-linear', ffn: ['peer', 'swiglu'], ttt: { ...tttSmall, backbone: 'mamba' }, peer: { ...peerSmall, queryNorm: 'batchnorm', sharedKeys: true } }],
];

async function denseGrad(p: Tensor): Promise<Float32Array> {
  const acc = new Float32Array(p.size);
  if (p.grad) acc.set((await p.grad.data()) as Float32Array);
  for (const s of p.sparseGrads) {
    const d = await densify(s, p.shape).data();
    for (let i = 0; i < acc.length; i++) acc[i] += d[i];
  }
  return acc;
}

for (const [name, cfg] of CASES) {
  test(`torch twin: ${name}`, { skip: SKIP }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'frugal-twin-'));
    try {
      const model = new CausalLM(cfg, { seed: 7 });
      // Non-trivial norms, scales and TTT parameters so their gradients are exercised.
      const rng = new Rng(11);
      for (const [n, t] of model.namedParameters()) {
        const scale = /wscale|wbias/.test(n), shift = /norm|learnable_token_idx|lr_bias|\.b1$|\.b2$|\.bias$/.test(n);
        if (!scale && !shift) continue;
        const a = Float32Array.from(t.dataSync() as Float32Array);
        for (let i = 0; i < a.length; i++) a[i] = scale ? a[i] * (1 + 0.2 * rng.normal()) : a[i] + 0.1 * rng.normal();
        model.setTensor(n, fromArray(a, [...t.shape]));
      }
      saveCheckpoint(join(dir, 'model'), model);
      const B = 2, L = 20, V = model.config.vocabSize;
      const ids = Array.from({ length: B }, () => Array.from({ length: L + 1 }, () => Math.floor(rng.uniform() * V)));
      const inputs = ids.map((r) => r.slice(0, L)), targets = ids.map((r) => r.slice(1));
      writeFileSync(join(dir, 'batch.json'), JSON.stringify({ inputs, targets }));
      const py = spawnSync(PYTHON!, ['-m', 'frugal_lm_torch.parity', '--model', join(dir, 'model'), '--batch', join(dir, 'batch.json'), '--out', join(dir, 'out.safetensors')],
        { cwd: PY_DIR, encoding: 'utf8', env: { ...process.env, PYTHONPATH: PY_DIR, OMP_NUM_THREADS: '1' } });
      assert.equal(py.status, 0, `twin failed: ${py.stderr}`);

      const x = fromArray(Int32Array.from(inputs.flat()), [B, L]);
      const y = fromArray(Int32Array.from(targets.flat()), [B, L]);
      const logits = model.forward(x);
      const { crossEntropy } = await import('../../src/ops/index.ts');
      const loss = crossEntropy(logits, y);
      backward(loss);
      const ref = readSafetensors(join(dir, 'out.safetensors')).tensors;
      const get = (n: string) => { const t = ref.get(n); assert.ok(t, `twin wrote no ${n}`); return t.data as Float32Array; };
      const le = relMaxAbs(get('logits'), (await logits.data()) as Float32Array);
      assert.ok(le <= LOGIT_TOL, `logits: relative max-abs ${le.toExponential(2)} > ${LOGIT_TOL}`);
      const lossErr = Math.abs(get('loss')[0] - loss.dataSync()[0]) / Math.abs(loss.dataSync()[0]);
      assert.ok(lossErr <= LOSS_TOL, `loss: relative error ${lossErr.toExponential(2)} > ${LOSS_TOL}`);
      // Per tensor: max |ours - twin| over the tensor's own max |grad|, floored at 1e-3 of the model's
      // largest gradient, because some gradients vanish identically (a bias feeding a training-mode
      // BatchNorm: BN removes any shift), where both sides hold rounding noise only.
      const grads: [string, Float32Array, Float32Array][] = [];
      for (const [n, p] of model.namedParameters()) grads.push([n, get(`grad.${n}`), await denseGrad(p)]);
      const maxAbs = (a: Float32Array) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      const globalMax = Math.max(...grads.map(([, , b]) => maxAbs(b)));
      let worst = 0, worstName = '';
      for (const [n, a, b] of grads) {
        let d = 0;
        for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
        const e = d / Math.max(maxAbs(b), 1e-3 * globalMax);
        if (e > worst) { worst = e; worstName = n; }
      }
      assert.ok(worst <= GRAD_TOL, `gradients: worst relative max-abs ${worst.toExponential(2)} at ${worstName} > ${GRAD_TOL}`);
      console.log(`# ${name}: logits ${le.toExponential(2)}, loss ${lossErr.toExponential(2)}, worst grad ${worst.toExponential(2)} (${worstName})`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
