// Cases found by probing the commands again: each ends in one clear line, exit 2, at once (no
// hang, no abort): absurd --threads, a model too big for this machine's memory, FIFOs as a config,
// task file, GGUF file or trainer state; pack into a folder that holds files; and a window far
// longer than the text allocates nothing big.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ByteTokenizer, tokenizeDocuments } from '../../src/data/index.ts';
import { perplexity } from '../../src/eval/perplexity.ts';
import { CausalLM } from '../../src/models/index.ts';
import { saveCheckpoint } from '../../src/train/checkpoint.ts';
import { assertUserError, frugalIn, type CliResult } from '../cli-helpers.ts';

const tmp = mkdtempSync(join(tmpdir(), 'frugal-probe-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const frugal = frugalIn(tmp);
const text = join(tmp, 't.txt');
writeFileSync(text, 'hello world, this is a line of text.\n'.repeat(50));
const TRAIN = ['--data', text, '--steps', '1', '--ctx', '16', '--batch', '2', '--quiet', '--eval-sequences', '1'];
const fifo = (name: string) => {
  const p = join(tmp, name);
  execFileSync('mkfifo', [p]);
  return p;
};
/** A user error that also came quickly (node start-up included). */
function quickError(run: () => CliResult, pattern: RegExp): void {
  const t0 = performance.now();
  const r = run();
  assertUserError(r, pattern);
  assert.ok(performance.now() - t0 < 10_000, `took ${(performance.now() - t0).toFixed(0)} ms`);
}

test('--threads beyond what the system can start is refused instead of aborting', () => {
  quickError(() => frugal('train', '--preset', 'micro-dense', ...TRAIN, '--threads', '1000000', '--out', join(tmp, 'r1')), /--threads must be an integer from 1 to 1024, got 1000000/);
});

test('a model config too big for this machine is refused before anything is allocated', () => {
  // 1024 layers of width 1024: about 1.6e10 parameters, within the config limits, 256 GB to train.
  const cfg = join(tmp, 'huge.json');
  writeFileSync(cfg, JSON.stringify({ hiddenSize: 1024, numLayers: 1024, numHeads: 16, intermediateSize: 4096, maxPositions: 64 }));
  assert.ok(1.6e10 * 16 > totalmem());
  quickError(() => frugal('train', '--config', cfg, ...TRAIN, '--out', join(tmp, 'r2')), /huge\.json: training a model of about 1\.\d+e\+10 parameters needs about \d+\.\d GiB .* more than this machine's/);
});

test('FIFOs as a model config, task file, GGUF file or trainer state are refused instead of blocking', () => {
  quickError(() => frugal('train', '--config', fifo('cfg.json'), ...TRAIN, '--out', join(tmp, 'r3')), /cfg\.json is a named pipe \(FIFO\), not a file/);
  const model = join(tmp, 'm');
  saveCheckpoint(model, new CausalLM({ vocabSize: 256, hiddenSize: 16, numLayers: 1, numHeads: 2, intermediateSize: 16, maxPositions: 64 }, { seed: 1 }));
  quickError(() => frugal('eval', '--model', model, '--tasks', fifo('tasks.jsonl')), /tasks\.jsonl is a named pipe \(FIFO\), not a file/);
  quickError(() => frugal('info', fifo('model.gguf')), /model\.gguf is a named pipe \(FIFO\), not a file/);
  // A run folder whose checkpoint's trainer_state.json is a FIFO.
  const run = join(tmp, 'run');
  const r = frugal('train', '--preset', 'micro-dense', ...TRAIN, '--out', run);
  assert.equal(r.code, 0, r.err);
  rmSync(join(run, 'model', 'trainer_state.json'));
  execFileSync('mkfifo', [join(run, 'model', 'trainer_state.json')]);
  quickError(() => frugal('train', '--out', run, '--resume', '--quiet'), /trainer_state\.json is a named pipe \(FIFO\), not a file/);
});

test('a window far longer than the text (TTT models allow it) scores the text without a huge buffer', async () => {
  const model = new CausalLM({ vocabSize: 256, hiddenSize: 8, numLayers: 1, numHeads: 2, intermediateSize: 8, maxPositions: 64, mixer: 'ttt-linear', ttt: { miniBatch: 4 } } as object, { seed: 1 });
  // More tokens than the first window buffer of a stream holds (64K), so it has to grow.
  const ids = tokenizeDocuments(['a short text, streamed in pieces. '.repeat(2000)], new ByteTokenizer());
  assert.ok(ids.length > 1 << 16);
  const pieces = function* () {
    for (let i = 0; i < ids.length; i += 1000) yield ids.subarray(i, i + 1000);
  };
  // 2^40 positions could not even be allocated (typed arrays stop far below that).
  const streamed = await perplexity(model, pieces(), { window: 2 ** 40 });
  assert.equal(streamed.windows, 1);
  assert.equal(streamed.tokens, ids.length - 1);
  assert.deepEqual(streamed, await perplexity(model, ids, { window: 2 ** 40 }));
});

test('frugal pack does not write into a folder that holds files unless --overwrite', () => {
  const fbi = join(tmp, 'fbi');
  saveCheckpoint(fbi, new CausalLM({ vocabSize: 256, hiddenSize: 16, numLayers: 1, numHeads: 2, intermediateSize: 16, maxPositions: 64, linear: 'fbi' }, { seed: 1 }), { tokenizer: new ByteTokenizer() });
  const other = join(tmp, 'other');
  saveCheckpoint(other, new CausalLM({ vocabSize: 256, hiddenSize: 16, numLayers: 1, numHeads: 2, intermediateSize: 16, maxPositions: 64 }, { seed: 2 }));
  const before = readFileSync(join(other, 'model.safetensors'));
  quickError(() => frugal('pack', fbi, other), /other already holds files \(config\.json, model\.safetensors\); pass --overwrite/);
  assert.deepEqual(readFileSync(join(other, 'model.safetensors')), before);
  const r = frugal('pack', fbi, other, '--overwrite');
  assert.equal(r.code, 0, r.err);
  assert.notDeepEqual(readFileSync(join(other, 'model.safetensors')), before);
  assert.ok(existsSync(join(other, 'tokenizer.json')));
});
