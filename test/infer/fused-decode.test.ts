// The fused decode path of packed FBI models (src/infer/fused-decode.ts, native/fbi_decode.cc): its
// logits are the per-module path's bit for bit (same kernels and arithmetic) at prefill, chunked
// prefill and decode, for every scale pattern, grouped KV heads, both RoPE styles and every head
// kind; its KV cache gives what full forward passes give; bad input gets one clear error; models it
// does not cover are named and left to the per-module path. Child processes rerun the file with the
// instruction set forced down (FRUGAL_NO_AVX512 / FRUGAL_NO_AVX2), where both paths change together.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { fbiInt8Isa } from '../../src/backend/cpu/fbi.ts';
import { nativeAddon } from '../../src/backend/cpu/native.ts';
import { ByteTokenizer } from '../../src/data/index.ts';
import { FusedDecoder, fusedDecodeGap } from '../../src/infer/fused-decode.ts';
import { generate } from '../../src/infer/generate.ts';
import { modelFromPacked, packModel } from '../../src/infer/packed-linear.ts';
import { CausalLM, type ModelConfig } from '../../src/models/index.ts';
import { withFbiLinearFactory } from '../../src/models/fbi-plugin.ts';
import type { LinearLike } from '../../src/nn/layers.ts';
import { HalfHead, PackedLinear, setPackedActivations } from '../../src/nn/packed.ts';
import { fromArray, noGrad } from '../../src/tensor/index.ts';
import { relMaxAbs } from '../helpers.ts';

const expectedIsa = process.env.FRUGAL_EXPECT_ISA;

type HeadKind = 'f32' | 'f16' | 'int8' | 'tied';

/** A packed model built directly (any config, e.g. interleaved RoPE, which the HF layout cannot carry), seeded random bits and scales. */
function randomPacked(cfg: Partial<ModelConfig>): CausalLM {
  const model = withFbiLinearFactory((c, i, o) => new PackedLinear(i, o, c.fbiScale), () => new CausalLM({
    vocabSize: 97, hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 4, intermediateSize: 96, maxPositions: 64, linear: 'fbi', ...cfg,
  }, { seed: 5 }));
  let s = 99;
  for (const [n, t] of model.namedBuffers()) {
    const d = t.dataSync() as Float32Array | Int32Array;
    for (let i = 0; i < d.length; i++) {
      s = (s * 1103515245 + 12345) >>> 0;
      d[i] = n.endsWith('weight_bits') ? s | 0 : n.endsWith('wscale') ? 0.02 * (1 + (s % 1000) / 2000) : 1e-3 * ((s % 200) / 100 - 1);
    }
  }
  for (const p of model.parameters()) p.requiresGrad = false;
  setPackedActivations(model, 'int8');
  return model.eval();
}

/** A packed model of a latent FBI model with seeded random weights (scales made unequal per entry). */
function packedModel(cfg: Partial<ModelConfig>, head: HeadKind, seed = 3): CausalLM {
  const latent = new CausalLM({
    vocabSize: 97, hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 4, intermediateSize: 96, maxPositions: 64,
    linear: 'fbi', tieEmbeddings: head === 'tied', ...cfg,
  }, { seed });
  for (const [n, p] of latent.namedParameters()) {
    if (!n.endsWith('wscale') && !n.endsWith('wbias') && !n.endsWith('norm.weight') && !n.endsWith('layernorm.weight')) continue;
    const d = p.dataSync() as Float32Array;
    for (let i = 0; i < d.length; i++) d[i] = n.endsWith('wbias') ? 1e-3 * Math.sin(7 * i + n.length) : d[i] * (1 + 0.3 * Math.cos(3 * i + n.length));
  }
  const model = modelFromPacked(packModel(latent.eval(), head === 'int8' ? { head: 'int8' } : {}));
  if (head === 'f16') {
    const w = new Map(model.namedParameters()).get('lm_head.weight')!.dataSync() as Float32Array;
    const h = new HalfHead(model.config.hiddenSize, model.config.vocabSize, w);
    model.replaceChild('lm_head', h);
    (model as unknown as { lmHead: LinearLike }).lmHead = h;
  }
  setPackedActivations(model, 'int8');
  return model;
}

/** The per-module path: logits of every row of each chunk, continuing one KV-cached state. */
function moduleChunks(model: CausalLM, chunks: number[][], capacity: number): Float32Array[] {
  const state = model.createState(1, capacity);
  return chunks.map((c) => noGrad(() => Float32Array.from(model.forward(fromArray(Int32Array.from(c), [1, c.length]), state).dataSync() as Float32Array)));
}

function fusedChunks(model: CausalLM, chunks: number[][], capacity: number): Float32Array[] {
  const dec = FusedDecoder.for(model);
  assert.ok(dec, `model not covered: ${fusedDecodeGap(model)}`);
  const st = dec.createState(capacity);
  return chunks.map((c) => dec.logits(st, Int32Array.from(c), true).slice());
}

