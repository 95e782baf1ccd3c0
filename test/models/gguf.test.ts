// GGUF models: a LLaMA / Qwen3 model written by our GGUF writer gives the logits of the same weights
// loaded from safetensors (exactly up to float rounding for F32/F16/BF16; for Q8_0/Q4_0/Q1_0, the
// dequantized weights, within the int8 activation quantization); bad files give one clear error.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ggufFromModel, GgufLinear, modelFromGguf } from '../../src/infer/gguf-model.ts';
import { dequantize, encodeGguf, type GgmlType, parseGguf } from '../../src/io/gguf.ts';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.ts';
import type { TensorMap } from '../../src/io/raw.ts';
import { CausalLM, type ModelConfig } from '../../src/models/index.ts';
import { loadStateDict } from '../../src/models/hf.ts';
import { tokenizerFromGguf } from '../../src/data/gguf-tokenizer.ts';
import { fromArray, noGrad, Rng } from '../../src/tensor/index.ts';
import { randArray, relMaxAbs } from '../helpers.ts';

const LLAMA: Partial<ModelConfig> = { vocabSize: 300, hiddenSize: 128, numLayers: 2, numHeads: 4, numKvHeads: 2, intermediateSize: 256, maxPositions: 64 };
const QWEN3: Partial<ModelConfig> = { ...LLAMA, headDim: 64, qkNorm: true, tieEmbeddings: true, rmsNormEps: 1e-6, ropeTheta: 1e6 };
const ids = () => fromArray(Int32Array.from([1, 17, 250, 3, 99, 42, 7, 200, 5, 64, 128, 0]), [1, 12]);

/** A model with random norm weights too (so q/k norms and final norm matter). */
function randomModel(cfg: Partial<ModelConfig>, seed: number): CausalLM {
  const m = new CausalLM(cfg, { seed });
  const rng = new Rng(seed + 100);
  for (const [name, t] of m.namedParameters()) {
    if (t.ndim === 1) m.setTensor(name, fromArray(Float32Array.from(randArray(t.size, rng, 0.3), (v) => 1 + v), t.shape));
  }
  return m;
}

/** The same architecture with weights read back from a safetensors file (each tensor through `round`). */
function viaSafetensors(m: CausalLM, dir: string, round: (name: string, x: Float32Array) => Float32Array): CausalLM {
  const tensors: TensorMap = new Map();
  for (const [name, t] of m.namedParameters()) tensors.set(name, { dtype: 'f32', shape: [...t.shape], data: round(name, t.dataSync() as Float32Array) });
  const path = join(dir, `m-${Math.random().toString(36).slice(2)}.safetensors`);
  writeSafetensors(path, tensors);
  const back = new CausalLM(m.config);
  loadStateDict(back, readSafetensors(path).tensors, path);
  return back;
}

const logits = (m: CausalLM) => noGrad(() => m.forward(ids())).dataSync() as Float32Array;

