// Seeded fuzzing of every reader: thousands of random mutations of valid files (bytes flipped,
// cut, inserted, boundary values written; JSON fields deleted, retyped, enlarged). Each case must
// either load or fail with a plain Error (one of our own checks), never a TypeError/RangeError
// (a crash), and finish fast (no hang, no huge allocation).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ByteTokenizer, tokenizerFromJson, trainBpe } from '../../src/data/index.ts';
import { loadWeights } from '../../src/io/hf-folder.ts';
import type { TensorMap } from '../../src/io/raw.ts';
import { encodeSafetensors, readSafetensors } from '../../src/io/safetensors.ts';
import { readTorchBin } from '../../src/io/torch-bin.ts';
import { resolveConfig } from '../../src/models/config.ts';
import { fromHf, toHf } from '../../src/models/hf.ts';
import { Rng } from '../../src/tensor/index.ts';
import { bytesOf, stateDictPickle, torchArchive } from '../io/fixtures.ts';

const tmp = mkdtempSync(join(tmpdir(), 'frugal-fuzz-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const crashTypes = [TypeError, RangeError, ReferenceError];
/** Runs `fn` on every case; counts loads and clean refusals; fails on a crash or a slow case. */
function fuzz(label: string, cases: number, make: (i: number) => unknown, fn: (input: never) => unknown): { ok: number; refused: number } {
  let ok = 0;
  let refused = 0;
  let slowest = 0;
  for (let i = 0; i < cases; i++) {
    const input = make(i);
    const t0 = performance.now();
    try {
      fn(input as never);
      ok++;
    } catch (e) {
      if (!(e instanceof Error) || crashTypes.some((c) => e instanceof c) || !e.message) {
        assert.fail(`${label} case ${i}: crashed with ${e instanceof Error ? `${e.constructor.name}: ${e.message}` : String(e)}`);
      }
      refused++;
    }
    slowest = Math.max(slowest, performance.now() - t0);
  }
  assert.ok(slowest < 1000, `${label}: slowest case took ${slowest.toFixed(0)} ms`);
  assert.ok(refused > 0, `${label}: no mutation was refused, the mutations do not reach the reader`);
  return { ok, refused };
}

const BOUNDARY = [0, 1, 0x7f, 0x80, 0xff, 0xfe];
/** One to four random byte-level edits. */
function mutateBytes(src: Uint8Array, rng: Rng): Uint8Array {
  let b: Uint8Array = Uint8Array.from(src);
  const edits = 1 + rng.int(4);
  for (let e = 0; e < edits; e++) {
    const at = rng.int(Math.max(1, b.length));
    switch (rng.int(6)) {
      case 0: b[at] ^= 1 << rng.int(8); break;
      case 1: b[at] = BOUNDARY[rng.int(BOUNDARY.length)]; break;
      case 2: b = b.subarray(0, at); break;
      case 3: {
        const ins = Uint8Array.from({ length: 1 + rng.int(8) }, () => rng.int(256));
        const out = new Uint8Array(b.length + ins.length);
        out.set(b.subarray(0, at));
        out.set(ins, at);
        out.set(b.subarray(at), at + ins.length);
        b = out;
        break;
      }
      case 4: for (let k = 0; k < 4 && at + k < b.length; k++) b[at + k] = 0xff; break;
      default: for (let k = 0; k < 8 && at + k < b.length; k++) b[at + k] = k === 7 ? 0x7f : rng.int(256); break;
    }
  }
  return b;
}

const ODD_VALUES: unknown[] = [null, -1, 0, 1, 1.5, 1e9, 2 ** 53, -(2 ** 31), 'x', '', [], {}, true, [null], [1e9, -1], { a: 1 }, '(a+)+$'];
/** One to three structural edits of a JSON value: delete, retype, enlarge, add unknown keys. */
function mutateJson(v: unknown, rng: Rng): unknown {
  const root = structuredClone(v) as Record<string, unknown>;
  const edits = 1 + rng.int(3);
  for (let e = 0; e < edits; e++) {
    // Walk down a random path.
    let parent: Record<string, unknown> | unknown[] = root;
    let key: string | number = '';
    for (let depth = 0; depth < 6; depth++) {
      const keys: (string | number)[] = Array.isArray(parent) ? parent.map((_, i) => i) : Object.keys(parent);
      if (!keys.length) break;
      key = keys[rng.int(keys.length)];
      const child = (parent as Record<string | number, unknown>)[key];
      if (child === null || typeof child !== 'object' || rng.uniform() < 0.3) break;
      parent = child as Record<string, unknown>;
    }
    const p = parent as Record<string | number, unknown>;
    switch (rng.int(5)) {
      case 0: if (Array.isArray(parent)) parent.splice(Number(key), 1); else delete p[key]; break;
      case 1: p[key] = structuredClone(ODD_VALUES[rng.int(ODD_VALUES.length)]); break;
      case 2: if (typeof p[key] === 'number') p[key] = (p[key] as number) * (rng.uniform() < 0.5 ? 1e6 : -1); else p[key] = [p[key]]; break;
      case 3: if (!Array.isArray(parent)) p[`unknown_${rng.int(100)}`] = structuredClone(ODD_VALUES[rng.int(ODD_VALUES.length)]); break;
      default: if (Array.isArray(p[key])) (p[key] as unknown[]).push(...(p[key] as unknown[])); else p[key] = String(p[key]); break;
    }
  }
  return root;
}

function sampleTensors(): TensorMap {
  const t: TensorMap = new Map();
  t.set('a.weight', { dtype: 'f32', shape: [3, 4], data: Float32Array.from({ length: 12 }, (_, i) => i / 7) });
  t.set('b.bias', { dtype: 'f32', shape: [5], data: Float32Array.from({ length: 5 }, (_, i) => -i) });
  t.set('c.ids', { dtype: 'i32', shape: [2, 2], data: Int32Array.of(1, 2, 3, 4) });
  return t;
}

test('fuzz: safetensors bytes and headers', () => {
  const valid = new Uint8Array(Buffer.concat(encodeSafetensors(sampleTensors(), { format: 'pt' }, { f16: (n) => n === 'a.weight' })));
  const rng = new Rng(101);
  const bytes = fuzz('safetensors bytes', 3000, () => mutateBytes(valid, rng), (b: Uint8Array) => readSafetensors(b));
  // Header-level edits with a consistent length prefix reach the field checks.
  const n = Number(new DataView(valid.buffer, valid.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(Buffer.from(valid.subarray(8, 8 + n)).toString('utf8'));
  const body = valid.subarray(8 + n);
  const withHeader = (h: unknown) => {
    const json = Buffer.from(JSON.stringify(h));
    const out = new Uint8Array(8 + json.length + body.length);
    new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
    out.set(json, 8);
    out.set(body, 8 + json.length);
    return out;
  };
  const fields = fuzz('safetensors header', 2000, () => withHeader(mutateJson(header, rng)), (b: Uint8Array) => readSafetensors(b));
  assert.ok(bytes.ok > 0 && fields.ok > 0, 'some mutations (e.g. in tensor bytes) still load');
});

test('fuzz: PyTorch zip + pickle archives', () => {
  const storage = bytesOf(Float32Array.from({ length: 12 }, (_, i) => i));
  const specs = [
    { name: 'w', storage: { type: 'FloatStorage', key: '0', numel: 12 }, offset: 0, size: [3, 4], stride: [4, 1], parameter: true },
    { name: 'wt', storage: { type: 'FloatStorage', key: '0', numel: 12 }, offset: 0, size: [4, 3], stride: [1, 4] },
    { name: 'b', storage: { type: 'FloatStorage', key: '0', numel: 12 }, offset: 2, size: [5], stride: [1] },
  ];
  const pkl = stateDictPickle(specs, { withMetadata: true });
  const rng = new Rng(202);
  for (const deflate of [false, true]) {
    const valid = torchArchive(pkl, { 0: storage }, { deflate });
    readTorchBin(valid);
    fuzz(`torch archive bytes (deflate ${deflate})`, 1500, () => mutateBytes(valid, rng), (b: Uint8Array) => readTorchBin(b));
  }
  // Mutated pickles inside well-formed archives (valid CRCs) reach the unpickler itself.
  fuzz('torch pickle', 2500, () => torchArchive(mutateBytes(pkl, rng), { 0: storage }), (b: Uint8Array) => readTorchBin(b));
});

test('fuzz: sharded index.json', () => {
  const dir = join(tmp, 'sharded');
  mkdirSync(dir);
  const t = sampleTensors();
  const [a, b] = [new Map([...t].slice(0, 2)), new Map([...t].slice(2))];
  const files = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
  writeFileSync(join(dir, files[0]), Buffer.concat(encodeSafetensors(a)));
  writeFileSync(join(dir, files[1]), Buffer.concat(encodeSafetensors(b)));
  const index = { metadata: { total_size: 100 }, weight_map: { 'a.weight': files[0], 'b.bias': files[0], 'c.ids': files[1] } };
  const rng = new Rng(303);
  const indexPath = join(dir, 'model.safetensors.index.json');
  writeFileSync(indexPath, JSON.stringify(index));
  assert.equal(loadWeights(dir).tensors.size, 3);
  fuzz('sharded index', 800, () => JSON.stringify(mutateJson(index, rng)), (text: string) => {
    writeFileSync(indexPath, text);
    loadWeights(dir);
  });
});

test('fuzz: model configs (frugal fields and Hugging Face config.json)', () => {
  const rng = new Rng(404);
  const frugal = {
    vocabSize: 256, hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, intermediateSize: 128, maxPositions: 128,
    mixer: 'ttt-linear', ttt: { backbone: 'mamba', miniBatch: 16, baseLr: 1, convKernel: 4 }, ffn: ['swiglu', 'peer'],
    peer: { numExperts: 256, heads: 2, topk: 4, dimKey: 16, queryNorm: 'batchnorm', sharedKeys: true, activation: 'gelu', score: 'softmax' },
  };
  resolveConfig(frugal as never);
  const r = fuzz('frugal config', 3000, () => mutateJson(frugal, rng), (c: never) => {
    const cfg = resolveConfig(c);
    // What validation lets through is within the limits the builders rely on.
    assert.ok(cfg.numLayers <= 1024 && cfg.hiddenSize % cfg.numHeads === 0 && (cfg.ttt?.miniBatch ?? 1) <= 4096);
  });
  assert.ok(r.ok > 0);
  // The Llama fields alone (as another program writes them); toHf also embeds the exact config.
  const { frugal: _embedded, ...hf } = toHf(resolveConfig({ vocabSize: 256, hiddenSize: 64, numLayers: 2, numHeads: 4, intermediateSize: 128, maxPositions: 128 }));
  fuzz('config.json (Llama)', 2000, () => mutateJson(hf, rng), (c: never) => fromHf(c));
  fuzz('config.json (embedded frugal)', 1500, () => mutateJson({ ...hf, frugal }, rng), (c: never) => fromHf(c));
});

test('fuzz: tokenizer.json (byte-level BPE and the general Hugging Face path)', () => {
  const rng = new Rng(505);
  const bpe = trainBpe('the cat sat on the mat while the dog ran to the cat and sat down again '.repeat(20), { vocabSize: 300 }).toJSON();
  const bytes = new ByteTokenizer().toJSON();
  // A WordLevel tokenizer with a Split pre-tokenizer goes through @huggingface/tokenizers.
  const wordLevel = {
    version: '1.0', added_tokens: [{ id: 0, content: '[UNK]', special: true, single_word: false, lstrip: false, rstrip: false, normalized: false }],
    normalizer: null, pre_tokenizer: { type: 'Split', pattern: { Regex: '\\s+' }, behavior: 'Removed', invert: false },
    post_processor: null, decoder: null,
    model: { type: 'WordLevel', vocab: { '[UNK]': 0, the: 1, cat: 2, sat: 3 }, unk_token: '[UNK]' },
  };
  for (const [label, valid, cases] of [['byte-level BPE', bpe, 1500], ['plain bytes', bytes, 500], ['WordLevel', wordLevel, 1000]] as const) {
    tokenizerFromJson(valid);
    fuzz(`tokenizer.json ${label}`, cases, () => mutateJson(valid, rng), (j: never) => {
      const tok = tokenizerFromJson(j);
      // A loaded tokenizer also encodes a short text within the time bound.
      tok.encode('the cat sat on aaaaaaaaaaaaaaaaaaaaaaaaaaaaa!');
    });
  }
});
