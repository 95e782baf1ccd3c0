// Hostile and malformed inputs found by probing: each is refused with one clear line in well under
// a second (or, for NaN/Inf weights, reported), never hangs, never allocates what the file does not hold.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { ByteTokenizer, loadTokenizer, tokenizerFromJson } from '../../src/data/index.ts';
import { loadWeights, readConfig } from '../../src/io/hf-folder.ts';
import { readTorchBin } from '../../src/io/torch-bin.ts';
import { resolveConfig } from '../../src/models/config.ts';
import { CausalLM } from '../../src/models/index.ts';
import { loadModel, saveCheckpoint } from '../../src/train/checkpoint.ts';
import { fromArray } from '../../src/tensor/index.ts';
import { buildZip, bytesOf, stateDictPickle, throwsClear, torchArchive } from '../io/fixtures.ts';

const BIN = join(resolve(import.meta.dirname, '..', '..'), 'bin', 'frugal.js');
const tmp = mkdtempSync(join(tmpdir(), 'frugal-hostile-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const frugal = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: tmp, timeout: 30000 });
function assertUserError(r: ReturnType<typeof frugal>, pattern: RegExp) {
  assert.equal(r.status, 2, `exit ${r.status} (${r.signal}); stderr: ${r.stderr}`);
  assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, pattern);
}
/** Runs fn, which must throw a clear error quickly. */
function refusedFast(fn: () => unknown, pattern: RegExp, ms = 500) {
  const t0 = performance.now();
  throwsClear(fn, pattern);
  const dt = performance.now() - t0;
  assert.ok(dt < ms, `took ${dt.toFixed(0)} ms`);
}
const CFG = { vocabSize: 256, hiddenSize: 32, numLayers: 1, numHeads: 2, intermediateSize: 64, maxPositions: 64 };

test('a zero-stride .bin tensor claiming 2^29 elements is refused at once', () => {
  const pkl = stateDictPickle([{ name: 'w', storage: { type: 'FloatStorage', key: '0', numel: 1 }, offset: 0, size: [1 << 15, 1 << 14], stride: [0, 0] }]);
  const bin = torchArchive(pkl, { 0: bytesOf(Float32Array.of(1)) });
  refusedFast(() => readTorchBin(bin), /would expand a 1-element storage to 536870912 elements/);
  // A small broadcast view (as torch.save writes for expand()) still loads.
  const ok = torchArchive(stateDictPickle([{ name: 'w', storage: { type: 'FloatStorage', key: '0', numel: 1 }, offset: 0, size: [3, 4], stride: [0, 0] }]), { 0: bytesOf(Float32Array.of(2)) });
  assert.deepEqual([...readTorchBin(ok).get('w')!.data], new Array(12).fill(2));
});

test('an overlapping-entry zip bomb is refused before anything is inflated', () => {
  const big = new Uint8Array(1 << 20); // compresses to about 1 KB
  const zip = buildZip([{ name: 'a/data/0', data: big, deflate: true }, { name: 'a/data/1', data: big, deflate: true }]);
  // Point the second central-directory entry at the first entry's bytes.
  const dv = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  const cds: number[] = [];
  for (let i = 0; i + 4 <= zip.length; i++) if (dv.getUint32(i, true) === 0x02014b50) cds.push(i);
  assert.equal(cds.length, 2);
  dv.setUint32(cds[1] + 42, dv.getUint32(cds[0] + 42, true), true);
  refusedFast(() => readTorchBin(zip), /overlap \(a zip bomb/);
});

test('configs asking for absurd sizes, arrays and unknown or misspelt fields are refused, naming the field', () => {
  refusedFast(() => resolveConfig({ ...CFG, numLayers: 1e6 }), /'numLayers' is 1000000, more than the 1024/);
  refusedFast(() => resolveConfig({ ...CFG, mixer: 'ttt-linear', ttt: { backbone: 'mamba', miniBatch: 1e9, baseLr: 1, convKernel: 4 } }), /'ttt.miniBatch' must be an integer in 1..4096/);
  refusedFast(() => resolveConfig({ ...CFG, hiddenSize: 65536, numLayers: 1000, intermediateSize: 200000, numHeads: 256 }), /about .* parameters/);
  refusedFast(() => resolveConfig({ ...CFG, hidden_size: 64 } as never), /unknown field hidden_size \(frugal calls it hiddenSize\)/);
  refusedFast(() => resolveConfig({ ...CFG, numLayer: 3 } as never), /unknown field numLayer;/);
  refusedFast(() => resolveConfig({ ...CFG, ttt: { minibatch: 4 } } as never), /config.ttt: unknown field minibatch/);
  refusedFast(() => resolveConfig([CFG] as never), /must be a JSON object .* an array/);
  // HF config.json with num_hidden_layers 1e6 is refused when loading, before any allocation.
  const dir = join(tmp, 'hf');
  mkdirSync(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 256, hidden_size: 32, num_hidden_layers: 1e6, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 64 }));
  writeFileSync(join(dir, 'model.safetensors'), new Uint8Array([2, 0, 0, 0, 0, 0, 0, 0, 123, 125]));
  refusedFast(() => loadModel(dir), /numLayers' is 1000000/);
  // The CLI: an array, a misspelt key.
  writeFileSync(join(tmp, 'arr.json'), '[1, 2]');
  writeFileSync(join(tmp, 'typo.json'), JSON.stringify({ hiddenSize: 32, numLayers: 1, numHeads: 2, intermediateSize: 64, maxPositon: 64 }));
  assertUserError(frugal('train', '--config', join(tmp, 'arr.json'), '--out', join(tmp, 'r1')), /must hold one JSON object .* not an array/);
  assertUserError(frugal('train', '--config', join(tmp, 'typo.json'), '--out', join(tmp, 'r2')), /unknown field maxPositon/);
});

test('malformed tokenizer.json files and backtracking regexes end in one clear line', () => {
  const base = new ByteTokenizer().toJSON() as Record<string, any>;
  const variants: [string, (j: Record<string, any>) => void, RegExp][] = [
    ['null added token', (j) => { j.added_tokens = [null]; }, /added_tokens\[0\] must be an object/],
    ['merges a number', (j) => { j.model.merges = 5; }, /"model.merges" must be a list/],
    ['merges an object', (j) => { j.model.merges = { a: 'b' }; }, /"model.merges" must be a list/],
    ['merges a string', (j) => { j.model.merges = 'a b'; }, /"model.merges" must be a list/],
    ['merge entry a number', (j) => { j.model.merges = [7]; }, /model.merges\[0\] must be/],
    ['added token without content', (j) => { j.added_tokens = [{ id: 3 }]; }, /added_tokens\[0\]/],
    ['vocab a string', (j) => { j.model.vocab = 'abc'; }, /"model.vocab" must be/],
    ['vocab id negative', (j) => { j.model.vocab = { a: -1 }; }, /has id -1, not a token id/],
    ['pre_tokenizer a number', (j) => { j.pre_tokenizer = 3; }, /"pre_tokenizer" must be an object/],
  ];
  for (const [what, edit, pattern] of variants) {
    const j = structuredClone(base);
    edit(j);
    refusedFast(() => tokenizerFromJson(j, {}, what), pattern);
  }
  const evil = structuredClone(base);
  evil.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: '(a+)+$' }, behavior: 'Isolated', invert: false }, evil.pre_tokenizer] };
  refusedFast(() => tokenizerFromJson(evil), /nests repetitions .* exponential time/);
  // Through the CLI, as a tokenizer file.
  writeFileSync(join(tmp, 'evil.json'), JSON.stringify(evil));
  assertUserError(frugal('train', '--tokenizer', join(tmp, 'evil.json'), '--out', join(tmp, 'r3')), /nests repetitions/);
});

