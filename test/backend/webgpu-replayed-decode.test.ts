// Greedy decoding from one recorded token step, replayed (src/infer/replayed-decode.ts): the tokens
// equal those of the per-token forward on the same device, for dense and packed 1-bit linears and
// grouped KV heads, the state it leaves continues like the per-token one, and what it cannot replay
// it refuses.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { initWebGPU, webgpuAdapterName } from '../../src/backend/webgpu/index.ts';
import { ReplayedDecoder } from '../../src/infer/replayed-decode.ts';
import { CausalLM, type ModelConfig, type ModelState } from '../../src/models/index.ts';
import { KVCache } from '../../src/nn/attention.ts';
import { PackedLinear } from '../../src/nn/packed.ts';
import { argmax, reshape } from '../../src/ops/index.ts';
import { fromArray, keep, noGrad, type Tensor, tidy } from '../../src/tensor/index.ts';
import { DEVICE } from '../helpers.ts';

let reason = '';
const gpu = await initWebGPU().catch((e: Error) => { reason = e.message; return null; });
console.log(gpu ? `# backend: webgpu (${webgpuAdapterName()})` : `# webgpu replayed decode NOT RUN: ${reason}`);
if (!gpu && DEVICE === 'webgpu') test('webgpu backend initializes', () => assert.fail(reason));
if (!gpu) test('webgpu replayed decode (not run: no WebGPU adapter)', { skip: reason }, () => {});

const device = 'webgpu' as const;

function keepState(state: ModelState): void {
  for (const l of state.layers) {
    const c = l.mixer;
    if (c instanceof KVCache) { if (c.k) keep(c.k); if (c.v) keep(c.v); }
  }
}

function build(cfg: Partial<ModelConfig>, packed: boolean): CausalLM {
  const full = { vocabSize: 61, hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 4, intermediateSize: 48, maxPositions: 64, ...cfg };
  const model = packed
    ? new CausalLM({ ...full, linear: 'fbi' }, { device, seed: 3, linear: (c, i, o) => new PackedLinear(i, o, c.fbiScale, device) })
    : new CausalLM(full, { device, seed: 3 });
  let s = 17;
  // Random sign words and column scales near the xnor init of N(0, 0.02) (a fresh PackedLinear holds zeros).
  for (const [name, t] of model.namedBuffers()) {
    const rnd = () => (s = (s * 1103515245 + 12345) >>> 0);
    if (name.endsWith('weight_bits')) model.setTensor(name, fromArray(Int32Array.from({ length: t.size }, () => rnd() | 0), t.shape, device));
    else if (name.endsWith('wscale')) model.setTensor(name, fromArray(Float32Array.from({ length: t.size }, () => 0.1 * (1 + (rnd() % 100) / 100)), t.shape, device));
    else if (name.endsWith('wbias')) model.setTensor(name, fromArray(Float32Array.from({ length: t.size }, () => 1e-2 * ((rnd() % 200) / 100 - 1)), t.shape, device));
    else continue;
    t.dispose();
  }
  for (const p of model.parameters()) p.requiresGrad = false;
  model.eval();
  return model;
}

/** The state after prefilling all but the prompt's last token, and that token on the device. */
function prefilled(model: CausalLM, prompt: number[], capacity: number): { state: ModelState; first: Tensor } {
  const state = model.createState(1, capacity);
  tidy(() => { noGrad(() => model.forward(fromArray(Int32Array.from(prompt.slice(0, -1)), [1, prompt.length - 1], device), state)); keepState(state); });
  return { state, first: fromArray(Int32Array.of(prompt.at(-1)!), [1, 1], device) };
}

