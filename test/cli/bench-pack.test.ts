// `frugal bench` hands benchmark options through as --key value and rejects unknown ones;
// `frugal pack --head int8` writes an int8 LM head that loads and generates; bad values exit 2.
import { assertUserError, frugalIn } from '../cli-helpers.ts';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { checkBenchOptions, splitBenchArgs } from '../../src/cli/bench.ts';
import { loadPackedModel } from '../../src/infer/packed-linear.ts';
import { Int8Head } from '../../src/nn/packed.ts';
import { CausalLM } from '../../src/models/index.ts';
import { PRESETS } from '../../src/models/presets.ts';
import { saveCheckpoint } from '../../src/train/checkpoint.ts';

const tmp = mkdtempSync(join(tmpdir(), 'frugal-bench-pack-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const frugal = frugalIn(tmp);


test('benchmark options arrive as a --key value record; unknown keys are rejected', () => {
  const { own, extra } = splitBenchArgs(['fbi-generate', '--preset', 'fbi-130m', '--json', '--reps=2', '--f32-baseline']);
  assert.deepEqual(own, ['fbi-generate', '--json']);
  assert.deepEqual(extra, { preset: 'fbi-130m', reps: '2', 'f32-baseline': true });
  // The usage's `--` before the benchmark's options is a separator, not an option.
  assert.deepEqual(splitBenchArgs(['serve', '--json', '--', '--reps', '5']), { own: ['serve', '--json'], extra: { reps: '5' } });
  assert.doesNotThrow(() => checkBenchOptions('x', extra, ['preset', 'reps', 'f32-baseline']));
  assert.throws(() => checkBenchOptions('x', { presett: 'a' }, ['preset']), /benchmark x has no option --presett; its options: --preset/);
});

test('frugal bench fbi-generate honours --preset and rejects unknown options and bad values', () => {
  const r = frugal('bench', 'fbi-generate', '--preset', 'fbi-tiny', '--reps', '1', '--decode', '2', '--prefill', '4', '--json');
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out.trim().split('\n').at(-1)!);
  assert.equal(j.preset, 'fbi-tiny');
  assert.equal(j.decode_steps, 2);
  assert.ok(j.packed_tokens_per_s > 0 && j.copy_bandwidth_GBps > 0);
  assert.equal(j.path, 'fused');
  assert.ok(j.decode_phases_ms_per_token.products > 0, 'the fused path reports its phases');
  assert.equal(j.peer, undefined, 'no peer without --peer or LLAMA_PEER_DIR');
  assertUserError(frugal('bench', 'fbi-generate', '--presett', 'fbi-130m'), /benchmark fbi-generate has no option --presett/);
  assertUserError(frugal('bench', 'ttt-scan', '--length', '5'), /benchmark ttt-scan has no option --length/);
  assertUserError(frugal('bench', 'fbi-generate', '--preset', 'fbi-9b'), /--preset must be one of/);
  assertUserError(frugal('bench', 'fbi-generate', '--path', 'jit'), /--path must be fused or modules/);
  assertUserError(frugal('bench', 'fbi-generate', '--peer', join(tmp, 'nowhere')), /no bin\/llama-bench there/);
});

test('frugal pack --head int8 writes an int8 LM head that loads; a bad --head exits 2', () => {
  const src = join(tmp, 'fbi');
  saveCheckpoint(src, new CausalLM({ ...PRESETS['fbi-tiny'], vocabSize: 256 }, { seed: 3 }));
  const p = frugal('pack', src, join(tmp, 'int8'), '--head', 'int8');
  assert.equal(p.code, 0, p.err);
  const f16 = frugal('pack', src, join(tmp, 'f16'));
  assert.equal(f16.code, 0, f16.err);
  const model = loadPackedModel(join(tmp, 'int8'));
  assert.ok(model.lmHead instanceof Int8Head);
  const g = frugal('generate', '--model', join(tmp, 'int8'), '--prompt', 'ab', '--max-new-tokens', '4', '--temperature', '0');
  assert.equal(g.code, 0, g.err);
  assertUserError(frugal('pack', src, join(tmp, 'bad'), '--head', 'int4'), /--head must be f16 or int8/);
});
