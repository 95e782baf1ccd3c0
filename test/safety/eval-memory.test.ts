// `frugal eval` over a 50 MB text file keeps memory flat: the child's peak RSS (VmHWM, read as it
// exits) exceeds that of the same eval over a 1 MB file by less than the text itself would take to
// hold (50 MB as a one-byte string, before any copy or its ids), and every token of the file is scored.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { trainBpe } from '../../src/data/index.ts';
import { streamTokens } from '../../src/data/stream-tokens.ts';
import { CausalLM } from '../../src/models/index.ts';
import { saveCheckpoint } from '../../src/train/checkpoint.ts';
import { FRUGAL_BIN } from '../cli-helpers.ts';

const tmp = mkdtempSync(join(tmpdir(), 'frugal-evalmem-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const MB = 1 << 20;

// Seeded text of long words, so that a small byte-level BPE gives ~13 bytes per token: 50 MB is
// 4M tokens, which a tiny model scores in about half a minute here.
const WORDS = ['administration', 'circumstances', 'establishment', 'international', 'manufacturing', 'responsibility', 'constitutional', 'independence', 'relationship', 'agricultural'];
let seed = 12345;
const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8;
function text(bytes: number): string {
  const parts: string[] = [];
  for (let n = 0; n < bytes;) {
    const w = WORDS[rand() % WORDS.length] + (rand() % 12 ? ' ' : '\n');
    parts.push(w);
    n += w.length;
  }
  return parts.join('');
}
function writeText(path: string, mb: number): void {
  const fd = openSync(path, 'w');
  for (let i = 0; i < mb; i++) writeSync(fd, text(MB));
  closeSync(fd);
}

/** Peak RSS in bytes of `frugal eval` over `data`, and its JSON result and stderr. */
function evalPeak(model: string, data: string): { peak: number; result: { tokens: number; windows: number; window: number }; err: string } {
  const hwm = join(tmp, 'hwm');
  rmSync(hwm, { force: true });
  const r = spawnSync(process.execPath, ['--require', join(tmp, 'hwm.cjs'), FRUGAL_BIN, 'eval', '--model', model, '--data', data, '--window', '1024'],
    { encoding: 'utf8', env: { ...process.env, HWM_OUT: hwm }, timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(existsSync(hwm), 'the child wrote its peak RSS');
  const m = /over (\d+) tokens in (\d+) windows of (\d+)/.exec(r.stdout);
  assert.ok(m, r.stdout);
  return { peak: Number(readFileSync(hwm, 'utf8')) * 1024, result: { tokens: Number(m[1]), windows: Number(m[2]), window: Number(m[3]) }, err: r.stderr };
}

test('eval over a 50 MB text file scores all of it with flat memory', { timeout: 240_000 }, (t) => {
  writeFileSync(join(tmp, 'hwm.cjs'), `process.on('exit', () => {
  const m = /VmHWM:\\s+(\\d+)/.exec(require('fs').readFileSync('/proc/self/status', 'utf8'));
  if (m) require('fs').writeFileSync(process.env.HWM_OUT, m[1]);
});\n`);
  const bpe = trainBpe(text(100_000), { vocabSize: 400 });
  const model = join(tmp, 'm');
  saveCheckpoint(model, new CausalLM({ vocabSize: bpe.vocabSize, hiddenSize: 8, numLayers: 1, numHeads: 2, intermediateSize: 8, maxPositions: 1024 }, { seed: 1 }), { tokenizer: bpe });
  const small = join(tmp, 'small.txt');
  const big = join(tmp, 'big.txt');
  writeText(small, 1);
  writeText(big, 50);
  assert.ok(statSync(big).size >= 50 * MB);

  const base = evalPeak(model, small);
  const t0 = performance.now();
  const run = evalPeak(model, big);
  const secs = (performance.now() - t0) / 1000;
  const growth = run.peak - base.peak;
  t.diagnostic(`peak RSS: ${(base.peak / MB).toFixed(0)} MB over 1 MB, ${(run.peak / MB).toFixed(0)} MB over 50 MB (+${(growth / MB).toFixed(1)} MB); ${secs.toFixed(1)} s`);
  // Holding the text alone would add 50 MB (a one-byte string), its read buffer as much again.
  assert.ok(growth < 40 * MB, `peak RSS grew by ${(growth / MB).toFixed(1)} MB from a 1 MB to a 50 MB file`);

  // Every token was scored: windows of 1024 over all N ids, each predicting all but its first token.
  let n = 0;
  for (const piece of streamTokens(big, bpe)) n += piece.length;
  const W = run.result.window;
  const windows = Math.floor(n / W) + (n % W >= 2 ? 1 : 0);
  assert.equal(run.result.windows, windows);
  assert.equal(run.result.tokens, n - windows - (n % W === 1 ? 1 : 0));
  // Progress goes out as the file is read.
  assert.match(run.err, /eval: read 25\/50 MiB, \d+ windows scored/);
  assert.match(run.err, /eval: read 50\/50 MiB/);
});
