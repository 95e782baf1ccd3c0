// Generation: cached decoding matches full forward passes, greedy is deterministic, seeded sampling
// is reproducible, and top-k / top-p never pick outside their candidate sets.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ByteTokenizer } from '../../src/data/index.ts';
import { CausalLM } from '../../src/models/index.ts';
import { fromArray, noGrad, Rng } from '../../src/tensor/index.ts';
import { generate } from '../../src/infer/generate.ts';
import { argmax, sampleToken } from '../../src/infer/sampling.ts';
import { relMaxAbs } from '../helpers.ts';

const tok = new ByteTokenizer();
const model = new CausalLM({ vocabSize: 256, hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, intermediateSize: 64, maxPositions: 128 }, { seed: 4 });
model.eval();

function fullLogitsLast(ids: number[]): Float32Array {
  const l = noGrad(() => model.forward(fromArray(Int32Array.from(ids), [1, ids.length])));
  const a = l.dataSync();
  return Float32Array.from(a.subarray(a.length - 256));
}

test('KV-cached decoding gives the same logits as full forward passes', async () => {
  const prompt = tok.encode('The whale');
  const state = model.createState(1, 64);
  let ids = [...prompt];
  const first = noGrad(() => model.forward(fromArray(Int32Array.from(ids), [1, ids.length]), state)).dataSync();
  assert.ok(relMaxAbs(first.subarray(first.length - 256), fullLogitsLast(ids)) < 1e-4);
  for (let i = 0; i < 12; i++) {
    const next = (i * 37 + 11) % 256;
    ids = [...ids, next];
    const cached = noGrad(() => model.forward(fromArray(Int32Array.of(next), [1, 1]), state)).dataSync();
    // Tolerance: outputs max-abs 1e-4 relative (golden README); different summation order only.
    const e = relMaxAbs(cached, fullLogitsLast(ids));
    assert.ok(e < 1e-4, `step ${i}: cached vs full logits rel error ${e}`);
  }
});

test('greedy generation is deterministic and equals argmax of full forward passes', async () => {
  const a = await generate(model, tok, 'Call me', { maxNewTokens: 10 });
  const b = await generate(model, tok, 'Call me', { maxNewTokens: 10 });
  assert.deepEqual(a.ids, b.ids);
  const ids = tok.encode('Call me');
  for (const id of a.ids) {
    assert.equal(id, argmax(fullLogitsLast(ids)));
    ids.push(id);
  }
});

test('seeded sampling is reproducible, streams the same text, and the seed matters', async () => {
  const pieces: string[] = [];
  const o = { maxNewTokens: 20, temperature: 1.5, topK: 50, topP: 0.95 };
  const a = await generate(model, tok, 'Ishmael', { ...o, seed: 1, stream: (t) => pieces.push(t) });
  const b = await generate(model, tok, 'Ishmael', { ...o, seed: 1 });
  const c = await generate(model, tok, 'Ishmael', { ...o, seed: 2 });
  assert.deepEqual(a.ids, b.ids);
  assert.equal(pieces.join(''), a.text);
  assert.equal(a.text, new TextDecoder().decode(Uint8Array.from(a.ids)));
  assert.notDeepEqual(a.ids, c.ids);
});

test('top-k and top-p restrict the candidates; temperature 0 is argmax', () => {
  const logits = Float32Array.from([0, 3, 1, 2.5, -1, 2.9]);
  const rng = new Rng(9);
  const seenK = new Set<number>();
  for (let i = 0; i < 500; i++) seenK.add(sampleToken(logits, { temperature: 1, topK: 2 }, rng));
  assert.deepEqual([...seenK].sort(), [1, 5]);
  // Softmax: p(1)=.38, p(5)=.34, p(3)=.23 ... top-p 0.7 keeps {1, 5} (0.72 >= 0.7), never 3.
  const seenP = new Set<number>();
  for (let i = 0; i < 500; i++) seenP.add(sampleToken(logits, { temperature: 1, topP: 0.7 }, rng));
  assert.deepEqual([...seenP].sort(), [1, 5]);
  assert.equal(sampleToken(logits, { temperature: 0 }, rng), 1);
  // Unrestricted sampling frequencies follow softmax (5000 draws; 4 sigma ~ 0.03).
  let ones = 0;
  for (let i = 0; i < 5000; i++) if (sampleToken(logits, { temperature: 1 }, rng) === 1) ones++;
  const z = [...logits].reduce((s, x) => s + Math.exp(x), 0);
  assert.ok(Math.abs(ones / 5000 - Math.exp(3) / z) < 0.03, `freq ${ones / 5000} vs ${Math.exp(3) / z}`);
});

test('bad generation options are rejected with a clear message', async () => {
  await assert.rejects(generate(model, tok, 'x', { temperature: -1 }), /temperature must be/);
  await assert.rejects(generate(model, tok, 'x', { topP: 0 }), /top-p must be/);
  await assert.rejects(generate(model, tok, 'x', { maxNewTokens: 500 }), /exceeds the model context/);
});

test('an aborted signal ends generation after the token in flight, keeping the text so far', async () => {
  const full = await generate(model, tok, 'Call me', { maxNewTokens: 30, temperature: 0, stopAtEos: false });
  const ctl = new AbortController();
  const counts: number[] = [];
  const r = await generate(model, tok, 'Call me', {
    maxNewTokens: 30, temperature: 0, stopAtEos: false, signal: ctl.signal,
    stream: (_t, n) => {
      counts.push(n);
      if (n === 5) ctl.abort();
    },
  });
  assert.deepEqual(counts, [1, 2, 3, 4, 5]);
  assert.equal(r.finishReason, 'abort');
  assert.deepEqual(r.ids, full.ids.slice(0, 5));
  assert.equal(full.finishReason, 'length');
  const before = await generate(model, tok, 'Call me', { maxNewTokens: 30, signal: AbortSignal.abort() });
  assert.deepEqual([before.ids, before.finishReason], [[], 'abort']);
});

test('onLogprobs gives each generated token the log-softmax of the model logits at its step', async () => {
  const seen: [Float32Array, number][] = [];
  const r = await generate(model, tok, 'Call me', { maxNewTokens: 6, temperature: 0, onLogprobs: (lp, id) => seen.push([lp, id]) });
  assert.deepEqual(seen.map(([, id]) => id), r.ids);
  const ids = tok.encode('Call me');
  for (const [lp, id] of seen) {
    const logits = fullLogitsLast(ids);
    let z = 0;
    const m = Math.max(...logits);
    for (const v of logits) z += Math.exp(v - m);
    assert.ok(Math.abs(lp[id] - (logits[id] - m - Math.log(z))) < 1e-4, `log-prob of ${id}: ${lp[id]}`);
    ids.push(id);
  }
});
