// Smoke tests of the WebGPU benchmarks at tiny sizes (they run on SwiftShader without a GPU) and of
// the PyTorch peer's CPU mode: the numbers are meaningless here, the checks are that every path runs,
// computes correct results where it checks them, and reports a missing peer instead of failing.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, test } from 'node:test';
import { destroyWebGPU, initWebGPU } from '../../src/backend/webgpu/index.ts';
import { CausalLM } from '../../src/models/index.ts';
import { run as attentionBench } from '../../bench/attention.ts';
import { run as matmulBench, torchGpuPeer } from '../../bench/matmul.ts';
import { run as trainStepBench } from '../../bench/train-step.ts';
import { DEVICE } from '../helpers.ts';

let reason = '';
try { await initWebGPU(); } catch (e) { reason = (e as Error).message; }
if (reason) console.log(`# webgpu bench smoke tests NOT RUN: ${reason}`);
const gpu = reason ? (DEVICE === 'webgpu' ? {} : { skip: reason }) : {};
after(() => destroyWebGPU());

const hasCpuTorch = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { encoding: 'utf8' }).status === 0;
const torchOpts = hasCpuTorch ? {} : { skip: 'no torch for /usr/bin/python3' };
const tiny = { vocab: '64', dim: '32', layers: '2', heads: '2', ffn: '64', ctx: '16', batch: '2' };

test('webgpu matmul bench: product matches a host recomputation, missing peer is reported', gpu, async () => {
  const prev = process.env.FRUGAL_PYTHON;
  process.env.FRUGAL_PYTHON = '/nonexistent/python3';
  try {
    const r = await matmulBench({ device: 'webgpu', sizes: '48,32', shapes: '40x24x36:nt,24x40x36:tn,36x20x12', reps: '2', 'keep-device': true });
    const rows = r.rows as Record<string, number>[];
    assert.deepEqual(rows.map((x) => x.n), [48, 32]);
    // fp32 products of length <= 48 with entries in [-0.5, 0.5): rounding stays far below 1e-5.
    for (const x of rows) assert.ok(x.spot_check_rel_err < 1e-5, `spot check error ${x.spot_check_rel_err}`);
    const srows = r.shape_rows as Record<string, number | boolean>[];
    assert.deepEqual(srows.map((x) => [x.m, x.n, x.k, x.transA, x.transB]), [[40, 24, 36, false, true], [24, 40, 36, true, false], [36, 20, 12, false, false]]);
    for (const x of srows) assert.ok((x.spot_check_rel_err as number) < 1e-5 && (x.tflops as number) > 0, `shape row ${JSON.stringify(x)}`);
    assert.match(String(r.torch_shapes_error), /nonexistent/);
    assert.ok((r.tflops as number) > 0);
    assert.match(String(r.torch_error), /nonexistent/);
  } finally {
    if (prev === undefined) delete process.env.FRUGAL_PYTHON;
    else process.env.FRUGAL_PYTHON = prev;
  }
});

test('matmul bench --shapes: 125m expands to the model products, malformed items are one clear error', async () => {
  const { shapeList, SHAPES_125M } = await import('../../bench/matmul.ts');
  assert.deepEqual(shapeList('8x4x2:tn,3x5x7'), [{ m: 8, n: 4, k: 2, transA: true, transB: false }, { m: 3, n: 5, k: 7, transA: false, transB: false }]);
  assert.equal(shapeList('125m').length, SHAPES_125M.length);
  assert.deepEqual(shapeList('125m')[3], { m: 8192, n: 32000, k: 768, transA: false, transB: true });
  assert.throws(() => shapeList('8x4'), /--shapes must be MxNxK\[:nn\|nt\|tn\|tt\].*got '8x4'/);
  assert.throws(() => shapeList('8x0x2:nn'), /got '8x0x2:nn'/);
  assert.throws(() => shapeList('8x4x2:xy'), /got '8x4x2:xy'/);
});

test('webgpu attention bench: every row timed with finite outputs, budget skips rows', gpu, async () => {
  const r = await attentionBench({ device: 'webgpu', lens: '16,32', dims: '8', heads: '2', reps: '1', 'no-peer': true, 'keep-device': true });
  const rows = r.rows as Record<string, unknown>[];
  assert.equal(rows.length, 2);
  for (const x of rows) {
    assert.equal(x.finite, true);
    assert.ok((x.fwd_bwd_ms as number) > 0 && (x.fwd_bwd_tflops as number) > 0);
  }
  const none = await attentionBench({ device: 'webgpu', lens: '16', dims: '8', heads: '2', 'budget-s': '0', 'no-peer': true, 'keep-device': true });
  assert.equal((none.rows as Record<string, unknown>[])[0].skipped, 'time budget');
});

test('webgpu train-step bench: eager and replayed steps run, initial loss near ln(vocab)', gpu, async () => {
  const r = await trainStepBench({ device: 'webgpu', ...tiny, steps: '1', 'no-peer': true, 'keep-device': true });
  // Weights start with std 0.02, so the logits are nearly uniform: loss within 0.1 of ln(64) = 4.16.
  assert.ok(Math.abs((r.first_loss as number) - Math.log(64)) < 0.1, `first loss ${r.first_loss}`);
  assert.ok((r.tokens_per_s as number) > 0);
  assert.equal(r.replay_error, undefined);
  assert.ok((r.replay_tokens_per_s as number) > 0);
});

