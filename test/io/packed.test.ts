// Packed 1-bit FBI inference: kernels on every dispatch path against a float64 reference, the
// packed folder format, and packed models against the latent model they came from.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { type FbiIsa, fbiIsaAvailable, fbiPackedMatmul, fbiPackSigns, fbiUnpack, wordsPerRow } from '../../src/backend/cpu/fbi.ts';
import { loadPackedModel, modelFromPacked, packModel, savePackedModel } from '../../src/infer/packed-linear.ts';
import { PackedLinear, setPackedActivations } from '../../src/nn/packed.ts';
import { readPackedFolder } from '../../src/io/packed.ts';
import { f16BitsToF32, f32ToF16Bits } from '../../src/io/raw.ts';
import { loadPretrained } from '../../src/models/hf.ts';
import { fromArray, noGrad, Rng } from '../../src/tensor/index.ts';
import { GOLDEN_DIR, randArray, relMaxAbs } from '../helpers.ts';

const ISAS: FbiIsa[] = ['scalar', 'avx2', 'avx512'];
const PATTERNS = ['column', 'row', 'single'] as const;

test('packed matmul equals x @ (alpha * S + beta)^T on every code path', () => {
  const rng = new Rng(1);
  for (const isa of ISAS.filter(fbiIsaAvailable)) {
    for (const pattern of PATTERNS) {
      for (const [rows, inF, outF] of [[1, 64, 33], [5, 100, 7], [9, 160, 20], [1, 37, 9]]) {
        const w = randArray(outF * inF, rng);
        const ns = pattern === 'column' ? inF : pattern === 'row' ? outF : 1;
        const alpha = Float32Array.from(randArray(ns, rng), (v) => 0.1 + Math.abs(v));
        const beta = randArray(ns, rng, 0.1);
        const x = randArray(rows * inF, rng);
        const bits = fbiPackSigns(w, inF, outF);
        const y = new Float32Array(rows * outF);
        fbiPackedMatmul(x, bits, alpha, beta, pattern, rows, inF, outF, y, isa);
        const ref = new Float64Array(rows * outF);
        const q = (i: number, j: number) => (pattern === 'column' ? j : pattern === 'row' ? i : 0);
        for (let t = 0; t < rows; t++) for (let i = 0; i < outF; i++) {
          let s = 0;
          for (let j = 0; j < inF; j++) s += x[t * inF + j] * (alpha[q(i, j)] * (w[i * inF + j] > 0 ? 1 : -1) + beta[q(i, j)]);
          ref[t * outF + i] = s;
        }
        const e = relMaxAbs(y, ref);
        assert.ok(e < 1e-5, `${isa} ${pattern} [${rows},${inF}]x[${outF}]: error ${e}`);
      }
    }
  }
});

test('sign packing layout: bit j % 32 of word j / 32, zero padding, unpack restores alpha * S + beta', () => {
  const inF = 40, outF = 3;
  const w = new Float32Array(outF * inF).map((_, k) => ((k * 7) % 5) - 2); // includes exact zeros
  const bits = fbiPackSigns(w, inF, outF);
  assert.equal(bits.length, outF * wordsPerRow(inF));
  for (let i = 0; i < outF; i++) for (let j = 0; j < 64; j++) {
    const bit = (bits[i * 2 + (j >> 5)] >>> (j & 31)) & 1;
    assert.equal(bit, j < inF && w[i * inF + j] > 0 ? 1 : 0, `row ${i} bit ${j}`);
  }
  const alpha = Float32Array.from({ length: inF }, (_, j) => 0.5 + j / 64);
  const beta = Float32Array.from({ length: inF }, (_, j) => (j % 3) / 10);
  const d = fbiUnpack(bits, alpha, beta, 'column', inF, outF);
  for (let i = 0; i < outF; i++) for (let j = 0; j < inF; j++) {
    assert.equal(d[i * inF + j], Math.fround(Math.fround(alpha[j] * (w[i * inF + j] > 0 ? 1 : -1)) + beta[j]));
  }
  assert.throws(() => fbiPackedMatmul(new Float32Array(4), bits, alpha, beta, 'column', 1, inF, outF, new Float32Array(3)), /x has 4 elements, needs 40/);
});