test('FIFOs are refused instead of blocking; symlinks may not lead out of a checkpoint folder', () => {
  const dir = join(tmp, 'ck');
  saveCheckpoint(dir, new CausalLM(CFG, { seed: 1 }), { tokenizer: new ByteTokenizer() });
  const outside = join(tmp, 'secret.txt');
  writeFileSync(outside, 'TOP SECRET CONTENTS');
  for (const name of ['config.json', 'model.safetensors', 'tokenizer.json']) {
    const d = join(tmp, `link-${name}`);
    saveCheckpoint(d, new CausalLM(CFG, { seed: 1 }), { tokenizer: new ByteTokenizer() });
    rmSync(join(d, name));
    symlinkSync(outside, join(d, name));
    const r = frugal('info', d);
    assertUserError(r, /symbolic link that leads outside the folder/);
    assert.doesNotMatch(r.stderr, /SECRET/);
  }
  // A link that stays inside the folder is followed.
  const inner = join(tmp, 'inner');
  saveCheckpoint(inner, new CausalLM(CFG, { seed: 1 }), { tokenizer: new ByteTokenizer() });
  writeFileSync(join(inner, 'tok-real.json'), JSON.stringify(new ByteTokenizer().toJSON()));
  rmSync(join(inner, 'tokenizer.json'));
  symlinkSync('tok-real.json', join(inner, 'tokenizer.json'));
  assert.equal(loadTokenizer(inner).vocabSize, 256);
  // FIFOs: config, weights, tokenizer, a shard.
  const mk = spawnSync('mkfifo', [join(tmp, 'probe.fifo')]);
  if (mk.status !== 0) return; // no mkfifo on this system
  for (const name of ['config.json', 'model.safetensors', 'tokenizer.json']) {
    const d = join(tmp, `fifo-${name}`);
    saveCheckpoint(d, new CausalLM(CFG, { seed: 1 }), { tokenizer: new ByteTokenizer() });
    rmSync(join(d, name));
    spawnSync('mkfifo', [join(d, name)]);
    const t0 = performance.now();
    if (name === 'tokenizer.json') throwsClear(() => loadTokenizer(d), /named pipe \(FIFO\), not a file/);
    else if (name === 'config.json') throwsClear(() => readConfig(d), /named pipe \(FIFO\), not a file/);
    else throwsClear(() => loadWeights(d), /named pipe \(FIFO\), not a file/);
    assert.ok(performance.now() - t0 < 500);
  }
  const sh = join(tmp, 'fifo-shard');
  mkdirSync(sh);
  writeFileSync(join(sh, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { w: 'model-00001-of-00001.safetensors' } }));
  spawnSync('mkfifo', [join(sh, 'model-00001-of-00001.safetensors')]);
  throwsClear(() => loadWeights(sh), /named pipe \(FIFO\), not a file/);
});

