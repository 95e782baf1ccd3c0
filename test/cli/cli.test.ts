// End-to-end runs of the `frugal` command: train a micro model, then info, generate and eval on it;
// user mistakes exit with code 2 and one line; Ctrl-C during training leaves a loadable checkpoint.
import { assertUserError, FRUGAL_BIN, frugalIn } from '../cli-helpers.ts';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CausalLM } from '../../src/models/index.ts';
import { loadModel, saveCheckpoint } from '../../src/train/checkpoint.ts';
import { readMetrics } from '../../src/train/metrics.ts';

const tmp = mkdtempSync(join(tmpdir(), 'frugal-cli-'));
const text = join(tmp, 'text.txt');
const run = join(tmp, 'run');

const frugal = frugalIn(tmp);


before(() => {
  writeFileSync(text, 'Call me Ishmael. Some years ago, never mind how long precisely, having little money in my purse. '.repeat(60));
});
after(() => rmSync(tmp, { recursive: true, force: true }));

test('train a micro model, then info, generate and eval on its checkpoint', () => {
  const t = frugal('train', '--preset', 'micro-dense', '--data', text, '--out', run, '--steps', '20', '--batch', '4', '--ctx', '32',
    '--eval-every', '10', '--save-every', '10', '--lr', '1e-2', '--quiet');
  assert.equal(t.code, 0, t.err);
  assert.match(t.out, /finished at step 20\/20; validation perplexity [\d.]+/);
  assert.ok(existsSync(join(run, 'report.html')) && existsSync(join(run, 'loss.png')));
  assert.deepEqual([...readFileSync(join(run, 'loss.png')).subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10]);
  const recs = readMetrics(join(run, 'metrics.jsonl'));
  assert.equal(recs.filter((r) => r.type === 'step').length, 20);
  assert.equal(recs.filter((r) => r.type === 'eval').length, 2);

  const info = frugal('info', run, '--json');
  assert.equal(info.code, 0, info.err);
  const j = JSON.parse(info.out.trim().split('\n').at(-1)!);
  const model = loadModel(run);
  assert.equal(j.parameters, model.numParameters());
  assert.equal(j.bits_per_param, 32);
  // f32 weights: 4 bytes per parameter plus a small safetensors header.
  assert.ok(j.size_on_disk_bytes >= 4 * j.parameters && j.size_on_disk_bytes < 4 * j.parameters + 16384);

  const g1 = frugal('generate', '--model', run, '--prompt', 'Call me', '--max-new-tokens', '12', '--temperature', '0');
  const g2 = frugal('generate', '--model', run, '--prompt', 'Call me', '--max-new-tokens', '12', '--temperature', '0');
  assert.equal(g1.code, 0, g1.err);
  assert.ok(g1.out.startsWith('Call me') && g1.out.length > 'Call me'.length);
  assert.equal(g1.out, g2.out);

  const tasks = join(tmp, 'tasks.jsonl');
  writeFileSync(tasks, `${JSON.stringify({ context: 'Call me', choices: [' Ishmael.', ' Zqxvbn.'], gold: 0 })}\n`);
  const e = frugal('eval', '--model', run, '--data', text, '--window', '32', '--tasks', tasks, '--by-position', '--buckets', '2', '--json');
  assert.equal(e.code, 0, e.err);
  const r = JSON.parse(e.out.trim().split('\n').at(-1)!);
  assert.ok(r.perplexity.perplexity > 1 && r.perplexity.perplexity < 256, `ppl ${r.perplexity.perplexity}`);
  assert.equal(r.by_position.length, 2);
  assert.equal(r.multiple_choice.items, 1);
});

test('an FBI model packed with `frugal pack IN OUT` reports 1-bit linears and generates like the latent model', () => {
  const fbi = join(tmp, 'fbi'), packed = join(tmp, 'fbi-packed');
  const t = frugal('train', '--preset', 'tiny-fbi', '--data', text, '--out', fbi, '--steps', '3', '--batch', '2', '--ctx', '32',
    '--eval-every', '0', '--save-every', '0', '--quiet');
  assert.equal(t.code, 0, t.err);
  const p = frugal('pack', fbi, packed);
  assert.equal(p.code, 0, p.err);
  const latent = JSON.parse(frugal('info', fbi, '--json').out.trim().split('\n').at(-1)!);
  const pk = JSON.parse(frugal('info', packed, '--json').out.trim().split('\n').at(-1)!);
  assert.equal(pk.parameters, latent.parameters);
  assert.equal(pk.binarized_parameters, latent.binarized_parameters);
  assert.ok(pk.binarized_parameters > 0);
  assert.ok(Math.abs(pk.bits_per_param - latent.bits_per_param) < 1e-9);
  assert.ok(pk.size_on_disk_bytes * 8 < latent.size_on_disk_bytes, 'packed weights at least 8x smaller on disk');
  const g = (dir: string) => frugal('generate', '--model', dir, '--prompt', 'Call me', '--max-new-tokens', '8', '--temperature', '0');
  const [a, b] = [g(fbi), g(packed)];
  assert.equal(a.code, 0, a.err);
  assert.equal(b.code, 0, b.err);
  assert.equal(b.out, a.out, 'packed and latent greedy text differ');
});

