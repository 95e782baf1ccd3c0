import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { loadWeights, readConfig, saveCheckpointFolder } from '../../src/io/hf-folder.ts';
import { writeDirAtomic } from '../../src/io/atomic.ts';
import { openSafetensors, readSafetensors, writeSafetensors } from '../../src/io/safetensors.ts';
import type { RawTensor } from '../../src/io/raw.ts';
import { assertMatchesGoldenParams, bytesOf, golden, throwsClear } from './fixtures.ts';

const tmp = () => mkdtempSync(join(tmpdir(), 'frugal-ckpt-'));

for (const folder of ['fbi_checkpoint', 'fbi_checkpoint_sharded']) {
  test(`golden ${folder}: weights equal param.* of fbi_llama_tiny, config matches the reference config`, () => {
    const ref = readSafetensors(golden('fbi_llama_tiny.safetensors'));
    const dir = golden(folder);
    const { tensors, files } = loadWeights(dir);
    assertMatchesGoldenParams(tensors, ref.tensors);
    assert.ok(files.length >= 1 && files.every((f) => existsSync(f)));
    if (folder.endsWith('sharded')) {
      const index = JSON.parse(readFileSync(join(dir, 'pytorch_model.bin.index.json'), 'utf8'));
      assert.deepEqual(new Set(files.map((f) => basename(f))), new Set(Object.values(index.weight_map)));
    }
    const cfg = readConfig(dir);
    const refCfg = JSON.parse(ref.metadata.meta).config;
    for (const k of ['hidden_size', 'num_hidden_layers', 'vocab_size', 'intermediate_size', 'num_attention_heads']) {
      assert.equal(cfg[k], refCfg[k], k);
    }
  });
}

