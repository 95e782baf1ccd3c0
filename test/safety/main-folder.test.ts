// `frugal main --out DIR` guards its folder as train/distill/experiment do: a folder that holds
// anything is refused with one line (exit 2) and left as it was; --overwrite replaces it, and only
// once the new pipeline has saved its models (no staging folder is left behind).
import { assertUserError, frugalIn } from '../cli-helpers.ts';
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
  assertUserError(frugal('main', '--quick', '--quiet', '--out', run), /--out .*held already holds files \(.*notes\.txt.*\); pass --overwrite/);
  assert.ok(performance.now() - t0 < 5000, 'the refusal comes before any work');
  assert.equal(readFileSync(join(run, 'notes.txt'), 'utf8'), 'my notes');
  assert.deepEqual(readdirSync(run).sort(), ['notes.txt', 'teacher']);
  // main has no --resume: it is an unknown flag, not a silent fresh start.
  assertUserError(frugal('main', '--quick', '--quiet', '--out', run, '--resume'), /resume/);
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