test('user mistakes exit with code 2 and one clear line', () => {
  assertUserError(frugal('generate', '--model', join(tmp, 'nope'), '--prompt', 'x'), /does not exist/);
  const bad = join(tmp, 'bad');
  mkdirSync(bad, { recursive: true });
  writeFileSync(join(bad, 'config.json'), '{"vocab_size": 256, ');
  assertUserError(frugal('info', bad), /not valid JSON/);
  assertUserError(frugal('train', '--preset', 'no-such-preset', '--data', text, '--out', join(tmp, 'x')), /unknown preset 'no-such-preset'/);
  assertUserError(frugal('train', '--steps', 'many', '--data', text), /--steps must be a number/);
  assertUserError(frugal('train', '--lr', '-1', '--data', text), /--lr must be > 0/);
  assertUserError(frugal('generate', '--model', run, '--top-p', '2'), /top-p must be in/);
  assertUserError(frugal('eval', '--model', run, '--bogus'), /unknown option --bogus/);
  assertUserError(frugal('frobnicate'), /unknown command/);
  const other = join(tmp, 'vocab300');
  saveCheckpoint(other, new CausalLM({ vocabSize: 300, hiddenSize: 16, numLayers: 1, numHeads: 2, intermediateSize: 32, maxPositions: 32 }));
  assertUserError(frugal('distill', '--teacher', run, '--student', other, '--data', text, '--steps', '1'), /vocabulary mismatch: teacher has 256 tokens, student 300/);
  for (const cmd of ['train', 'distill', 'eval', 'generate', 'pack', 'bench', 'info', 'main']) {
    const h = frugal(cmd, '--help');
    assert.equal(h.code, 0);
    assert.match(h.out, new RegExp(`^frugal ${cmd}: .*\\n\\nusage: frugal ${cmd}`));
  }
});

test('Ctrl-C during training stops cleanly and leaves the last checkpoint loadable', async () => {
  const out = join(tmp, 'sigint');
  const child = spawn(process.execPath, [FRUGAL_BIN, 'train', '--preset', 'micro-dense', '--data', text, '--out', out, '--steps', '100000',
    '--batch', '4', '--ctx', '32', '--save-every', '5', '--eval-every', '0', '--quiet'], { cwd: tmp });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const state = join(out, 'model', 'trainer_state.json');
  const t0 = Date.now();
  while (!existsSync(state) && Date.now() - t0 < 30000) await new Promise((r) => setTimeout(r, 100));
  assert.ok(existsSync(state), `no checkpoint appeared; stderr: ${err}`);
  child.kill('SIGINT');
  const code = await new Promise<number | null>((r) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 20000);
    child.on('exit', (c) => {
      clearTimeout(timer);
      r(c);
    });
  });
  assert.equal(code, 130, err);
  const st = JSON.parse(readFileSync(state, 'utf8'));
  const steps = readMetrics(join(out, 'metrics.jsonl')).filter((r) => r.type === 'step').length;
  // The interrupted run saved the step it finished: checkpoint and log agree.
  assert.equal(st.step, steps);
  assert.ok(st.step >= 5 && st.step < 100000);
  assert.ok(loadModel(out).numParameters() > 0);
});

test('frugal main --quick trains, distills, evaluates and prints the comparison table', () => {
  const out = join(tmp, 'main');
  const r = frugal('main', '--quick', '--out', out, '--quiet');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /model\s+val ppl\s+params\s+bits\/param\s+size on disk\s+train tok\/s\s+gen tok\/s/);
  const row = (name: string) => r.out.split('\n').find((l) => l.startsWith(`${name} `));
  for (const name of ['teacher', 'fbi', 'ttt', 'peer']) {
    const line = row(name);
    if (!line) {
      assert.match(r.out, new RegExp(`${name}: not available in this build`));
      continue;
    }
    const ppl = Number(line.trim().split(/\s+/)[1]);
    // Byte-level validation perplexity after training: below uniform (256), above 1.
    assert.ok(ppl > 1 && ppl < 256, `${name} perplexity ${ppl}`);
  }
  assert.ok(row('teacher'), 'the dense teacher always trains');
  const fbi = row('fbi');
  if (fbi) assert.ok(Number(fbi.trim().split(/\s+/)[3]) < 32, 'the FBI student stores fewer than 32 bits per parameter');
  assert.match(r.out, /report: .*report\.html/);
  // Plug-in metrics in the per-step log: FBI flip-flop ratio and bits/param, PEER expert usage.
  const steps = (name: string) => readMetrics(join(out, name, 'metrics.jsonl')).filter((x) => x.type === 'step');
  if (fbi) for (const s of steps('fbi')) assert.ok((s.flip_flop as number) >= 0 && (s.flip_flop as number) <= 1 && (s.bits_per_param as number) < 32);
  if (row('peer')) for (const s of steps('peer')) assert.ok((s.expert_usage as number) > 0 && (s.expert_usage as number) <= 1);
  assert.ok(existsSync(join(out, 'report.html')) && existsSync(join(out, 'teacher', 'model', 'model.safetensors')));
});
