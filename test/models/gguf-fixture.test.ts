// A GGUF written by llama.cpp's own tools (gguf-py, then llama-quantize to Q1_0 everywhere, embedding
// and head included; see test/fixtures/gguf/README.md) loads here, runs from its 1-bit blocks, and
// scores the fixture text with the perplexity llama.cpp's llama-perplexity reported for the same file.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { tokenizerFromGguf } from '../../src/data/gguf-tokenizer.ts';
import { perplexity } from '../../src/eval/perplexity.ts';
import { GgufEmbedding, GgufLinear, modelFromGguf } from '../../src/infer/gguf-model.ts';
import { dequantize, readGguf } from '../../src/io/gguf.ts';
import { CausalLM } from '../../src/models/index.ts';
import { moduleOfGgufTensor } from '../../src/models/gguf-config.ts';
import { fromArray } from '../../src/tensor/index.ts';

const DIR = join(import.meta.dirname, '..', 'fixtures', 'gguf');
/** llama-perplexity -m tiny-llama-q1_0.gguf -f text.txt -c 64 -b 64 -t 2 (README.md). */
const PEER_PPL = 12.5624;

test('the llama.cpp-written Q1_0 GGUF gives llama-perplexity\'s perplexity within the activation quantization', async () => {
  const file = readGguf(join(DIR, 'tiny-llama-q1_0.gguf'));
  const model = modelFromGguf(file);
  const stored = model.modules().filter((m) => m instanceof GgufLinear || m instanceof GgufEmbedding) as (GgufLinear | GgufEmbedding)[];
  assert.equal(stored.length, 2 * 7 + 2);
  assert.ok(stored.every((m) => m.weights.blocks?.type === 'Q1_0'), 'every matrix runs from Q1_0 blocks');
  const tok = tokenizerFromGguf(file.metadata)!;
  const text = readFileSync(join(DIR, 'text.txt'), 'utf8');
  const ids = Int32Array.from(tok.encode(text));
  assert.equal(ids.length, Buffer.byteLength(text), 'one token per byte');
  const ours = await perplexity(model, ids, { window: 64, llamaCpp: {} });
  assert.equal(ours.windows, 64);
  const rel = Math.abs(ours.perplexity / PEER_PPL - 1);
  assert.ok(rel < 1e-3, `perplexity ${ours.perplexity} vs llama.cpp ${PEER_PPL} (relative ${rel})`);

  // Decoded to f32 (no activation quantization) the same weights score differently from both.
  const dense = new CausalLM(model.config);
  for (const [name, t] of file.tensors) {
    dense.setTensor(`${moduleOfGgufTensor(name)}.weight`, fromArray(dequantize(t.type, t.data, t.elements), [...t.dims].reverse()));
  }
  const exact = await perplexity(dense, ids, { window: 64, llamaCpp: {} });
  assert.ok(Math.abs(exact.perplexity / ours.perplexity - 1) > 0, 'the int8 path is not the f32 path');
  assert.ok(Math.abs(exact.perplexity / PEER_PPL - 1) < 0.05, `f32-activation perplexity ${exact.perplexity} is near too`);
});
