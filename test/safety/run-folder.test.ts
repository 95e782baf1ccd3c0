// Run folders are never clobbered: a folder that holds a run is refused without --resume or
// --overwrite; --overwrite replaces the old run only once the new one has a checkpoint; --resume
// needs a checkpoint and takes model, tokenizer, data and settings from it; --keep N keeps older
// checkpoints as checkpoint-STEP/; interrupted folder swaps are finished on the next load.
import { assertUserError, frugalIn } from '../cli-helpers.ts';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { BatchIterator, ByteTokenizer, PackedDataset } from '../../src/data/index.ts';
import { recoverDir } from '../../src/io/atomic.ts';
import { CausalLM } from '../../src/models/index.ts';
import { loadModel, loadTrainerState } from '../../src/train/checkpoint.ts';
import { readMetrics } from '../../src/train/metrics.ts';
import { train } from '../../src/train/trainer.ts';

const tmp = mkdtempSync(join(tmpdir(), 'frugal-runfolder-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const text = join(tmp, 'text.txt');
writeFileSync(text, 'The quick brown fox jumps over the lazy dog while the cat sleeps by the fire. '.repeat(40));
const FLAGS = ['--preset', 'micro-dense', '--data', text, '--steps', '4', '--batch', '2', '--ctx', '16', '--save-every', '2', '--eval-every', '0', '--eval-sequences', '2', '--quiet'];

const frugal = frugalIn(tmp);
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string) => {
    for (const n of readdirSync(d, { withFileTypes: true })) {
      if (n.isDirectory()) walk(join(d, n.name), `${rel}${n.name}/`);
      else out[rel + n.name] = readFileSync(join(d, n.name)).toString('base64');
    }
  };
  walk(dir, '');
  return out;
}

test('train --out on a folder holding a run refuses and leaves every file as it was', () => {
  const run = join(tmp, 'a');
  assert.equal(frugal('train', ...FLAGS, '--out', run).code, 0);
  const before = snapshot(run);
  assertUserError(frugal('train', ...FLAGS, '--out', run), /already holds files .*--resume.*--overwrite/);
  assertUserError(frugal('distill', '--teacher', join(run, 'model'), ...FLAGS.slice(2), '--out', run), /already holds files/);
  assertUserError(frugal('experiment', 'long-context', '--quick', '--quiet', '--out', run), /already holds files/);
  assertUserError(frugal('train', ...FLAGS, '--out', run, '--resume', '--overwrite'), /exclude each other/);
  assert.deepEqual(snapshot(run), before);
  // A file in the way is refused too.
  writeFileSync(join(tmp, 'plain'), 'x');
  assertUserError(frugal('train', ...FLAGS, '--out', join(tmp, 'plain')), /is a file/);
  assertUserError(frugal('train', ...FLAGS, '--out', '/proc/frugal-x'), /cannot create folder \/proc\/frugal-x/);
});