function firstDiff(a: Float32Array, b: Float32Array): string {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return `index ${i}: ${a[i]} vs ${b[i]} (rel ${relMaxAbs(a, b)})`;
  return '';
}

const ids = (n: number, k = 0) => Array.from({ length: n }, (_, i) => (i * 31 + 7 + k * 13) % 97);

test(`dispatch path is the one asked for (${expectedIsa ?? 'native'})`, () => {
  const isa = fbiInt8Isa();
  if (expectedIsa) assert.equal(isa.startsWith('avx512') ? 'avx512' : isa, expectedIsa);
  if (process.env.FRUGAL_NO_GFNI) assert.ok(!isa.endsWith('-gfni'), isa);
});

const cases: Array<[string, Partial<ModelConfig>, HeadKind | 'direct']> = [
  ['column scales, f16 head', { fbiScale: 'column' }, 'f16'],
  ['row scales, int8 head', { fbiScale: 'row' }, 'int8'],
  ['single scale, f32 head after the native stack', { fbiScale: 'single' }, 'f32'],
  ['grouped KV heads (4 q heads, 2 kv heads), tied head', { numKvHeads: 2 }, 'tied'],
  ['interleaved RoPE, head size 32, 3 layers, built directly, f32 head', { ropeStyle: 'interleaved', numHeads: 2, numKvHeads: 1, numLayers: 3 }, 'direct'],
  // gate + up hold 2.1M weights: a decode step runs them as one region on the thread pool.
  ['hidden 512, FFN 2048 (products on the pool), head size 128', { hiddenSize: 512, numHeads: 4, numKvHeads: 4, intermediateSize: 2048, numLayers: 1 }, 'direct'],
];
for (const [name, cfg, head] of cases) {
  test(`fused logits equal the per-module path bit for bit: ${name}`, () => {
    const model = head === 'direct' ? randomPacked(cfg) : packedModel(cfg, head);
    // prefill 9 (tiled attention), decode 3 single tokens, a 6-token chunk against the cache, decode 1.
    const chunks = [ids(9), [5], [60], [1], ids(6, 1), [42]];
    const want = moduleChunks(model, chunks, 32), got = fusedChunks(model, chunks, 32);
    chunks.forEach((c, i) => {
      assert.ok(want[i].every(Number.isFinite) && Math.max(...want[i]) > Math.min(...want[i]), `chunk ${i}: the reference logits are finite and not constant`);
      assert.equal(firstDiff(got[i], want[i]), '', `chunk ${i} (${c.length} tokens)`);
    });
  });
}

test('the KV cache: prefill then decode equals full forward passes', () => {
  const model = packedModel({ numKvHeads: 2 }, 'f16');
  const seq = ids(24, 2);
  const dec = FusedDecoder.for(model)!;
  // Up to 4 query rows the attention takes the same per-row path in a full pass as in a decode step,
  // so there the cache must reproduce full passes exactly: prefill 1, decode 3 == one pass over 4.
  const st = dec.createState(8);
  const rows: Float32Array[] = [dec.logits(st, Int32Array.from(seq.slice(0, 1)), true).slice()];
  for (let i = 1; i < 4; i++) rows.push(dec.logits(st, Int32Array.of(seq[i])).slice());
  const full4 = dec.logits(dec.createState(8), Int32Array.from(seq.slice(0, 4)), true);
  const v = model.config.vocabSize;
  rows.forEach((r, i) => assert.equal(firstDiff(r, full4.slice(i * v, (i + 1) * v)), '', `position ${i}`));
  assert.equal(st.position, 4);
  // Longer: full passes use the tiled attention, whose float sums differ from the per-row ones in the
  // last bits (measured: <= 6e-7 relative on the logits here). An int8 activation that sits on a
  // rounding boundary can then take the neighbouring level (one step is 1/127 of its row's max, about
  // 0.5% of one product's outputs), so the bound allows one such step, 5e-3; a cache one row off
  // gives 7e-2 to 1e-1 on these models, which the last check makes sure the bound catches.
  const st2 = dec.createState(24);
  dec.logits(st2, Int32Array.from(seq.slice(0, 12)));
  for (let i = 12; i < 24; i++) {
    const step = dec.logits(st2, Int32Array.of(seq[i]));
    const full = noGrad(() => model.forward(fromArray(Int32Array.from(seq.slice(0, i + 1)), [1, i + 1])).dataSync() as Float32Array);
    const e = relMaxAbs(step, full.subarray(i * v));
    assert.ok(e < 5e-3, `position ${i}: decoded logits vs a full pass: rel ${e}`);
  }
  // A wrong cache is caught by that bound: decoding position 12 with the cache rewound to 11 rows.
  st2.rewind(11);
  const wrong = dec.logits(st2, Int32Array.of(seq[12]));
  const full13 = noGrad(() => model.forward(fromArray(Int32Array.from(seq.slice(0, 13)), [1, 13])).dataSync() as Float32Array);
  assert.ok(relMaxAbs(wrong, full13.subarray(12 * v)) > 3e-2, 'a shifted cache must not pass the bound');
});

