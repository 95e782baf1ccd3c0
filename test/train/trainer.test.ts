// Trainer: exact resume (N steps + resume M == N+M in one go, bitwise on CPU), schedule shape,
// checkpoint atomicity (a failing save leaves the previous checkpoint loadable), metrics log.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, existsSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { BatchIterator, ByteTokenizer, PackedDataset } from '../../src/data/index.ts';
import { CausalLM } from '../../src/models/index.ts';
import { loadModel, saveCheckpoint } from '../../src/train/checkpoint.ts';
import { readMetrics } from '../../src/train/metrics.ts';
import { lrAt } from '../../src/train/schedule.ts';
import { train } from '../../src/train/trainer.ts';

const TEXT = 'It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness. '.repeat(40);
const CFG = { vocabSize: 256, hiddenSize: 32, numLayers: 2, numHeads: 2, intermediateSize: 64, maxPositions: 64 };
const tok = new ByteTokenizer();
const tokens = Int32Array.from(tok.encode(TEXT));

function setup(seed = 3) {
  const model = new CausalLM(CFG, { seed });
  const data = new BatchIterator(new PackedDataset(tokens, 16), { batchSize: 4, seed: 11 });
  return { model, data };
}
const common = { steps: 12, lr: 3e-3, minLr: 3e-4, warmup: 3, clip: 0.5, accum: 2, seed: 5, tokenizer: tok };

function paramBytes(m: CausalLM): Float32Array[] {
  return m.namedParameters().map(([, t]) => Float32Array.from(t.dataSync()));
}

test('resume after N steps reproduces an uninterrupted N+M run bitwise', async () => {
  const dirA = mkdtempSync(join(tmpdir(), 'frugal-train-'));
  const dirB = mkdtempSync(join(tmpdir(), 'frugal-train-'));
  try {
    const a = setup();
    const full = await train({ ...a, ...common, outDir: dirA });
    const b1 = setup();
    const first = await train({ ...b1, ...common, outDir: dirB, stopAfter: 5 });
    assert.equal(first.step, 5);
    // A fresh process would rebuild the model with any seed: weights must come from the checkpoint.
    const b2 = setup(99);
    const rest = await train({ ...b2, ...common, outDir: dirB, resume: true });
    assert.equal(rest.step, 12);
    assert.deepEqual([...first.losses, ...rest.losses], full.losses);
    const pa = paramBytes(a.model), pb = paramBytes(b2.model);
    pa.forEach((x, i) => assert.deepEqual(pb[i], x, `parameter ${i} differs after resume`));
    // The log holds exactly one history: steps 1..12, each once.
    const steps = readMetrics(join(dirB, 'metrics.jsonl')).filter((r) => r.type === 'step').map((r) => r.step);
    assert.deepEqual(steps, Array.from({ length: 12 }, (_, i) => i + 1));
    const loaded = loadModel(dirB);
    paramBytes(loaded).forEach((x, i) => assert.deepEqual(x, pa[i]));
  } finally {
    rmSync(dirA, { recursive: true, force: true });
    rmSync(dirB, { recursive: true, force: true });
  }
});

test('training lowers the loss and logs lr, grad norm, throughput and evaluations', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'frugal-train-'));
  try {
    const { model, data } = setup();
    const val = new PackedDataset(tokens.subarray(0, 400), 16);
    const r = await train({ model, data, valData: val, evalEvery: 10, steps: 40, lr: 1e-2, warmup: 4, outDir: dir });
    const recs = readMetrics(join(dir, 'metrics.jsonl'));
    const steps = recs.filter((x) => x.type === 'step');
    const evals = recs.filter((x) => x.type === 'eval');
    assert.equal(steps.length, 40);
    assert.equal(evals.length, 4);
    for (const s of steps) {
      assert.ok(s.grad_norm > 0 && Number.isFinite(s.tokens_per_s) && s.tokens_per_s > 0);
      assert.ok(Math.abs((s.lr as number) - lrAt(s.step - 1, { lr: 1e-2, minLr: 1e-3, warmup: 4, steps: 40 })) < 1e-12);
    }
    // Repetitive text: 40 steps must cut the validation loss well below the uniform log(256) = 5.55.
    assert.ok(r.evals.at(-1)!.val_loss < r.evals[0].val_loss && r.evals.at(-1)!.val_loss < 3.5, `val loss ${r.evals.map((e) => e.val_loss)}`);
    assert.ok(r.losses.at(-1)! < r.losses[0] - 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('schedule: linear warmup, cosine to minLr', async () => {
  const o = { lr: 1, minLr: 0.1, warmup: 10, steps: 110 };
  assert.equal(lrAt(0, o), 0.1);
  assert.equal(lrAt(9, o), 1);
  assert.ok(Math.abs(lrAt(10, o) - 1) < 1e-12);
  assert.ok(Math.abs(lrAt(60, o) - 0.55) < 1e-12, 'halfway through decay is the midpoint');
  assert.ok(Math.abs(lrAt(110, o) - 0.1) < 1e-12);
  for (let s = 10; s < 110; s++) assert.ok(lrAt(s + 1, o) <= lrAt(s, o), `not monotone at ${s}`);
  await assert.rejects(train({ ...setup(), steps: 0, lr: 1 }), /steps must be a positive integer/);
});

test('a failing save leaves the previous checkpoint loadable', () => {
  const dir = mkdtempSync(join(tmpdir(), 'frugal-ckpt-'));
  try {
    const good = new CausalLM(CFG, { seed: 1 });
    const ck = join(dir, 'model');
    saveCheckpoint(ck, good, { tokenizer: tok });
    const before = readFileSync(join(ck, 'model.safetensors'));
    // A tensor whose data does not match its shape makes the encoder throw before the swap.
    const bad = new CausalLM(CFG, { seed: 2 });
    const w = bad.namedParameters()[0][1];
    (w as { shape: number[] }).shape = [w.shape[0] + 1, w.shape[1]];
    assert.throws(() => saveCheckpoint(ck, bad), /shape|elements/);
    // And a save into a read-only parent cannot replace the folder either.
    const good2 = new CausalLM(CFG, { seed: 7 });
    if (process.getuid?.() !== 0) {
      chmodSync(dir, 0o555);
      try {
        assert.throws(() => saveCheckpoint(ck, good2), /previous contents are unchanged/);
      } finally {
        chmodSync(dir, 0o755);
      }
    }
    assert.deepEqual(readFileSync(join(ck, 'model.safetensors')), before);
    const loaded = loadModel(ck);
    assert.deepEqual(paramBytes(loaded), paramBytes(good));
    assert.ok(existsSync(join(ck, 'tokenizer.json')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