test('NaN/Inf weights: info reports them, generate refuses unless --allow-nonfinite', () => {
  const model = new CausalLM(CFG, { seed: 1 });
  const [name, t] = model.namedParameters()[0];
  const bad = Float32Array.from(t.dataSync());
  bad[0] = NaN;
  bad[1] = Infinity;
  model.setTensor(name, fromArray(bad, [...t.shape]));
  const dir = join(tmp, 'nan');
  saveCheckpoint(dir, model);
  const info = frugal('info', dir);
  assert.equal(info.status, 0, info.stderr);
  assert.match(info.stdout, new RegExp(`WARNING: 2 NaN/Inf values in ${name.replace(/\./g, '\\.')}`));
  const json = JSON.parse(frugal('info', dir, '--json').stdout);
  assert.equal(json.nonfinite_values, 2);
  assertUserError(frugal('generate', '--model', dir, '--prompt', 'a', '--max-new-tokens', '2'), /2 NaN\/Inf values .* --allow-nonfinite/);
  assert.equal(frugal('generate', '--model', dir, '--prompt', 'a', '--max-new-tokens', '2', '--allow-nonfinite').status, 0);
});

test('`frugal info ... | head -1` ends quietly when the reader goes away', () => {
  const dir = join(tmp, 'pipe');
  saveCheckpoint(dir, new CausalLM(CFG, { seed: 1 }));
  const r = spawnSync('bash', ['-o', 'pipefail', '-c', `"${process.execPath}" ${BIN} info ${dir} | head -c 1`], { encoding: 'utf8' });
  assert.equal(r.status, 0);
  assert.doesNotMatch(r.stderr, /EPIPE|Error|at /);
});
