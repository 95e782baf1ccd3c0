// Chat completions with logprobs (OpenAI chat format): every generated token's logprob equals the
// log-softmax of one full forward pass over the rendered prompt and the tokens before it, the
// alternatives are the most likely ids in order, bytes are the token's own bytes, and the streamed
// entries are the same as the non-streamed ones.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ByteTokenizer } from '../../src/data/index.ts';
import { generate, logSoftmax } from '../../src/infer/generate.ts';
import { CausalLM } from '../../src/models/index.ts';
import { chatTemplateFrom } from '../../src/serve/chat.ts';
import { OpenAIServer } from '../../src/serve/server.ts';
import { fromArray, noGrad } from '../../src/tensor/index.ts';

const tok = new ByteTokenizer();
const model = new CausalLM({ vocabSize: 256, hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, intermediateSize: 64, maxPositions: 96 }, { seed: 11 });
model.eval();
const chatTemplate = chatTemplateFrom({ chat_template: '{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant] ' });

let server: OpenAIServer;
let base: string;
before(async () => {
  server = new OpenAIServer({ model, tokenizer: tok, modelName: 'tiny', chatTemplate, maxBatch: 2, maxQueue: 2 });
  base = `http://127.0.0.1:${await server.listen(0)}`;
});
after(async () => {
  await server.close();
});

const post = (body: unknown) => fetch(`${base}/v1/chat/completions`, { method: 'POST', body: JSON.stringify(body) });
const msgs = [{ role: 'user', content: 'Where is the whale?' }];
const rendered = '[user] Where is the whale?\n[assistant] ';

test('chat logprobs: each token scored like a full forward pass, top_logprobs sorted, bytes exact', async () => {
  const n = 10;
  const ref = await generate(model, tok, rendered, { maxNewTokens: n, temperature: 0 });
  const r = await post({ messages: msgs, max_tokens: n, temperature: 0, logprobs: true, top_logprobs: 3 });
  assert.equal(r.status, 200);
  const c = (await r.json()).choices[0];
  assert.equal(c.message.content, ref.text);
  const content = c.logprobs.content;
  assert.equal(content.length, ref.ids.length);
  const ids = [...tok.encode(rendered), ...ref.ids];
  const p0 = ids.length - ref.ids.length;
  const full = noGrad(() => model.forward(fromArray(Int32Array.from(ids), [1, ids.length]))).dataSync() as Float32Array;
  for (let j = 0; j < ref.ids.length; j++) {
    const lp = logSoftmax(full.slice((p0 + j - 1) * 256, (p0 + j) * 256));
    const e = content[j];
    assert.deepEqual(e.bytes, [ref.ids[j]]);
    assert.equal(e.token, tok.decode([ref.ids[j]]));
    // Tolerance: cached decoding vs one full pass differ in summation order only (1e-4 relative).
    assert.ok(Math.abs(e.logprob - lp[ref.ids[j]]) < 1e-4 * Math.max(1, Math.abs(lp[ref.ids[j]])), `token ${j}`);
    assert.equal(e.top_logprobs.length, 3);
    const best = [...lp.keys()].sort((a, b) => lp[b] - lp[a]).slice(0, 3);
    assert.deepEqual(e.top_logprobs.map((t: { bytes: number[] }) => t.bytes[0]), best);
    for (let k = 1; k < 3; k++) assert.ok(e.top_logprobs[k - 1].logprob >= e.top_logprobs[k].logprob);
    // Greedy: the chosen token is the most likely one.
    assert.deepEqual(e.top_logprobs[0].bytes, e.bytes);
    assert.equal(e.top_logprobs[0].logprob, e.logprob);
  }
  // Without logprobs the field is null; logprobs alone gives no alternatives.
  const plain = await (await post({ messages: msgs, max_tokens: 3, temperature: 0 })).json();
  assert.equal(plain.choices[0].logprobs, null);
  const bare = await (await post({ messages: msgs, max_tokens: 3, temperature: 0, logprobs: true })).json();
  assert.equal(bare.choices[0].logprobs.content.length, 3);
  assert.deepEqual(bare.choices[0].logprobs.content.map((e: { top_logprobs: unknown[] }) => e.top_logprobs.length), [0, 0, 0]);
  assert.deepEqual(bare.choices[0].logprobs.content.map((e: { logprob: number }) => e.logprob), content.slice(0, 3).map((e: { logprob: number }) => e.logprob));
});

test('streamed chat logprobs: one entry per token, the same as the non-streamed response', async () => {
  const body = { messages: msgs, max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 2 };
  const whole = (await (await post(body)).json()).choices[0];
  const text = await (await post({ ...body, stream: true })).text();
  const ev = text.split('\n\n').filter((e) => e.startsWith('data: ') && e !== 'data: [DONE]').map((e) => JSON.parse(e.slice(6)));
  assert.ok(text.trimEnd().endsWith('data: [DONE]'));
  const entries = ev.flatMap((e) => e.choices[0].logprobs?.content ?? []);
  assert.deepEqual(entries, whole.logprobs.content);
  assert.equal(ev.map((e) => e.choices[0].delta.content ?? '').join(''), whole.message.content);
  assert.equal(ev.at(-1).choices[0].finish_reason, 'length');
});

test('chat logprobs fields of the wrong type or range get a 400 naming them', async () => {
  for (const [extra, re] of [
    [{ logprobs: 3 }, /'logprobs' must be true or false/],
    [{ logprobs: true, top_logprobs: 21 }, /'top_logprobs' must be an integer in \[0, 20\]/],
    [{ logprobs: true, top_logprobs: 1.5 }, /top_logprobs/],
    [{ top_logprobs: 2 }, /needs 'logprobs': true/],
  ] as [object, RegExp][]) {
    const r = await post({ messages: msgs, max_tokens: 2, ...extra });
    assert.equal(r.status, 400, JSON.stringify(extra));
    assert.match((await r.json()).error.message, re);
  }
});
