// frugal train --engine torch: a two-process DDP run (gloo, CPU) trains a tiny model a few steps and
// its checkpoint loads here with logits equal to the twin's; token shards round-trip and bad input
// gives one clear error. The torchrun tests skip (saying so) without PyTorch.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { ByteTokenizer } from '../../src/data/index.ts';
import { readSafetensors } from '../../src/io/safetensors.ts';
import { CausalLM } from '../../src/models/index.ts';
import { loadModel } from '../../src/train/checkpoint.ts';
import { checkShard, checkTwinConfig, decodeTokenShard, encodeTokenShard, findTorchrun, pythonWithTorch, trainWithTorch } from '../../src/train/torch-engine.ts';
import { fromArray, noGrad, Rng } from '../../src/tensor/index.ts';
import { relMaxAbs } from '../helpers.ts';

const PY_DIR = resolve(import.meta.dirname, '..', '..', 'python');
const PYTHON = pythonWithTorch();
const SKIP = PYTHON ? false : 'PyTorch is not installed (no python3 imports torch): torchrun training not run';

test('token shards round-trip and refuse another tokenizer or a corrupt file', () => {
  const tok = new ByteTokenizer();
  const ids = Int32Array.from({ length: 37 }, (_, i) => (i * 7) % 256);
  const bytes = encodeTokenShard(ids, tok.vocabSize, tok.id());
  const back = decodeTokenShard(bytes);
  assert.deepEqual([...back.tokens], [...ids]);
  assert.equal(back.tokenizerId, tok.id());
  checkShard(back, tok, 256, 'x.tok');
  const other = decodeTokenShard(encodeTokenShard(ids, 300, 'bpe:abc'));
  assert.throws(() => checkShard(other, tok, 512, 'x.tok'), /x\.tok was written by another tokenizer/);
  assert.throws(() => decodeTokenShard(bytes.subarray(0, bytes.length - 2), 'y.tok'), /y\.tok: header says 37 tokens/);
  const bad = Uint8Array.from(bytes);
  bad[0] = 0x41;
  assert.throws(() => decodeTokenShard(bad, 'z.tok'), /not a frugal token shard/);
});

