// frugal distill --engine torch: two processes (gloo, CPU) distill a tiny FBI student from a dense
// teacher. The first step's loss equals distillLoss here on the same initial student and the same
// batch (the shard holds exactly one batch of sequences, so every data order gives the same batch;
// the loss is a mean over its tokens), the FBI metrics are logged, and the checkpoint loads here with
// the twin's logits. Skipped, saying so, without PyTorch.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { ByteTokenizer } from '../../src/data/index.ts';
import { readSafetensors } from '../../src/io/safetensors.ts';
import { CausalLM } from '../../src/models/index.ts';
import { bitsPerParam } from '../../src/nn/fbi-linear.ts';
import { loadModel, saveCheckpoint } from '../../src/train/checkpoint.ts';
import { distillLoss } from '../../src/train/distill.ts';
import { encodeTokenShard, pythonWithTorch } from '../../src/train/torch-engine.ts';
import { fromArray, noGrad, Rng } from '../../src/tensor/index.ts';
import { relMaxAbs } from '../helpers.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
const PY_DIR = join(ROOT, 'python');
const PYTHON = pythonWithTorch();
const SKIP = PYTHON ? false : 'PyTorch is not installed (no python3 imports torch): torch-engine distillation not run';

const frugal = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli', 'dispatch.ts'), ...args], { encoding: 'utf8', cwd: ROOT, timeout: 600_000 });

test('distill --engine torch (2 processes): first-step loss equals distillLoss here; checkpoint loads with the twin\'s logits', { skip: SKIP }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'frugal-tdistill-'));
  try {
    const tok = new ByteTokenizer();
    const shape = { vocabSize: 256, hiddenSize: 32, numLayers: 2, numHeads: 4, intermediateSize: 48, maxPositions: 64 };
    const teacher = new CausalLM({ ...shape, linear: 'dense' }, { seed: 11 });
    const student = new CausalLM({ ...shape, linear: 'fbi', fbiScale: 'column' }, { seed: 3 });
    saveCheckpoint(join(dir, 'teacher'), teacher, { tokenizer: tok });
    saveCheckpoint(join(dir, 'student'), student, { tokenizer: tok });
    const batch = 4, ctx = 16, gt = 0.25;
    const rng = new Rng(7);
    const ids = Int32Array.from({ length: batch * ctx + 1 }, () => rng.int(256));
    writeFileSync(join(dir, 'data.tok'), encodeTokenShard(ids, tok.vocabSize, tok.id()));

    // The native loss of the first step: all `batch` sequences (sequence i = ids[i*ctx .. i*ctx+ctx]).
    const x = new Int32Array(batch * ctx), y = new Int32Array(batch * ctx);
    for (let b = 0; b < batch; b++) {
      x.set(ids.subarray(b * ctx, b * ctx + ctx), b * ctx);
      y.set(ids.subarray(b * ctx + 1, b * ctx + ctx + 1), b * ctx);
    }
    const s0 = loadModel(join(dir, 'student')).train();
    const native = distillLoss(loadModel(join(dir, 'teacher')), gt)(s0, fromArray(x, [batch, ctx]), fromArray(y, [batch * ctx]), new Rng(0)).itemSync();

    const r = frugal(['distill', '--engine', 'torch', '--nproc', '2', '--teacher', join(dir, 'teacher'), '--student', join(dir, 'student'), '--data', join(dir, 'data.tok'),
      '--gt-weight', String(gt), '--steps', '3', '--batch', String(batch), '--ctx', String(ctx), '--warmup', '1', '--eval-every', '0', '--out', join(dir, 'run'), '--quiet']);
    assert.equal(r.status, 0, r.stderr);
    const recs = readFileSync(join(dir, 'run', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const steps = recs.filter((q) => q.type === 'step');
    assert.equal(steps.length, 3);
    const e = Math.abs(steps[0].loss - native) / Math.abs(native);
    assert.ok(e <= 1e-5, `first-step loss: torch ${steps[0].loss} vs native ${native} (relative ${e.toExponential(2)} > 1e-5)`);
    assert.ok(steps[2].loss < steps[0].loss, `loss did not fall: ${steps.map((q) => q.loss)}`);
    const bits = bitsPerParam(s0).model;
    for (const q of steps) {
      assert.ok(q.flip_flop > 0 && q.flip_flop < 0.5, `flip_flop ${q.flip_flop}`);
      assert.ok(Math.abs(q.bits_per_param - bits) <= 1e-9 * bits, `bits_per_param ${q.bits_per_param} vs ${bits}`);
    }
    const state = JSON.parse(readFileSync(join(dir, 'run', 'model', 'trainer_state.json'), 'utf8'));
    assert.equal(state.step, 3);
    assert.equal(state.extra.engine, 'torch');
    assert.equal(state.extra.settings['gt-weight'], gt);

    const loaded = loadModel(join(dir, 'run', 'model'));
    assert.equal(loaded.config.linear, 'fbi');
    const inputs = [Array.from(ids.subarray(0, 20))], targets = [Array.from(ids.subarray(1, 21))];
    writeFileSync(join(dir, 'batch.json'), JSON.stringify({ inputs, targets }));
    const py = spawnSync(PYTHON!, ['-m', 'frugal_lm_torch.parity', '--eval', '--model', join(dir, 'run', 'model'), '--batch', join(dir, 'batch.json'), '--out', join(dir, 'out.safetensors')],
      { cwd: PY_DIR, encoding: 'utf8', env: { ...process.env, PYTHONPATH: PY_DIR, OMP_NUM_THREADS: '1' } });
    assert.equal(py.status, 0, py.stderr);
    const ref = readSafetensors(join(dir, 'out.safetensors')).tensors.get('logits')!.data as Float32Array;
    const ours = noGrad(() => loaded.eval().forward(fromArray(Int32Array.from(inputs[0]), [1, 20]))).dataSync() as Float32Array;
    const le = relMaxAbs(ours, ref);
    assert.ok(le <= 1e-5, `logits of the distilled checkpoint: relative max-abs ${le.toExponential(2)} > 1e-5`);
    console.log(`# distill x2 gloo: first-step loss torch ${steps[0].loss.toFixed(6)} native ${native.toFixed(6)} (rel ${e.toExponential(2)}); flip_flop ${steps.map((q) => q.flip_flop.toFixed(4)).join(' ')}; logits ${le.toExponential(2)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