test('--resume needs a checkpoint; it rebuilds the run from it and refuses contradicting flags', () => {
  assertUserError(frugal('train', ...FLAGS, '--out', join(tmp, 'none'), '--resume'), /holds no checkpoint to resume from/);
  assert.equal(existsSync(join(tmp, 'none')), false);
  mkdirSync(join(tmp, 'empty'));
  assertUserError(frugal('train', ...FLAGS, '--out', join(tmp, 'empty'), '--resume'), /holds no checkpoint/);

  // A TTT run from a config file, resumed with no model flags at all.
  const cfg = join(tmp, 'ttt.json');
  writeFileSync(cfg, JSON.stringify({ hiddenSize: 32, numLayers: 2, numHeads: 2, intermediateSize: 64, maxPositions: 64, mixer: 'ttt-linear', ttt: { miniBatch: 4 } }));
  const run = join(tmp, 'ttt');
  const common = ['--data', text, '--batch', '2', '--ctx', '16', '--eval-every', '0', '--eval-sequences', '2', '--quiet', '--lr', '0.002'];
  assert.equal(frugal('train', '--config', cfg, ...common, '--steps', '6', '--save-every', '3', '--out', join(tmp, 'ttt-full')).code, 0);
  // Stop the same run at step 3 by removing its later history: copy the step-3 checkpoint state.
  assert.equal(frugal('train', '--config', cfg, ...common, '--steps', '6', '--save-every', '3', '--out', run, '--keep', '2').code, 0);
  const ck3 = join(run, 'checkpoint-3');
  assert.equal(loadTrainerState(ck3)!.step, 3);
  rmSync(join(run, 'model'), { recursive: true });
  renameSync(ck3, join(run, 'model'));
  const r = frugal('train', '--out', run, '--resume', '--quiet');
  assert.equal(r.code, 0, r.err);
  const losses = (dir: string) => readMetrics(join(dir, 'metrics.jsonl')).filter((x) => x.type === 'step').map((x) => x.loss);
  assert.deepEqual(losses(run), losses(join(tmp, 'ttt-full')));
  assert.equal(loadModel(run).config.mixer, 'ttt-linear');

  for (const [flag, value, saved] of [['--lr', '0.01', '0.002'], ['--batch', '3', '2'], ['--preset', 'tiny-dense', '(not set)'], ['--data', join(tmp, 'plain'), text]]) {
    assertUserError(frugal('train', '--out', run, '--resume', flag, value), new RegExp(`${flag} ${value.replace(/[().]/g, '\\$&')} contradicts the checkpoint .* trained with ${flag} ${saved.replace(/[().]/g, '\\$&')}`));
  }
  // Flags that do not change the losses may differ.
  assert.equal(frugal('train', '--out', run, '--resume', '--quiet', '--eval-every', '1').code, 0);
  // --ctx beyond the model's context.
  assertUserError(frugal('train', ...FLAGS, '--ctx', '65', '--out', join(tmp, 'ctx')), /--ctx 65 is longer than the model's context of 64/);
});

test('--keep N keeps model/ plus N-1 older checkpoints as checkpoint-STEP/', () => {
  const run = join(tmp, 'keep');
  const r = frugal('train', ...FLAGS, '--steps', '8', '--save-every', '1', '--keep', '3', '--out', run);
  assert.equal(r.code, 0, r.err);
  const ckpts = readdirSync(run).filter((n) => n.startsWith('checkpoint-')).sort();
  assert.deepEqual(ckpts, ['checkpoint-6', 'checkpoint-7']);
  assert.equal(loadTrainerState(join(run, 'model'))!.step, 8);
  for (const c of ckpts) assert.equal(loadTrainerState(join(run, c))!.step, Number(c.slice(11)));
  // A run whose model/ is gone resumes from its newest older checkpoint.
  rmSync(join(run, 'model'), { recursive: true });
  const again = frugal('train', '--out', run, '--resume', '--quiet');
  assert.equal(again.code, 0, again.err);
  assert.equal(loadTrainerState(join(run, 'model'))!.step, 8);
});

const CFG = { vocabSize: 256, hiddenSize: 32, numLayers: 2, numHeads: 2, intermediateSize: 64, maxPositions: 64 };
const tokens = Int32Array.from(new ByteTokenizer().encode('one two three four five six seven eight nine ten '.repeat(30)));
const setup = () => ({ model: new CausalLM(CFG, { seed: 1 }), data: new BatchIterator(new PackedDataset(tokens, 16), { batchSize: 2, seed: 2 }) });
const opts = { steps: 4, lr: 1e-3, saveEvery: 2, tokenizer: new ByteTokenizer() };

test('overwrite replaces the old run only after the new one has written its first checkpoint', async () => {
  const dir = join(tmp, 'ow');
  await train({ ...setup(), ...opts, outDir: dir });
  const before = snapshot(dir);
  // The new run fails at step 2, before its first checkpoint: the old run is untouched, no staging left.
  let calls = 0;
  const failing = (m: CausalLM, x: Parameters<CausalLM['loss']>[0], y: Parameters<CausalLM['loss']>[1]) => {
    if (++calls === 2) throw new Error('boom');
    return m.loss(x, y);
  };
  await assert.rejects(train({ ...setup(), ...opts, outDir: dir, overwrite: true, lossFn: failing }), /boom/);
  assert.deepEqual(snapshot(dir), before);
  assert.deepEqual(readdirSync(tmp).filter((n) => n.startsWith('ow.')), []);
  // Interrupted before any step: nothing is replaced either.
  await train({ ...setup(), ...opts, outDir: dir, overwrite: true, shouldStop: () => true });
  assert.deepEqual(snapshot(dir), before);
  // A run that gets to its checkpoint replaces the old one, whose metrics are gone.
  const r = await train({ ...setup(), ...opts, lr: 2e-3, outDir: dir, overwrite: true });
  assert.equal(r.step, 4);
  const steps = readMetrics(join(dir, 'metrics.jsonl')).filter((x) => x.type === 'step');
  assert.deepEqual(steps.map((x) => x.step), [1, 2, 3, 4]);
  assert.deepEqual(steps.map((x) => x.loss), r.losses);
  assert.deepEqual(readdirSync(tmp).filter((n) => n.startsWith('ow.')), []);
  await assert.rejects(train({ ...setup(), ...opts, outDir: join(tmp, 'nothing'), resume: true }), /holds no checkpoint/);
});

test('a kill between the two renames of a save is finished on the next load; stale temp folders go', async () => {
  const run = join(tmp, 'swap');
  await train({ ...setup(), ...opts, outDir: run });
  const newer = loadTrainerState(run)!.step;
  // A process id that no longer runs: the owner of the leftovers below.
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
  const model = join(run, 'model');
  // State after `rename(model -> model.old-S)`, before `rename(model.tmp-S -> model)`.
  const copy = (from: string, to: string) => {
    mkdirSync(to);
    for (const n of readdirSync(from)) writeFileSync(join(to, n), readFileSync(join(from, n)));
  };
  copy(model, join(run, `model.old-${dead}-aaaa`));
  renameSync(model, join(run, `model.tmp-${dead}-aaaa`));
  // A half-written temp folder of another killed save, and a temp file of a killed metrics rewrite.
  mkdirSync(join(run, `model.tmp-${dead}-bbbb`));
  writeFileSync(join(run, `model.tmp-${dead}-bbbb`, 'model.safetensors'), 'partial');
  const m = loadModel(run);
  assert.equal(m.config.hiddenSize, 32);
  assert.equal(loadTrainerState(run)!.step, newer);
  assert.deepEqual(readdirSync(run).filter((n) => n.includes('.tmp-') || n.includes('.old-')), []);
  // A live process's temp folder is left alone.
  mkdirSync(join(run, `model.tmp-${process.pid}-cccc`));
  recoverDir(model);
  assert.equal(existsSync(join(run, `model.tmp-${process.pid}-cccc`)), true);
  rmSync(join(run, `model.tmp-${process.pid}-cccc`), { recursive: true });
  // --resume after such a kill continues from the recovered checkpoint instead of restarting.
  copy(model, join(run, `model.old-${dead}-dddd`));
  renameSync(model, join(run, `model.tmp-${dead}-dddd`));
  const r = await train({ ...setup(), ...opts, steps: 6, outDir: run, resume: true });
  assert.equal(r.losses.length, 2);
});