test('two-process DDP (gloo) trains a tiny model; its checkpoint loads here with the twin\'s logits', { skip: SKIP }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'frugal-ddp-'));
  try {
    const tok = new ByteTokenizer();
    const model = new CausalLM({ vocabSize: 256, hiddenSize: 32, numLayers: 2, numHeads: 4, intermediateSize: 48, maxPositions: 64, linear: 'fbi' }, { seed: 3 });
    const rng = new Rng(5);
    const text = Array.from({ length: 4000 }, () => 'abcdefgh frugal '[rng.int(16)]).join('');
    const train = Int32Array.from(tok.encode(text));
    const val = train.slice(0, 600);
    const before = model.namedParameters().map(([, t]) => Float32Array.from(t.dataSync() as Float32Array));
    const r = trainWithTorch({
      model, tokenizer: tok, train, val, outDir: join(dir, 'run'), nproc: 2, steps: 3, batch: 4, ctx: 32, lr: 3e-3, warmup: 1,
      clip: 1, accum: 1, weightDecay: 0.1, evalEvery: 0, evalSequences: 4, saveEvery: 0, seed: 0,
    });
    const recs = readFileSync(join(dir, 'run', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const steps = recs.filter((x) => x.type === 'step');
    assert.equal(steps.length, 3);
    for (const s of steps) assert.ok(Number.isFinite(s.loss) && s.grad_norm > 0, JSON.stringify(s));
    assert.ok(recs.some((x) => x.type === 'eval' && Number.isFinite(x.val_loss)));
    assert.ok(steps[2].loss < steps[0].loss, `loss did not fall: ${steps.map((s) => s.loss)}`);

    const loaded = loadModel(r.checkpointDir);
    const after = loaded.namedParameters();
    assert.ok(after.some(([, t], i) => relMaxAbs(t.dataSync() as Float32Array, before[i]) > 1e-4), 'the weights did not change');
    const inputs = [Array.from(train.subarray(0, 24))], targets = [Array.from(train.subarray(1, 25))];
    writeFileSync(join(dir, 'batch.json'), JSON.stringify({ inputs, targets }));
    const py = spawnSync(PYTHON!, ['-m', 'frugal_lm_torch.parity', '--eval', '--model', r.checkpointDir, '--batch', join(dir, 'batch.json'), '--out', join(dir, 'out.safetensors')],
      { cwd: PY_DIR, encoding: 'utf8', env: { ...process.env, PYTHONPATH: PY_DIR, OMP_NUM_THREADS: '1' } });
    assert.equal(py.status, 0, py.stderr);
    const ref = readSafetensors(join(dir, 'out.safetensors')).tensors.get('logits')!.data as Float32Array;
    const ours = noGrad(() => loaded.eval().forward(fromArray(Int32Array.from(inputs[0]), [1, 24]))).dataSync() as Float32Array;
    const e = relMaxAbs(ours, ref);
    assert.ok(e <= 1e-5, `logits of the trained checkpoint: relative max-abs ${e.toExponential(2)} > 1e-5`);
    console.log(`# DDP x2 gloo: losses ${steps.map((s) => s.loss.toFixed(4)).join(' ')}; logits here vs twin ${e.toExponential(2)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the torch engine refuses a batch that does not split over the processes', { skip: SKIP }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'frugal-ddp-'));
  try {
    const model = new CausalLM({ vocabSize: 256, hiddenSize: 16, numLayers: 1, numHeads: 2, intermediateSize: 16 });
    assert.throws(() => trainWithTorch({
      model, tokenizer: new ByteTokenizer(), train: new Int32Array(100), outDir: dir, nproc: 2, steps: 1, batch: 3, ctx: 8, lr: 1e-3,
      clip: 1, accum: 1, weightDecay: 0, evalEvery: 0, evalSequences: 1, saveEvery: 0, seed: 0,
    }), /--batch 3 is not divisible by --nproc 2/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bad input: a config the twin cannot build, a missing torchrun, a shard of another tokenizer', { skip: SKIP }, () => {
  const model = new CausalLM({ vocabSize: 256, hiddenSize: 16, numLayers: 1, numHeads: 2, intermediateSize: 16 });
  (model.config as unknown as Record<string, unknown>).futureField = 1;
  assert.throws(() => checkTwinConfig(model), /the PyTorch twin cannot build this model: config: field 'futureField' is not supported/);
  const saved = process.env.FRUGAL_PYTHON;
  process.env.FRUGAL_PYTHON = '/nonexistent/python3';
  try {
    assert.throws(() => findTorchrun(), /torchrun was not found/);
  } finally {
    if (saved === undefined) delete process.env.FRUGAL_PYTHON;
    else process.env.FRUGAL_PYTHON = saved;
    pythonWithTorch(true);
  }
  const dir = mkdtempSync(join(tmpdir(), 'frugal-shard-'));
  try {
    const shard = join(dir, 'other.tok');
    writeFileSync(shard, encodeTokenShard(new Int32Array(200), 300, 'bpe:other'));
    const r = spawnSync(process.execPath, ['--import', 'tsx', resolve(import.meta.dirname, '..', '..', 'src', 'cli', 'dispatch.ts'), 'train', '--engine', 'torch',
      '--preset', 'tiny-dense', '--steps', '1', '--data', shard, '--out', join(dir, 'run'), '--quiet'], { encoding: 'utf8' });
    assert.equal(r.status, 2, r.stderr);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /^frugal: .*other\.tok was written by another tokenizer/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const FSDP_IMPORTS = PYTHON ? spawnSync(PYTHON, ['-c', 'from torch.distributed.fsdp import FullyShardedDataParallel'], { stdio: 'ignore' }).status === 0 : false;

test('--fsdp where this PyTorch cannot import FSDP: one clear line, exit 2, and an --overwrite keeps the old run', {
  skip: SKIP || (FSDP_IMPORTS ? 'this PyTorch imports FSDP, so its error path is not reachable here (FSDP itself is run on the GPU: bench/torch-engine-gpu.sh)' : false),
}, () => {
  const dir = mkdtempSync(join(tmpdir(), 'frugal-fsdp-'));
  try {
    const out = join(dir, 'run');
    mkdirSync(out);
    writeFileSync(join(out, 'old.txt'), 'an older run\n');
    const r = spawnSync(process.execPath, ['--import', 'tsx', resolve(import.meta.dirname, '..', '..', 'src', 'cli', 'dispatch.ts'), 'train', '--engine', 'torch', '--fsdp',
      '--preset', 'micro-dense', '--steps', '1', '--batch', '2', '--ctx', '16', '--out', out, '--overwrite', '--quiet'], { encoding: 'utf8' });
    assert.equal(r.status, 2, r.stderr);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /^frugal: --fsdp: this PyTorch build cannot load FSDP \(ValueError: mutable default .*\); use DDP \(drop --fsdp\) or PyTorch >= 2\.0$/);
    assert.deepEqual(readdirSync(out), ['old.txt'], 'the old run was touched');
    assert.deepEqual(readdirSync(dir), ['run'], 'a staging folder was left behind');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
