// The int8-activation serving path of packed FBI models: the interleaved bit layout, the kernels on
// every code path (identical integers, so identical outputs, and equal to a float64 reference of
// the same quantization), the f16 and int8 LM heads, and the accuracy of a trained packed model.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  f16Matmul, type FbiIsa, fbiInt8IsaAvailable, fbiInt8Matmul, fbiPackSigns, fbiRepack, i8Matmul, int8RowSums, interleavedWords,
} from '../../src/backend/cpu/fbi.ts';
import { int8RowBytes } from '../../src/backend/contracts.ts';
import { quantizeRowsInt8 } from '../../src/nn/packed.ts';
import { defaultCorpus } from '../../src/data/corpus.ts';
import { perplexity } from '../../src/eval/perplexity.ts';
import { loadPackedModel, modelFromPacked, packModel, savePackedModel } from '../../src/infer/packed-linear.ts';
import { HalfHead, Int8Head, setPackedActivations } from '../../src/nn/packed.ts';
import { f16BitsToF32, f32ToF16Bits } from '../../src/io/raw.ts';
import { CausalLM } from '../../src/models/index.ts';
import { backward, fromArray, Rng, tidy } from '../../src/tensor/index.ts';
import { AdamW } from '../../src/train/optim.ts';
import { randArray, relMaxAbs } from '../helpers.ts';

const ISAS = (['scalar', 'avx2', 'avx512'] as FbiIsa[]).filter(fbiInt8IsaAvailable);
const PATTERNS = ['column', 'row', 'single'] as const;

/** The kernels' quantization in float64: q = round(u * 127 / max|u|) clamped, d = max|u| / 127. */
function quantize(u: ArrayLike<number>): { q: Int8Array; d: number } {
  let amax = 0;
  for (let j = 0; j < u.length; j++) amax = Math.max(amax, Math.abs(u[j]));
  const inv = amax > 0 ? Math.fround(127 / Math.fround(amax)) : 0;
  const q = new Int8Array(u.length);
  for (let j = 0; j < u.length; j++) q[j] = Math.max(-127, Math.min(127, roundEven(Math.fround(u[j] * inv))));
  return { q, d: Math.fround(amax / 127) };
}
const roundEven = (v: number) => (Math.abs(v % 1) === 0.5 ? 2 * Math.round(v / 2) : Math.round(v));

test('interleaved layout: word (block b, group g), at (b/4)*4G + 4g + b%4, sign n = 4r+k (row 16b+r, input 4g+k) at bit 8(n%8)+n/8', () => {
  const inF = 13, outF = 83;
  const w = Float32Array.from({ length: outF * inF }, (_, i) => Math.sin(i * 1.7));
  const il = fbiRepack(fbiPackSigns(w, inF, outF), inF, outF);
  assert.equal(il.length, interleavedWords(inF, outF));
  const G = Math.ceil(inF / 4);
  for (let b = 0; b < 4 * Math.ceil(outF / 64); b++) for (let g = 0; g < G; g++) for (let r = 0; r < 16; r++) for (let k = 0; k < 4; k++) {
    const n = 4 * r + k, bit = 8 * (n % 8) + Math.floor(n / 8), word = (Math.floor(b / 4) * 4 * G + 4 * g + (b % 4)) * 2 + (bit >> 5);
    const got = (il[word] >>> (bit & 31)) & 1;
    const i = 16 * b + r, j = 4 * g + k;
    assert.equal(got, i < outF && j < inF && w[i * inF + j] > 0 ? 1 : 0, `block ${b} group ${g} row ${r} input ${k}`);
  }
});