for (const [arch, cfg] of [['llama', LLAMA], ['qwen3', QWEN3]] as const) {
  test(`${arch}: GGUF F32 / F16 / BF16 give the logits of the same weights from safetensors`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'gguf-'));
    try {
      const m = randomModel(cfg, 1);
      for (const type of ['F32', 'F16', 'BF16'] as GgmlType[]) {
        const file = parseGguf(ggufFromModel(m, { linearType: type }));
        assert.equal(file.metadata.get('general.architecture'), arch);
        const g = modelFromGguf(file);
        // Matrices go through the type's rounding; norms are stored F32.
        const ref = viaSafetensors(m, dir, (_n, x) => (x.length > 128 ? dequantize(type, ggufQuantize(type, x), x.length) : x));
        const e = relMaxAbs(logits(g), logits(ref));
        assert.ok(e < 2e-6, `${arch} ${type}: relative difference ${e}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test(`${arch}: GGUF Q8_0 / Q4_0 / Q1_0 run from blocks and match the dequantized weights within the activation quantization`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'gguf-'));
    try {
      const m = randomModel(cfg, 2);
      for (const [type, tol] of [['Q8_0', 0.02], ['Q4_0', 0.02], ['Q1_0', 0.02]] as const) {
        const file = parseGguf(ggufFromModel(m, { linearType: type }));
        const g = modelFromGguf(file);
        const linears = g.modules().filter((x): x is GgufLinear => x instanceof GgufLinear);
        assert.ok(linears.length >= 14 && linears.every((l) => l.weights.blocks?.type === type && !l.weights.dense), 'every linear keeps its blocks');
        const ref = viaSafetensors(m, dir, (_n, x) => (x.length > 128 ? dequantize(type, ggufQuantize(type, x), x.length) : x));
        const a = logits(g), b = logits(ref);
        const e = relMaxAbs(a, b);
        assert.ok(e < tol, `${arch} ${type}: relative difference ${e} (tolerance ${tol})`);
        assert.ok(e > 0, 'activations are quantized (the int8 path ran)');
        // The quantization of the weights themselves is far larger than the activation difference.
        assert.ok(relMaxAbs(b, logits(m)) > e, `${type}: weight quantization dominates`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

// The writer quantizes with the reader's codec; the reference goes through the same codec.
import { quantize as ggufQuantize } from '../../src/io/gguf.ts';

test('qwen3 q/k norms act per head before RoPE: a model without them differs', () => {
  const m = randomModel(QWEN3, 3);
  const g = modelFromGguf(parseGguf(ggufFromModel(m)));
  const noNorm = new CausalLM({ ...QWEN3, qkNorm: false });
  for (const [n, t] of m.namedParameters()) if (!/[qk]_norm/.test(n)) noNorm.setTensor(n, t);
  assert.ok(relMaxAbs(logits(g), logits(noNorm)) > 1e-3);
  assert.ok(relMaxAbs(logits(g), logits(m)) < 2e-6);
});

test('missing, unexpected and misshapen tensors and unknown architectures give one clear error', () => {
  const good = parseGguf(ggufFromModel(randomModel(LLAMA, 4)));
  const rebuild = (edit: (meta: Record<string, unknown>, t: { name: string; type: GgmlType; dims: number[]; data: Uint8Array }[]) => void) => {
    const meta: Record<string, unknown> = Object.fromEntries(good.metadata);
    const tensors = [...good.tensors.values()].map((t) => ({ name: t.name, type: t.type, dims: [...t.dims], data: t.data }));
    edit(meta, tensors);
    return parseGguf(encodeGguf(meta as never, tensors), 'm.gguf');
  };
  const fails = (f: ReturnType<typeof rebuild>, re: RegExp) => assert.throws(() => modelFromGguf(f, 'm.gguf'), (e: Error) => re.test(e.message) && !e.message.includes('\n'));
  fails(rebuild((_m, t) => t.splice(t.findIndex((x) => x.name === 'blk.1.ffn_up.weight'), 1)), /missing tensor\(s\) blk\.1\.ffn_up\.weight/);
  fails(rebuild((_m, t) => t.push({ ...t[0], name: 'blk.0.attn_qkv.weight' })), /tensor blk\.0\.attn_qkv\.weight has no place/);
  fails(rebuild((m) => (m['general.architecture'] = 'mamba')), /architecture 'mamba' is not supported \(supported: llama, qwen3\)/);
  fails(rebuild((m) => (m['llama.attention.head_count'] = 5)), /tensor blk\.0\.attn_q\.weight is \[128, 128\], the metadata implies \[128, 160\]/);
  fails(rebuild((m) => (m['llama.rope.scaling.type'] = 'yarn')), /RoPE scaling 'yarn' is not supported/);
  fails(rebuild((_m, t) => {
    const q = t.find((x) => x.name === 'blk.1.attn_q.weight')!;
    Object.assign(q, { type: 'F32', dims: [128, 64], data: new Uint8Array(128 * 64 * 4) });
  }), /blk\.1\.attn_q\.weight is \[128, 64\], the model expects \[128, 128\]/);
});

test('fuzz: 1500 mutated model files each load or give a plain one-line Error', () => {
  const base = ggufFromModel(randomModel({ ...LLAMA, vocabSize: 64, hiddenSize: 32, intermediateSize: 64, numLayers: 1 }, 5), { linearType: 'Q8_0', embeddingType: 'F16' });
  const rng = new Rng(17);
  let loaded = 0;
  for (let c = 0; c < 1500; c++) {
    const b = base.slice();
    // Mutations land in the header (where structure lives) most of the time.
    const span = rng.uniform() < 0.8 ? Math.min(b.byteLength, 2048) : b.byteLength;
    for (let e = 0; e < 1 + rng.int(3); e++) b[rng.int(span)] = rng.int(256);
    try {
      const f = parseGguf(b, 'f.gguf');
      modelFromGguf(f, 'f.gguf');
      tokenizerFromGguf(f.metadata, 'f.gguf');
      loaded++;
    } catch (e) {
      assert.equal((e as Error).constructor, Error, `case ${c}: ${(e as Error).constructor.name}: ${(e as Error).message}`);
      assert.ok(!(e as Error).message.includes('\n'), `case ${c}: multi-line message`);
    }
  }
  assert.ok(loaded > 0 && loaded < 1500, `loaded ${loaded} of 1500`);
});
