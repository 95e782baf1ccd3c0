// frugal train --engine torch: a run stopped after step 3 (--stop-after, which leaves the checkpoint
// a kill after that step's save leaves) and continued with --resume gives bitwise the losses, gradient
// norms, flip-flop ratios and final weights of the uninterrupted run (CPU, gloo, one process with one
// thread: the torch path is deterministic there; with two processes the losses still match bitwise
// but gradients move by float32 rounding, see README "Training with PyTorch"). An occupied --out is refused, --overwrite replaces
// it, and the other engine cannot continue a torch checkpoint. Skipped, saying so, without PyTorch.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { pythonWithTorch } from '../../src/train/torch-engine.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
const SKIP = pythonWithTorch() ? false : 'PyTorch is not installed (no python3 imports torch): torch-engine resume not run';

const frugal = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli', 'dispatch.ts'), ...args], { encoding: 'utf8', cwd: ROOT, timeout: 600_000 });
const steps = (dir: string) => readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.type === 'step');
const oneLine = (r: ReturnType<typeof frugal>, re: RegExp) => {
  assert.equal(r.status, 2, r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], re);
};

test('torch engine: stop after step 3, resume: bitwise the uninterrupted run; --out refusal and --overwrite', { skip: SKIP }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'frugal-tresume-'));
  try {
    const run = ['train', '--engine', 'torch', '--nproc', '1', '--preset', 'fbi-tiny', '--steps', '6', '--batch', '4', '--ctx', '16', '--warmup', '1',
      '--eval-every', '0', '--eval-sequences', '4', '--save-every', '0', '--quiet'];
    const ref = join(dir, 'ref'), cut = join(dir, 'cut');
    let r = frugal([...run, '--out', ref]);
    assert.equal(r.status, 0, r.stderr);

    // An older run in the folder: refused without --overwrite, replaced with it.
    mkdirSync(cut);
    writeFileSync(join(cut, 'old.txt'), 'an older run\n');
    oneLine(frugal([...run, '--out', cut]), /^frugal: --out .*cut already holds files \(old\.txt\); pass --resume to continue that run, --overwrite to replace it/);
    r = frugal([...run, '--out', cut, '--overwrite', '--stop-after', '3']);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(!existsSync(join(cut, 'old.txt')), 'the old run was not replaced');
    assert.deepEqual(readdirSync(dir).sort(), ['cut', 'ref'], 'a staging folder was left behind');
    const st = JSON.parse(readFileSync(join(cut, 'model', 'trainer_state.json'), 'utf8'));
    assert.equal(st.step, 3);
    assert.deepEqual([st.data.epoch, st.data.pos], [0, 12]);
    assert.equal(steps(cut).length, 3);

    oneLine(frugal(['train', '--resume', '--engine', 'native', '--out', cut, '--quiet']), /^frugal: --engine native contradicts the checkpoint in .*, which the torch engine wrote/);
    oneLine(frugal(['train', '--resume', '--steps', '7', '--out', cut, '--quiet']), /^frugal: --steps 7 contradicts the checkpoint/);
    r = frugal(['train', '--resume', '--out', cut, '--quiet']);
    assert.equal(r.status, 0, r.stderr);

    const a = steps(ref), b = steps(cut);
    assert.equal(b.length, 6);
    const pick = (s: Record<string, number>[]) => s.map((x) => [x.step, x.loss, x.grad_norm, x.lr, x.flip_flop, x.tokens]);
    assert.deepEqual(pick(b), pick(a));
    const w = (d: string) => readFileSync(join(d, 'model', 'model.safetensors'));
    assert.ok(w(ref).equals(w(cut)), 'final weights differ');
    console.log(`# resume: losses ${b.map((x) => x.loss.toFixed(5)).join(' ')} equal bitwise (steps 4-6 after the resume); weights equal`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