/** n greedy tokens by the per-token forward, from `first`, and the logits of the last step. */
async function perToken(model: CausalLM, state: ModelState, first: Tensor, n: number): Promise<{ tokens: number[]; logits: Float32Array }> {
  const tokens: number[] = [];
  let tok = first, logits: Float32Array = new Float32Array(0);
  for (let i = 0; i < n; i++) {
    const [next, y] = tidy(() => {
      const y = keep(noGrad(() => model.forward(tok, state)));
      keepState(state);
      return [keep(reshape(argmax(reshape(y, [model.config.vocabSize]), 0), [1, 1])), y];
    });
    tokens.push((await next.data())[0]);
    logits = (await y.data()) as Float32Array;
    y.dispose();
    if (tok !== first) tok.dispose();
    tok = next;
  }
  tok.dispose();
  return { tokens, logits };
}

const prompt = [5, 9, 2, 44, 17, 3, 30];
const cases: Array<[string, Partial<ModelConfig>, boolean]> = [
  ['dense linears', {}, false],
  ['packed 1-bit linears, grouped KV heads (4 q, 2 kv), interleaved RoPE', { numKvHeads: 2, ropeStyle: 'interleaved' }, true],
];

if (gpu) {
  for (const [name, cfg, packed] of cases) {
    test(`replayed greedy tokens equal the per-token forward's: ${name}`, async () => {
      const model = build(cfg, packed);
      const n = 20;
      const a = prefilled(model, prompt, 40);
      const { tokens: want, logits: wantLogits } = await perToken(model, a.state, a.first, n);
      const b = prefilled(model, prompt, 40);
      const dec = ReplayedDecoder.start(model, b.state, b.first, n);
      while (dec.count < n) dec.next();
      const got = Array.from(await dec.tokens());
      assert.deepEqual(got, want);
      // The last step's logits, which depend on every position-dependent part (RoPE, appends, key count).
      assert.deepEqual(await dec.lastLogits(), wantLogits);
      assert.equal(b.state.position, a.state.position);
      assert.throws(() => dec.next(), /all 20 tokens were decoded/);
      // Every cache row (keys after RoPE at their positions, values) is the per-token path's, bit for bit.
      for (const [i, l] of b.state.layers.entries()) {
        const ca = a.state.layers[i].mixer as KVCache, cb = l.mixer as KVCache;
        assert.equal(cb.length, ca.length);
        for (const key of ['k', 'v'] as const) {
          const x = (await ca[key]!.data()) as Float32Array, y = (await cb[key]!.data()) as Float32Array;
          const used = (x.length / ca.capacity) * ca.length;
          assert.deepEqual(y.subarray(0, used), x.subarray(0, used), `layer ${i} ${key}`);
        }
      }
      // The state continues with the per-token forward: the same logits as after per-token decoding.
      dec.dispose();
      const logits = async (st: ModelState) => {
        const y = tidy(() => { const r = noGrad(() => model.forward(fromArray(Int32Array.of(want.at(-1)!), [1, 1], device), st)); keepState(st); return r; });
        return (await y.data()) as Float32Array;
      };
      assert.deepEqual(await logits(b.state), await logits(a.state));
    });
  }

  test('replayed decode refuses what it cannot replay', () => {
    const model = build({}, false);
    const empty = model.createState(1, 16);
    const tok = fromArray(Int32Array.of(1), [1, 1], device);
    assert.throws(() => ReplayedDecoder.start(model, empty, tok, 4), /prefill the prompt first/);
    const small = prefilled(model, prompt, 10);
    assert.throws(() => ReplayedDecoder.start(model, small.state, small.first, 8), /holds 10 positions, 6 used; 8 more do not fit/);
    assert.throws(() => ReplayedDecoder.start(model, small.state, fromArray(Float32Array.of(1), [1, 1], device), 2), /i32 \[1, 1\] tensor on webgpu/);
    const ttt = new CausalLM({ vocabSize: 61, hiddenSize: 32, numLayers: 1, numHeads: 4, intermediateSize: 48, maxPositions: 64, mixer: 'ttt-linear' }, { device, seed: 1 });
    const ts = prefilled(ttt, prompt, 32);
    assert.throws(() => ReplayedDecoder.start(ttt, ts.state, ts.first, 2), /keeps no KV cache/);
  });
}
