// `frugal main --out DIR` guards its folder as train/distill/experiment do: a folder that holds
// anything is refused with one line (exit 2) and left as it was; --overwrite replaces it, and only
// once the new pipeline has saved its models (no staging folder is left behind); --resume continues
// an interrupted pipeline (finished models kept, the interrupted one from its checkpoint) and ends
// with the same models as an uninterrupted run.
import { assertUserError, FRUGAL_BIN, frugalIn } from '../cli-helpers.ts';
import { spawn } from 'node:child_process';
import { readMetrics } from '../../src/train/metrics.ts';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { loadTrainerState } from '../../src/train/checkpoint.ts';

const tmp = mkdtempSync(join(tmpdir(), 'frugal-mainfolder-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const frugal = frugalIn(tmp);

test('frugal main refuses a folder that holds files, a file in the way and an uncreatable path', () => {
  const run = join(tmp, 'held');
  mkdirSync(join(run, 'teacher'), { recursive: true });
  writeFileSync(join(run, 'notes.txt'), 'my notes');
  const t0 = performance.now();
  assertUserError(frugal('main', '--quick', '--quiet', '--out', run), /--out .*held already holds files \(.*notes\.txt.*\); pass --resume to continue that run, --overwrite to replace it/);
  assert.ok(performance.now() - t0 < 5000, 'the refusal comes before any work');
  assert.equal(readFileSync(join(run, 'notes.txt'), 'utf8'), 'my notes');
  assert.deepEqual(readdirSync(run).sort(), ['notes.txt', 'teacher']);
  // --resume needs a pipeline started there, not just any files.
  assertUserError(frugal('main', '--quick', '--quiet', '--out', run, '--resume'), /holds no checkpoint to resume from \(no main\.json of an earlier frugal main\)/);
  assertUserError(frugal('main', '--quick', '--quiet', '--out', run, '--resume', '--overwrite'), /exclude each other/);
  writeFileSync(join(tmp, 'plain'), 'x');
  assertUserError(frugal('main', '--quick', '--quiet', '--out', join(tmp, 'plain')), /is a file/);
  assertUserError(frugal('main', '--quick', '--quiet', '--out', '/proc/frugal-main-x'), /cannot create folder \/proc\/frugal-main-x/);
  assert.deepEqual(readdirSync(tmp).filter((n) => n.includes('.tmp-')), []);
});

test('frugal main --overwrite replaces the old folder with the finished pipeline', () => {
  const run = join(tmp, 'ow');
  mkdirSync(join(run, 'teacher'), { recursive: true });
  writeFileSync(join(run, 'teacher', 'stale.txt'), 'old');
  writeFileSync(join(run, 'notes.txt'), 'old notes');
  const r = frugal('main', '--quick', '--quiet', '--out', run, '--overwrite');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, new RegExp(`report: ${run.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/report\\.html`));
  assert.equal(existsSync(join(run, 'notes.txt')), false);
  assert.equal(existsSync(join(run, 'teacher', 'stale.txt')), false);
  for (const v of ['teacher', 'fbi', 'ttt', 'peer']) assert.equal(loadTrainerState(join(run, v, 'model'))!.step, 25, v);
  assert.ok(existsSync(join(run, 'report.html')));
  assert.deepEqual(readdirSync(tmp).filter((n) => n.startsWith('ow.')), []);
});

test('frugal main --resume continues an interrupted pipeline to the same models as an uninterrupted one', async () => {
  const run = join(tmp, 'resume');
  // Ctrl-C while the FBI student is being distilled: it stops after that step and saves.
  const child = spawn(process.execPath, [FRUGAL_BIN, 'main', '--quick', '--quiet', '--out', run], { cwd: tmp, stdio: 'ignore' });
  const code = await new Promise<number | null>((done) => {
    const poll = setInterval(() => {
      const m = join(run, 'fbi', 'metrics.jsonl');
      if (existsSync(m) && readMetrics(m).filter((x) => x.type === 'step').length >= 3) {
        clearInterval(poll);
        child.kill('SIGINT');
      }
    }, 50);
    child.on('exit', (c) => {
      clearInterval(poll);
      done(c);
    });
  });
  assert.equal(code, 130);
  const stopped = loadTrainerState(join(run, 'fbi', 'model'))!.step;
  assert.ok(stopped >= 3 && stopped < 25, `fbi stopped at step ${stopped}`);
  assert.equal(existsSync(join(run, 'ttt')), false);
  assertUserError(frugal('main', '--out', run, '--resume', '--seed', '3'), /--seed 3 contradicts the pipeline in .*started with --seed 0/);
  const r = frugal('main', '--quiet', '--out', run, '--resume');
  assert.equal(r.code, 0, r.err);
  const steps = (dir: string) => readMetrics(join(dir, 'metrics.jsonl')).filter((x) => x.type === 'step');
  for (const v of ['teacher', 'fbi', 'ttt', 'peer']) {
    assert.equal(loadTrainerState(join(run, v, 'model'))!.step, 25, v);
    // Each step once, with the losses of the uninterrupted pipeline of the previous test.
    assert.deepEqual(steps(join(run, v)).map((x) => x.step), Array.from({ length: 25 }, (_, i) => i + 1), v);
    assert.deepEqual(steps(join(run, v)).map((x) => x.loss), steps(join(tmp, 'ow', v)).map((x) => x.loss), v);
  }
});
