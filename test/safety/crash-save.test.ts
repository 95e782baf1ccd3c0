// Crashes at any moment of a save: a child process saves checkpoints in a loop and is SIGKILLed
// after a random delay, many times; each time the folder loads as one complete checkpoint (all
// weights from the same save), `info`/`generate` work on it and no temporary folders pile up.
// A full disk (a small tmpfs, when this machine lets the test mount one) gives one clear error and
// leaves the previous checkpoint intact.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { ByteTokenizer } from '../../src/data/index.ts';
import { CausalLM } from '../../src/models/index.ts';
import { Rng } from '../../src/tensor/index.ts';
import { loadModel, loadModelTokenizer, loadTrainerState, saveCheckpoint } from '../../src/train/checkpoint.ts';
import { latestCheckpoint } from '../../src/train/trainer.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'frugal.js');
const CHILD = join(import.meta.dirname, 'save-loop.child.ts');
const tmp = mkdtempSync(join(tmpdir(), 'frugal-crash-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function killDuringSaves(dir: string, delayMs: number): Promise<void> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dir], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.stdout.once('data', () => setTimeout(() => child.kill('SIGKILL'), delayMs));
    child.on('exit', (code, signal) => (signal === 'SIGKILL' ? done() : fail(new Error(`child ended with ${code}: ${err}`))));
  });
}

/** The checkpoint holds one save: every weight equals the save number recorded in its trainer state. */
function assertOneSave(dir: string): number {
  const model = loadModel(dir);
  const k = loadTrainerState(dir)!.step;
  for (const [name, t] of model.namedParameters()) {
    const d = t.dataSync();
    for (let i = 0; i < d.length; i++) if (d[i] !== k) assert.fail(`${name}[${i}] = ${d[i]} in a checkpoint of save ${k}`);
  }
  assert.equal(loadModelTokenizer(dir)?.vocabSize, 256);
  return k;
}

test('SIGKILL during checkpoint writes (random delays, many trials) always leaves one complete checkpoint', async () => {
  const run = join(tmp, 'run');
  mkdirSync(run);
  const model = join(run, 'model');
  const rng = new Rng(7);
  const TRIALS = 20;
  const seen = new Set<number>();
  for (let trial = 0; trial < TRIALS; trial++) {
    await killDuringSaves(model, Math.floor(rng.uniform() * 120));
    // As a later `--resume` finds it, and as info/generate load it.
    const ck = latestCheckpoint(run);
    if (!ck) {
      // Killed before its first save completed: nothing was saved, and nothing half-written stays.
      assert.deepEqual(readdirSync(run), []);
      continue;
    }
    seen.add(assertOneSave(ck));
    assert.deepEqual(readdirSync(run), ['model'], `trial ${trial}: leftovers ${readdirSync(run)}`);
    if (trial % 8 === 7) {
      const info = spawnSync(process.execPath, [BIN, 'info', run], { encoding: 'utf8' });
      assert.equal(info.status, 0, info.stderr);
      assert.match(info.stdout, /weights: +all finite/);
      const gen = spawnSync(process.execPath, [BIN, 'generate', '--model', run, '--prompt', 'a', '--max-new-tokens', '3'], { encoding: 'utf8' });
      assert.equal(gen.status, 0, gen.stderr);
    }
  }
  // The kills fell at different moments: different saves survived (how many depends on the machine's speed).
  assert.ok(seen.size >= 2, `only saves ${[...seen]} survived`);
});

test('a full disk gives one clear error and leaves the previous checkpoint intact', (t) => {
  const mnt = join(tmp, 'small');
  mkdirSync(mnt);
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt], { encoding: 'utf8' });
  if (m.status !== 0) {
    t.skip(`cannot mount a tmpfs here (${(m.stderr || m.error?.message || '').trim()}); needs root`);
    return;
  }
  try {
    const tok = new ByteTokenizer();
    const small = new CausalLM({ vocabSize: 256, hiddenSize: 32, numLayers: 1, numHeads: 2, intermediateSize: 64, maxPositions: 64 }, { seed: 1 });
    const dir = join(mnt, 'model');
    saveCheckpoint(dir, small, { tokenizer: tok, state: { step: 1, totalSteps: 2, rng: [1], tokens: 1 } });
    // About 2.5 MB of weights: does not fit next to the first checkpoint in 1 MiB.
    const big = new CausalLM({ vocabSize: 256, hiddenSize: 256, numLayers: 1, numHeads: 2, intermediateSize: 1024, maxPositions: 64 }, { seed: 2 });
    assert.throws(() => saveCheckpoint(dir, big, { tokenizer: tok, state: { step: 2, totalSteps: 2, rng: [2], tokens: 2 } }),
      (e: Error) => /failed to write folder .*ENOSPC.*previous contents are unchanged/.test(e.message) && !e.message.includes('\n'));
    assert.equal(loadTrainerState(dir)!.step, 1);
    assert.equal(loadModel(dir).config.hiddenSize, 32);
    assert.deepEqual(readdirSync(mnt), ['model']);
    // The CLI: a training run that cannot save exits with one line and code 2, the old checkpoint stays.
    const text = join(tmp, 'text.txt');
    writeFileSync(text, 'all work and no play makes a dull model. '.repeat(40));
    const r = spawnSync(process.execPath, [BIN, 'train', '--preset', 'tiny-dense', '--data', text, '--out', join(mnt, 'run'), '--steps', '1',
      '--batch', '1', '--ctx', '8', '--eval-every', '0', '--eval-sequences', '1', '--quiet'], { encoding: 'utf8' });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr.trim(), /^frugal: failed to write folder .*ENOSPC[^\n]*$/);
    assert.equal(loadTrainerState(dir)!.step, 1);
  } finally {
    spawnSync('umount', [mnt]);
  }
});