test('train-step presets: dense-125m shape, flags override, unknown preset is a clear error', async () => {
  const { modelShape } = await import('../../bench/train-step.ts');
  assert.deepEqual(modelShape({ preset: 'dense-125m', batch: '4' }), { vocab: 32000, dim: 768, layers: 12, heads: 12, ffn: 2048, ctx: 1024, batch: 4 });
  assert.throws(() => modelShape({ preset: 'huge' }), /unknown --preset 'huge'.*dense-125m/);
  assert.throws(() => modelShape({ batch: 'x' }), /--batch must be a positive integer/);
});

test('torch peer (CPU smoke mode): all three modes answer, and its model has our parameter count', torchOpts, () => {
  const args = { 'cpu-smoke': true };
  const mm = torchGpuPeer('matmul', { sizes: [32], reps: 2 }, args);
  assert.equal(mm.torch_error, undefined, String(mm.torch_error));
  assert.ok(((mm.rows as Record<string, number>[])[0].torch_fp32_tflops) > 0);
  const at = torchGpuPeer('attention', { batch: 1, heads: 2, dims: [8], lens: [16], reps: 1 }, args);
  assert.equal(at.torch_error, undefined, String(at.torch_error));
  assert.ok(((at.rows as Record<string, number>[])[0].torch_bf16_fwd_bwd_ms) > 0);
  const c = { vocab: 64, dim: 32, layers: 2, heads: 2, ffn: 64, ctx: 16, batch: 2 };
  const ts = torchGpuPeer('train-step', { model: c, steps: 1 }, args);
  assert.equal(ts.torch_error, undefined, String(ts.torch_error));
  const ours = new CausalLM({ vocabSize: c.vocab, hiddenSize: c.dim, numLayers: c.layers, numHeads: c.heads, intermediateSize: c.ffn, maxPositions: c.ctx });
  assert.equal(ts.torch_params, ours.namedParameters().reduce((n, [, p]) => n + p.size, 0));
  assert.ok((ts.torch_fp32_tokens_per_s as number) > 0 && (ts.torch_bf16_tokens_per_s as number) > 0);
});

test('train-step --family: unknown names are clear errors; each family maps to its ~125M preset', async () => {
  const { FAMILIES, modelConfig, REFERENCE } = await import('../../bench/train-step.ts');
  assert.throws(() => modelConfig(REFERENCE, { family: 'moe' }), /unknown --family 'moe'; available: dense, fbi, ttt, peer/);
  assert.throws(() => modelConfig(REFERENCE, { family: 'fbi', 'model-preset': 'nope' }), /unknown --model-preset 'nope'/);
  for (const [family, preset] of Object.entries(FAMILIES)) {
    const m = modelConfig({ ...REFERENCE, ctx: 1024 }, { family });
    assert.equal(m.preset, preset);
    assert.equal(m.config.maxPositions, 1024);
    assert.equal(m.config.hiddenSize, 768);
  }
});

test('webgpu train-step --family ttt (tiny preset): eager and replayed steps with clip, finite norms', gpu, async () => {
  const r = await trainStepBench({ device: 'webgpu', family: 'ttt', 'model-preset': 'ttt-linear-tiny', ctx: '16', batch: '2', steps: '1', 'no-peer': true, 'keep-device': true });
  assert.equal(r.replay_error, undefined);
  assert.ok((r.replay_tokens_per_s as number) > 0 && (r.tokens_per_s as number) > 0);
  for (const k of ['first_grad_norm', 'replay_last_grad_norm', 'replay_last_loss']) assert.ok(Number.isFinite(r[k] as number) && (r[k] as number) > 0, `${k} ${r[k]}`);
});

test('torch peer train-step-config (CPU smoke): the frugal_lm_torch twin of each tiny family has our parameter count', torchOpts, async () => {
  const { PRESETS } = await import('../../src/models/presets.ts');
  for (const name of ['fbi-tiny', 'ttt-linear-tiny', 'peer-tiny']) {
    const config = { ...PRESETS[name], maxPositions: 16 };
    const ts = torchGpuPeer('train-step-config', { config, batch: 2, ctx: 16, steps: 1 }, { 'cpu-smoke': true });
    assert.equal(ts.torch_error, undefined, `${name}: ${ts.torch_error}`);
    const ours = new CausalLM(config);
    assert.equal(ts.torch_params, ours.namedParameters().reduce((n, [, p]) => n + p.size, 0), name);
    assert.ok((ts.torch_fp32_tokens_per_s as number) > 0 && (ts.torch_bf16_tokens_per_s as number) > 0);
  }
});

test('webgpu packed decode bench: both loops give the same greedy ids, the peer decodes the same dense shape', gpu, async () => {
  const { run } = await import('../../bench/gpu-decode.ts');
  const { PRESETS } = await import('../../src/models/presets.ts');
  const r = await run({ preset: 'fbi-tiny', prompt: '3', decode: '3', prefill: '20', 'keep-device': true, ...(hasCpuTorch ? { 'cpu-smoke': true } : { 'no-peer': true }) });
  assert.equal(r.greedy_ids_agree, true);
  assert.ok((r.tokens_per_s as number) > 0 && (r.host_loop_tokens_per_s as number) > 0 && (r.dispatches_per_token as number) > 0);
  assert.ok(((r.prefill as Record<string, number>).scalar_ms) > 0);
  if (hasCpuTorch) {
    assert.equal(r.torch_error, undefined, String(r.torch_error));
    // fp32 in CPU smoke mode: 4 bytes per weight of the same linears and head.
    const c = PRESETS['fbi-tiny'];
    const d = c.hiddenSize!, f = c.intermediateSize!;
    assert.equal(r.torch_weight_bytes_per_token, 4 * (c.numLayers! * (4 * d * d + 3 * d * f) + c.vocabSize! * d));
    assert.ok((r.torch_bf16_tokens_per_s as number) > 0);
  }
});