test('generate() takes the fused path and gives the per-module greedy continuation', async () => {
  const model = packedModel({}, 'f16');
  const tok = new ByteTokenizer();
  // a byte tokenizer needs 256 ids: a model of that vocabulary
  const big = packedModel({ vocabSize: 256 }, 'f16');
  assert.equal(fusedDecodeGap(big), null);
  const r = await generate(big, tok, 'Hi', { maxNewTokens: 10, temperature: 0, stopAtEos: false });
  const state = big.createState(1, 16);
  let cur = tok.encode('Hi');
  const want: number[] = [];
  for (let i = 0; i < 10; i++) {
    const l = noGrad(() => big.forward(fromArray(Int32Array.from(cur), [1, cur.length]), state).dataSync() as Float32Array);
    const last = l.subarray(l.length - 256);
    let best = 0;
    for (let j = 1; j < 256; j++) if (last[j] > last[best]) best = j;
    want.push(best);
    cur = [best];
  }
  assert.deepEqual(r.ids, want);
  assert.equal(fusedDecodeGap(model), null);
});

test('bad input: context overflow, ids outside the vocabulary, a foreign state', () => {
  const model = packedModel({}, 'f16');
  const dec = FusedDecoder.for(model)!;
  const st = dec.createState(8);
  dec.logits(st, Int32Array.from(ids(6)));
  assert.throws(() => dec.logits(st, Int32Array.from([1, 2, 3])), /fused decode: context overflow: position 6 \+ 3 tokens exceeds the 8 positions of this decoding state/);
  assert.equal(st.position, 6, 'a refused step leaves the state as it was');
  assert.throws(() => dec.logits(st, Int32Array.of(97)), /token id 97 is outside the vocabulary of 97/);
  assert.throws(() => dec.logits(st, new Int32Array(0)), /no tokens to run/);
  assert.throws(() => dec.createState(65), /exceeds the model context of 64/);
  const other = FusedDecoder.for(model)!;
  assert.throws(() => other.stack.step(st, Int32Array.of(1), false), /belongs to another stack/);
  assert.throws(() => st.rewind(7), /rewound to a position in \[0, 6\]/);
  assert.throws(() => nativeAddon().fbiDecodeCreate({ hidden: 8 }), /fused decode: heads must be a number/);
});

test('models the fused path does not cover are named and left to the per-module path', () => {
  const exact = packedModel({}, 'f16');
  setPackedActivations(exact, 'f32');
  assert.equal(fusedDecodeGap(exact), 'packed linears with f32 activations');
  assert.equal(FusedDecoder.for(exact), null);
  const dense = new CausalLM({ vocabSize: 64, hiddenSize: 32, numLayers: 1, numHeads: 2, intermediateSize: 48 });
  assert.equal(fusedDecodeGap(dense), 'linears that are not packed 1-bit');
  const qk = new CausalLM({ vocabSize: 64, hiddenSize: 32, numLayers: 1, numHeads: 2, intermediateSize: 48, qkNorm: true, linear: 'fbi' });
  assert.equal(fusedDecodeGap(qk), 'q/k norms');
  const ttt = new CausalLM({ vocabSize: 64, hiddenSize: 32, numLayers: 1, numHeads: 2, intermediateSize: 48, mixer: 'ttt-linear' });
  assert.equal(fusedDecodeGap(ttt), 'mixer ttt-linear');
});

const features = nativeAddon().cpuFeatures() as { avx512: boolean; avx2: boolean };
const children: Array<[string, Record<string, string>]> = [];
if (!expectedIsa && features.avx512) children.push([features.avx2 ? 'avx2' : 'scalar', { FRUGAL_NO_AVX512: '1' }]);
// AVX-512 with the shuffle expansion of the sign words instead of GFNI's.
if (!expectedIsa && fbiInt8Isa().endsWith('-gfni')) children.push(['avx512', { FRUGAL_NO_GFNI: '1' }]);
// The scalar child also turns the pool's spinning off, so its workers sleep between every region.
if (!expectedIsa && (features.avx512 || features.avx2)) children.push(['scalar', { FRUGAL_NO_AVX512: '1', FRUGAL_NO_AVX2: '1', FRUGAL_SPIN_US: '0' }]);
const ownTests = cases.length + 5;
for (const [isa, env] of children) {
  test(`the ${isa} path passes the same checks (child process)`, () => {
    const { NODE_TEST_CONTEXT: _, ...parentEnv } = process.env;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', fileURLToPath(import.meta.url)], {
      env: { ...parentEnv, ...env, FRUGAL_EXPECT_ISA: isa }, encoding: 'utf8',
    });
    assert.equal(r.status, 0, `child with ${JSON.stringify(env)} failed:\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, new RegExp(`# pass ${ownTests}\\b`), `child did not run its checks:\n${r.stdout}`);
  });
}