test('save then load a checkpoint folder; f16 option; other files kept, old weight files dropped', () => {
  const root = tmp();
  try {
    const dir = join(root, 'runs', 'ckpt'); // parent folders are created
    const tensors: Record<string, RawTensor> = {
      'model.embed_tokens.weight': { dtype: 'f32', shape: [4, 3], data: Float32Array.from({ length: 12 }, (_, i) => i / 8) },
      'token_idx': { dtype: 'i32', shape: [3], data: Int32Array.of(1, 2, 3) },
    };
    saveCheckpointFolder(dir, { model_type: 'llama', hidden_size: 3 }, tensors, { step: '10' });
    assert.deepEqual(readConfig(dir), { model_type: 'llama', hidden_size: 3 });
    const loaded = loadWeights(dir);
    assert.deepEqual(loaded.files, [join(dir, 'model.safetensors')]);
    for (const [k, t] of Object.entries(tensors)) assert.deepEqual(bytesOf(loaded.tensors.get(k)!.data), bytesOf(t.data), k);
    assert.deepEqual(readSafetensors(join(dir, 'model.safetensors')).metadata, { step: '10' });

    // A second save over it keeps tokenizer files, drops stale weights, and honours the f16 option.
    writeFileSync(join(dir, 'tokenizer.json'), '{"tok":1}');
    copyFileSync(golden('fbi_checkpoint', 'pytorch_model.bin'), join(dir, 'pytorch_model.bin'));
    saveCheckpointFolder(dir, { model_type: 'llama', hidden_size: 3, step: 20 }, tensors, {}, { f16: (n) => n.endsWith('.weight') });
    assert.deepEqual(readdirSync(dir).sort(), ['config.json', 'model.safetensors', 'tokenizer.json']);
    assert.equal(readFileSync(join(dir, 'tokenizer.json'), 'utf8'), '{"tok":1}');
    const f = openSafetensors(join(dir, 'model.safetensors'));
    assert.equal(f.entries.get('model.embed_tokens.weight')!.dtype, 'F16');
    // i/8 for i < 12 is exact in f16, so the values come back unchanged.
    assert.deepEqual(f.read('model.embed_tokens.weight').data, tensors['model.embed_tokens.weight'].data);
    f.close();
    assert.deepEqual(readdirSync(join(root, 'runs')), ['ckpt'], 'no temp or old folders are left behind');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a failing save leaves the previous checkpoint intact and no temp folders', () => {
  const root = tmp();
  try {
    const dir = join(root, 'ckpt');
    const good = { w: { dtype: 'f32' as const, shape: [2], data: Float32Array.of(1, 2) } };
    saveCheckpointFolder(dir, { v: 1 }, good);
    const before = readdirSync(dir).map((f) => [f, readFileSync(join(dir, f))]);
    // Invalid tensors fail before any write.
    throwsClear(() => saveCheckpointFolder(dir, { v: 2 }, { w: { dtype: 'f32', shape: [3], data: Float32Array.of(1) } }), /needs 3 elements but data holds 1/);
    // A failure in the middle of writing the new folder (the write of the second chunk throws) rolls back.
    throwsClear(
      () => writeDirAtomic(dir, { 'config.json': '{"v":3}', 'model.safetensors': [Uint8Array.of(1), { byteLength: 10 } as unknown as Uint8Array] }),
      /failed to write folder .*ckpt: .*; the previous contents are unchanged/,
    );
    assert.deepEqual(readdirSync(dir).map((f) => [f, readFileSync(join(dir, f))]), before);
    assert.deepEqual(readdirSync(root), ['ckpt']);
    assert.deepEqual(readConfig(dir), { v: 1 });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('missing folders, missing weights, bad config and bad indexes give clear errors', () => {
  const root = tmp();
  try {
    throwsClear(() => loadWeights(join(root, 'nope')), /checkpoint folder .*nope does not exist/);
    throwsClear(() => readConfig(join(root, 'nope')), /does not exist/);
    const empty = join(root, 'empty');
    mkdirSync(empty);
    throwsClear(() => loadWeights(empty), /has no weights; looked for model\.safetensors, model\.safetensors\.index\.json, pytorch_model\.bin, pytorch_model\.bin\.index\.json/);
    throwsClear(() => readConfig(empty), /has no config\.json/);
    writeFileSync(join(empty, 'config.json'), '{"hidden_size": 64,');
    throwsClear(() => readConfig(empty), /config .*config\.json is not valid JSON/);
    writeFileSync(join(empty, 'config.json'), '[1]');
    throwsClear(() => readConfig(empty), /must hold a JSON object/);
    writeFileSync(join(root, 'file'), 'x');
    throwsClear(() => loadWeights(join(root, 'file')), /is a file, not a checkpoint folder/);

    const sharded = join(root, 'sharded');
    mkdirSync(sharded);
    const index = (map: unknown) => writeFileSync(join(sharded, 'model.safetensors.index.json'), JSON.stringify({ weight_map: map }));
    writeSafetensors(join(sharded, 'model-00001-of-00002.safetensors'), { a: { dtype: 'f32', shape: [1], data: Float32Array.of(1) } });
    writeSafetensors(join(sharded, 'model-00002-of-00002.safetensors'), { a: { dtype: 'f32', shape: [1], data: Float32Array.of(2) } });
    index({ a: 'model-00001-of-00002.safetensors', b: '../../etc/passwd' });
    throwsClear(() => loadWeights(sharded), /maps "b" to "..\/..\/etc\/passwd", which is not a file name in the checkpoint folder/);
    index({ a: 'model-00001-of-00002.safetensors', b: 'model-00003-of-00003.safetensors' });
    throwsClear(() => loadWeights(sharded), /shard model-00003-of-00003\.safetensors listed in .* is missing/);
    index({ a: 'model-00001-of-00002.safetensors', b: 'model-00001-of-00002.safetensors' });
    throwsClear(() => loadWeights(sharded), /places "b" in model-00001-of-00002\.safetensors, but that shard does not contain it/);
    index({ a: 'model-00001-of-00002.safetensors', x: 'model-00002-of-00002.safetensors' });
    throwsClear(() => loadWeights(sharded), /places "x"/);
    writeSafetensors(join(sharded, 'model-00002-of-00002.safetensors'), { a: { dtype: 'f32', shape: [1], data: Float32Array.of(2) }, x: { dtype: 'f32', shape: [1], data: Float32Array.of(3) } });
    throwsClear(() => loadWeights(sharded), /tensor "a" appears in more than one shard/);
    writeFileSync(join(sharded, 'model.safetensors.index.json'), '{"metadata": {}}');
    throwsClear(() => loadWeights(sharded), /has no "weight_map" object/);
    // A corrupt shard names the shard file.
    index({ a: 'model-00001-of-00002.safetensors' });
    writeFileSync(join(sharded, 'model-00001-of-00002.safetensors'), Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9));
    throwsClear(() => loadWeights(sharded), /model-00001-of-00002\.safetensors is not a valid safetensors file/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
