// frugal info | generate | eval --model FILE.gguf, and one clear line (exit 2) for bad GGUF files.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { spmTokenizerMetadata } from '../../src/data/gguf-tokenizer.ts';
import { ggufFromModel } from '../../src/infer/gguf-model.ts';
import { CausalLM } from '../../src/models/index.ts';

const BIN = resolve(import.meta.dirname, '..', '..', 'bin', 'frugal.js');
const tmp = mkdtempSync(join(tmpdir(), 'frugal-gguf-cli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const frugal = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: tmp });

const pieces = ['\u2581the', '\u2581a', 'he', 'th', 'in'];
const tokens = ['<unk>', '<s>', '</s>', ...Array.from({ length: 256 }, (_, i) => `<0x${i.toString(16).toUpperCase().padStart(2, '0')}>`), ...pieces];
const model = new CausalLM({ vocabSize: tokens.length, hiddenSize: 128, numLayers: 1, numHeads: 4, numKvHeads: 2, intermediateSize: 256, maxPositions: 128 }, { seed: 9 });
const meta = spmTokenizerMetadata(tokens, tokens.map((_, i) => -i), tokens.map((_, i) => (i === 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1)), { bos: 1, eos: 2, unk: 0 });
const good = join(tmp, 'm.gguf');
writeFileSync(good, ggufFromModel(model, { linearType: 'Q4_0', embeddingType: 'Q8_0', metadata: meta }));

function assertUserError(r: ReturnType<typeof frugal>, pattern: RegExp) {
  assert.equal(r.status, 2, `exit code (stderr: ${r.stderr})`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line: ${r.stderr}`);
  assert.match(lines[0], /^frugal: /);
  assert.doesNotMatch(lines[0], /internal error/);
  assert.match(lines[0], pattern);
}

test('info, generate and eval read a GGUF file with its tokenizer', () => {
  const info = frugal('info', good, '--json');
  assert.equal(info.status, 0, info.stderr);
  const j = JSON.parse(info.stdout);
  assert.deepEqual(j.gguf_weight_types, { Q8_0: tokens.length * 128 * 2, Q4_0: 128 * 128 * 2 + 128 * 64 * 2 + 128 * 256 * 3 });
  assert.match(j.tokenizer, new RegExp(`^${tokens.length} tokens`));
  assert.ok(j.bits_per_param < 8 && j.bits_per_param > 4, `bits/param ${j.bits_per_param}`);
  const gen = frugal('generate', '--model', good, '--prompt', 'the a', '--max-new-tokens', '6', '--temperature', '0');
  assert.equal(gen.status, 0, gen.stderr);
  assert.ok(gen.stdout.startsWith('the a'));
  const text = join(tmp, 't.txt');
  writeFileSync(text, 'the thin hen in the hat '.repeat(20));
  const ev = frugal('eval', '--model', good, '--data', text, '--window', '32', '--json');
  assert.equal(ev.status, 0, ev.stderr);
  const p = JSON.parse(ev.stdout).perplexity;
  assert.ok(p.perplexity > 1 && Number.isFinite(p.perplexity));
  const lc = frugal('eval', '--model', good, '--data', text, '--window', '32', '--llama-cpp', '--json');
  assert.equal(lc.status, 0, lc.stderr);
  const q = JSON.parse(lc.stdout).perplexity;
  // Whole windows only, the second half of each scored.
  assert.equal(q.tokens, q.windows * (32 - 1 - 16));
});

test('corrupt, truncated and unsupported GGUF files give one clear line and exit 2', () => {
  const bytes = readFileSync(good);
  const write = (name: string, b: Uint8Array) => {
    writeFileSync(join(tmp, name), b);
    return join(tmp, name);
  };
  assertUserError(frugal('info', write('cut.gguf', bytes.subarray(0, bytes.length - 4000))), /ends past the end of the file \(\d+ bytes\): the file is truncated or corrupt/);
  assertUserError(frugal('info', write('head.gguf', bytes.subarray(0, 300))), /the file is truncated or corrupt/);
  assertUserError(frugal('eval', '--model', write('magic.gguf', Buffer.from('not a gguf file at all, just text'))), /not a GGUF file/);
  const arch = Buffer.from(bytes);
  const at = arch.indexOf(Buffer.from('general.architecture')) + 'general.architecture'.length + 4 + 8;
  arch.set(Buffer.from('gemma'), at);
  assertUserError(frugal('generate', '--model', write('arch.gguf', arch), '--prompt', 'x'), /architecture 'gemma' is not supported \(supported: llama, qwen3\)/);
  assertUserError(frugal('info', join(tmp, 'missing.gguf')), /missing\.gguf does not exist/);
});