test('int8-activation packed matmul: every code path gives the same numbers, equal to the quantized float64 reference', () => {
  const rng = new Rng(3);
  for (const pattern of PATTERNS) {
    for (const [rows, inF, outF] of [[1, 64, 33], [5, 100, 7], [9, 160, 20], [1, 37, 9], [17, 256, 70], [1, 512, 130], [3, 45, 21], [1, 24, 80], [70, 77, 65]]) {
      const w = randArray(outF * inF, rng);
      const ns = pattern === 'column' ? inF : pattern === 'row' ? outF : 1;
      const alpha = Float32Array.from(randArray(ns, rng), (v) => 0.1 + Math.abs(v));
      const beta = randArray(ns, rng, 0.1);
      const x = randArray(rows * inF, rng);
      const il = fbiRepack(fbiPackSigns(w, inF, outF), inF, outF);
      const ref = new Float64Array(rows * outF);
      for (let t = 0; t < rows; t++) {
        const xt = x.subarray(t * inF, (t + 1) * inF);
        const u = Float32Array.from(xt, (v, j) => (pattern === 'column' ? Math.fround(alpha[j] * v) : v));
        const { q, d } = quantize(u);
        let bias = 0;
        for (let j = 0; j < inF; j++) bias += pattern === 'column' ? beta[j] * xt[j] : xt[j];
        for (let i = 0; i < outF; i++) {
          let s = 0;
          for (let j = 0; j < inF; j++) s += (w[i * inF + j] > 0 ? 1 : -1) * q[j];
          const k = pattern === 'row' ? i : 0;
          ref[t * outF + i] = pattern === 'column' ? d * s + bias : alpha[k] * d * s + beta[k] * bias;
        }
      }
      let first: Float32Array | null = null;
      for (const isa of ISAS) {
        const y = new Float32Array(rows * outF);
        fbiInt8Matmul(x, il, alpha, beta, pattern, rows, inF, outF, y, isa);
        const e = relMaxAbs(y, ref);
        assert.ok(e < 1e-5, `${isa} ${pattern} [${rows},${inF}]x[${outF}]: error ${e} against the quantized reference`);
        if (first) assert.deepEqual(Array.from(y), Array.from(first), `${isa} differs from ${ISAS[0]} (${pattern} [${rows},${inF}]x[${outF}])`);
        first ??= y;
      }
    }
  }
});

test('f16 and int8 head matmuls on every code path against float64 references', () => {
  const rng = new Rng(4);
  for (const [rows, inF, outF] of [[1, 64, 50], [6, 37, 9], [1, 200, 75], [9, 130, 21]]) {
    const w = randArray(outF * inF, rng), x = randArray(rows * inF, rng);
    const h = Uint16Array.from(w, f32ToF16Bits);
    const q8 = quantizeRowsInt8(w, inF, outF);
    const q = { ...q8, rowSum: int8RowSums(q8.q, inF, outF) };
    const qs = new Int8Array(q.q.buffer);
    const ref16 = new Float64Array(rows * outF), ref8 = new Float64Array(rows * outF);
    for (let t = 0; t < rows; t++) {
      const { q: xq, d } = quantize(x.subarray(t * inF, (t + 1) * inF));
      for (let n = 0; n < outF; n++) {
        let s = 0, s8 = 0;
        for (let k = 0; k < inF; k++) {
          s += x[t * inF + k] * f16BitsToF32(h[n * inF + k]);
          s8 += xq[k] * qs[n * int8RowBytes(inF) + k];
        }
        ref16[t * outF + n] = s;
        ref8[t * outF + n] = d * q.scale[n] * s8;
      }
    }
    let first8: Float32Array | null = null;
    for (const isa of ISAS) {
      const y = new Float32Array(rows * outF), y8 = new Float32Array(rows * outF);
      f16Matmul(x, h, rows, inF, outF, y, isa);
      assert.ok(relMaxAbs(y, ref16) < 1e-5, `${isa} f16 [${rows},${inF}]x[${outF}]: ${relMaxAbs(y, ref16)}`);
      i8Matmul(x, q, rows, inF, outF, y8, isa);
      assert.ok(relMaxAbs(y8, ref8) < 1e-5, `${isa} int8 [${rows},${inF}]x[${outF}]: ${relMaxAbs(y8, ref8)}`);
      if (first8) assert.deepEqual(Array.from(y8), Array.from(first8), `${isa} int8 head differs from ${ISAS[0]}`);
      first8 ??= y8;
    }
  }
  assert.throws(() => fbiInt8Matmul(new Float32Array(8), new Uint32Array(2), new Float32Array(8), new Float32Array(8), 'column', 1, 8, 16, new Float32Array(16)),
    /interleaved sign bits has 2 elements, needs 16/);
});