const golden = () => loadPretrained(join(GOLDEN_DIR, 'fbi_checkpoint'));
const ids = () => fromArray(Int32Array.from({ length: 2 * 20 }, (_, i) => (i * 37 + 11) % 320), [2, 20]);

test('a packed model in exact (f32-activation) mode gives the latent model\'s logits (same signs, same scales)', () => {
  const latent = golden();
  const packed = modelFromPacked(packModel(latent));
  setPackedActivations(packed, 'f32');
  const nPacked = [...packed.namedBuffers()].filter(([n]) => n.endsWith('.weight_bits')).length;
  assert.equal(nPacked, 14, 'every projection of both layers runs from bits');
  const a = noGrad(() => latent.forward(ids())).dataSync();
  const b = packed.forward(ids()).dataSync();
  const e = relMaxAbs(b, a);
  assert.ok(e < 1e-5, `packed vs latent logits: ${e}`);
  // Greedy decoding through the KV cache picks the same tokens.
  const greedy = (m: typeof latent) => noGrad(() => {
    const st = m.createState(1);
    let next = fromArray(Int32Array.of(5, 17, 200, 3), [1, 4]);
    const out: number[] = [];
    for (let s = 0; s < 10; s++) {
      const lg = m.forward(next, st).dataSync();
      const last = lg.subarray(lg.length - 320);
      let best = 0;
      for (let i = 1; i < 320; i++) if (last[i] > last[best]) best = i;
      out.push(best);
      next = fromArray(Int32Array.of(best), [1, 1]);
    }
    return out;
  });
  assert.deepEqual(greedy(packed), greedy(latent));
});

test('packed folder round trip: f32 embeddings exact, f16 embeddings rounded, linear bits 1 per weight', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fbi-packed-'));
  try {
    const latent = golden();
    const inMemory = modelFromPacked(packModel(latent)).forward(ids()).dataSync();
    savePackedModel(latent, join(dir, 'f32'), { embeddingDtype: 'f32' });
    const f32 = loadPackedModel(join(dir, 'f32'));
    assert.deepEqual(Array.from(f32.forward(ids()).dataSync()), Array.from(inMemory));

    savePackedModel(latent, join(dir, 'f16'));
    const data = readPackedFolder(join(dir, 'f16'));
    const emb = data.tensors.get('model.embed_tokens.weight')!.data;
    const src = new Map(latent.namedParameters()).get('model.embed_tokens.weight')!.dataSync();
    for (let i = 0; i < src.length; i += 97) assert.equal(emb[i], f16BitsToF32(f32ToF16Bits(src[i])));
    const up = data.linears.get('model.layers.0.mlp.up_proj')!;
    assert.equal(up.bits.length * 32, 160 * 64, '1 bit per binarized weight');
    const e = relMaxAbs(loadPackedModel(join(dir, 'f16')).forward(ids()).dataSync(), inMemory);
    assert.ok(e < 1e-2, `f16 embeddings change logits by ${e}`);
    assert.ok(statSync(join(dir, 'f16', 'model.safetensors')).size < statSync(join(dir, 'f32', 'model.safetensors')).size);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('packed loading rejects non-packed folders, corrupt bit tensors and training through bits', () => {
  assert.throws(() => loadPackedModel(join(GOLDEN_DIR, 'fbi_checkpoint')), /is not a packed model folder .*loadPretrained/);
  const dir = mkdtempSync(join(tmpdir(), 'fbi-packed-bad-'));
  try {
    savePackedModel(golden(), dir, { embeddingDtype: 'f32' });
    const cfg = JSON.parse(JSON.stringify(readPackedFolder(dir).config));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, frugal_packed: { format: 'fbi-1bit', version: 9, word_bits: 32 } }));
    assert.throws(() => loadPackedModel(dir), /packed format .* is not supported/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const lin = new PackedLinear(8, 4, 'column');
  const x = fromArray(new Float32Array(8), [1, 8]);
  x.requiresGrad = true;
  assert.throws(() => lin.forward(x), /packed weights are for inference/);
});
