// SIGKILL at random moments during training (checkpoint every step), then `--resume` with no other
// flags, again and again: the final metrics equal an uninterrupted run's bit for bit, every kill
// leaves a loadable checkpoint, and no temporary folders pile up.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { Rng } from '../../src/tensor/index.ts';
import { loadModel, loadTrainerState } from '../../src/train/checkpoint.ts';
import { latestCheckpoint } from '../../src/train/trainer.ts';

const BIN = join(resolve(import.meta.dirname, '..', '..'), 'bin', 'frugal.js');
const tmp = mkdtempSync(join(tmpdir(), 'frugal-kill-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const text = join(tmp, 'text.txt');
writeFileSync(text, 'She sells sea shells by the sea shore, and the shells she sells are sea shells for sure. '.repeat(50));
const STEPS = 100;
const FLAGS = ['--preset', 'micro-dense', '--data', text, '--steps', String(STEPS), '--batch', '2', '--ctx', '16', '--save-every', '1',
  '--eval-every', '25', '--eval-sequences', '2', '--quiet'];

const stepsLogged = (dir: string) => {
  try {
    return readFileSync(join(dir, 'metrics.jsonl'), 'utf8').split('\n').filter((l) => l.includes('"step"')).length;
  } catch {
    return 0;
  }
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts the run (or resumes it) and SIGKILLs it `delay` ms after it has logged a new step; resolves with whether it was killed. */
function runAndMaybeKill(args: string[], dir: string, delay: number | undefined): Promise<{ killed: boolean; code: number | null; err: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: tmp, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    let killed = false;
    const start = stepsLogged(dir);
    const poll = setInterval(() => {
      if (delay === undefined || stepsLogged(dir) <= start) return;
      clearInterval(poll);
      setTimeout(() => {
        if (child.exitCode === null) {
          killed = true;
          child.kill('SIGKILL');
        }
      }, delay);
    }, 5);
    child.on('exit', (code) => {
      clearInterval(poll);
      done({ killed, code, err });
    });
  });
}

test('SIGKILL at random moments, then --resume: losses equal an uninterrupted run bit for bit', async () => {
  const full = join(tmp, 'full');
  const r0 = spawnSync(process.execPath, [BIN, 'train', ...FLAGS, '--out', full], { cwd: tmp, encoding: 'utf8' });
  assert.equal(r0.status, 0, r0.stderr);

  const run = join(tmp, 'killed');
  const rng = new Rng(20261201);
  let kills = 0;
  for (let attempt = 0; attempt < 20; attempt++) {
    const resume = existsSync(run) && latestCheckpoint(run) !== undefined;
    const args = resume ? ['train', '--out', run, '--resume', '--quiet'] : ['train', ...FLAGS, '--out', run, ...(existsSync(run) ? ['--overwrite'] : [])];
    // Five kills at 0-150 ms after a step was logged (mid-step or mid-save), then let it finish.
    const r = await runAndMaybeKill(args, run, kills < 5 ? Math.floor(rng.uniform() * 150) : undefined);
    if (!r.killed) {
      assert.equal(r.code, 0, r.err);
      break;
    }
    kills++;
    // Whatever the moment, the run folder holds a complete checkpoint that loads, or (killed before
    // the first save finished) none at all; the next attempt then starts over with --overwrite.
    const ck = latestCheckpoint(run);
    if (ck) {
      assert.equal(loadModel(ck).config.hiddenSize, 32);
      assert.ok(loadTrainerState(ck)!.step >= 1);
    } else {
      assert.equal(existsSync(join(run, 'model')), false);
    }
    assert.deepEqual(readdirSync(run).filter((n) => n.includes('.tmp-') || n.includes('.old-')), [], 'latestCheckpoint cleaned the leftovers');
    await sleep(1);
  }
  assert.equal(kills, 5, 'five runs were killed before the end');
  const metrics = (dir: string) => readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
    .map(({ tokens_per_s: _t, ...rest }) => rest);
  const a = metrics(full);
  const b = metrics(run);
  assert.equal(b.filter((x) => x.type === 'step').length, STEPS);
  // Losses, learning rates, gradient norms and validation losses are identical numbers.
  assert.deepEqual(b, a);
  assert.deepEqual(readdirSync(tmp).filter((n) => n.includes('.tmp-') || n.includes('.old-')), []);
});