/** A small FBI model trained a few steps on the default corpus's bytes, and held-out bytes. */
function trainedTinyFbi(): { model: CausalLM; val: Int32Array } {
  const corpus = defaultCorpus();
  const train = new TextEncoder().encode(corpus.train.slice(0, 400_000));
  const val = Int32Array.from(new TextEncoder().encode(corpus.validation.slice(0, 6000)));
  const model = new CausalLM({ vocabSize: 256, hiddenSize: 64, numLayers: 2, numHeads: 4, intermediateSize: 160, maxPositions: 128, linear: 'fbi' }, { seed: 2 });
  const opt = new AdamW(model.namedParameters(), { lr: 3e-3, weightDecay: 0 });
  const rng = new Rng(8);
  const B = 8, T = 64;
  for (let step = 0; step < 60; step++) {
    const inp = new Int32Array(B * T), tgt = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      const s = rng.int(train.length - T - 1);
      for (let t = 0; t < T; t++) { inp[b * T + t] = train[s + t]; tgt[b * T + t] = train[s + t + 1]; }
    }
    tidy(() => backward(model.loss(fromArray(inp, [B, T]), fromArray(tgt, [B * T]))));
    opt.update(1);
  }
  return { model: model.eval(), val };
}

test('accuracy: int8 activations keep validation perplexity within 0.5% of the latent model; exact mode equals it; heads', async () => {
  const { model, val } = trainedTinyFbi();
  const ppl = async (m: CausalLM) => (await perplexity(m, val, { window: 128 })).perplexity;
  const latent = await ppl(model);
  assert.ok(latent < 200, `training moved the model off uniform (ppl ${latent})`);
  const packed = modelFromPacked(packModel(model));
  setPackedActivations(packed, 'f32');
  const exact = await ppl(packed);
  assert.ok(Math.abs(exact / latent - 1) < 1e-5, `exact mode ppl ${exact} vs latent ${latent}`);
  setPackedActivations(packed, 'int8');
  const int8 = await ppl(packed);
  assert.ok(Math.abs(int8 / latent - 1) < 0.005, `int8 activations ppl ${int8} vs latent ${latent} (${(100 * (int8 / latent - 1)).toFixed(3)}%)`);

  const dir = mkdtempSync(join(tmpdir(), 'fbi-int8-'));
  try {
    // f16 head on disk runs as HalfHead with the logits of the f16-rounded f32 head.
    savePackedModel(model, join(dir, 'f16'));
    const half = loadPackedModel(join(dir, 'f16'));
    assert.ok(half.lmHead instanceof HalfHead);
    const rounded = modelFromPacked(packModel(model));
    const hw = new Map(rounded.namedParameters()).get('lm_head.weight')!.dataSync();
    for (let i = 0; i < hw.length; i++) hw[i] = f16BitsToF32(f32ToF16Bits(hw[i]));
    const emb = new Map(rounded.namedParameters()).get('model.embed_tokens.weight')!.dataSync();
    for (let i = 0; i < emb.length; i++) emb[i] = f16BitsToF32(f32ToF16Bits(emb[i]));
    const ids = fromArray(val.slice(0, 40), [1, 40]);
    for (const mode of ['f32', 'int8'] as const) {
      setPackedActivations(half, mode);
      setPackedActivations(rounded, mode);
      const e = relMaxAbs(half.forward(ids).dataSync(), rounded.forward(ids).dataSync());
      assert.ok(e < 1e-5, `${mode}: f16 head vs f32 head of the same values: ${e}`);
    }
    // int8 head: smaller file, a small perplexity change (stated in the README, bounded here).
    savePackedModel(model, join(dir, 'int8'), { head: 'int8' });
    const i8 = loadPackedModel(join(dir, 'int8'));
    assert.ok(i8.lmHead instanceof Int8Head);
    setPackedActivations(i8, 'int8');
    const pplHead = await ppl(i8);
    assert.ok(Math.abs(pplHead / latent - 1) < 0.01, `int8 head + int8 activations ppl ${pplHead} vs latent ${latent}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
