// The OpenAI-compatible server in process, on 127.0.0.1 with a free port and a tiny model: every
// endpoint, streaming, batched greedy decoding equal to generate(), 429, disconnects, bad requests.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ByteTokenizer } from '../../src/data/index.ts';
import { generate, logSoftmax } from '../../src/infer/generate.ts';
import { CausalLM } from '../../src/models/index.ts';
import { chatTemplateFrom } from '../../src/serve/chat.ts';
import { OpenAIServer } from '../../src/serve/server.ts';
import { fromArray, noGrad } from '../../src/tensor/index.ts';

const tok = new ByteTokenizer();
const model = new CausalLM({ vocabSize: 256, hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, intermediateSize: 64, maxPositions: 96 }, { seed: 4 });
model.eval();
const chatTemplate = chatTemplateFrom({
  chat_template: "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}",
});

let server: OpenAIServer;
let base: string;
before(async () => {
  server = new OpenAIServer({ model, tokenizer: tok, modelName: 'tiny', chatTemplate, maxBatch: 4, maxQueue: 2 });
  base = `http://127.0.0.1:${await server.listen(0)}`;
});
after(async () => {
  await server.close();
});

const post = (path: string, body: unknown, signal?: AbortSignal) =>
  fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body), signal });

async function json(path: string, body: unknown): Promise<{ status: number; body: any }> {
  const r = await post(path, body);
  return { status: r.status, body: await r.json() };
}

/** Data lines of a server-sent-event stream, parsed ([DONE] kept as the string). */
async function events(r: Response): Promise<any[]> {
  const text = await r.text();
  return text.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => (e === 'data: [DONE]' ? '[DONE]' : JSON.parse(e.slice(6))));
}

test('GET /health and /v1/models; unknown routes are 404, wrong methods 405, both JSON errors', async () => {
  const h = await (await fetch(`${base}/health`)).json();
  assert.equal(h.status, 'ok');
  const m = await (await fetch(`${base}/v1/models`)).json();
  assert.equal(m.object, 'list');
  assert.deepEqual(m.data.map((x: { id: string }) => x.id), ['tiny']);
  const nf = await fetch(`${base}/v2/nothing`);
  assert.equal(nf.status, 404);
  assert.match((await nf.json()).error.message, /no route/);
  const wm = await fetch(`${base}/v1/completions`);
  assert.equal(wm.status, 405);
  assert.equal(typeof (await wm.json()).error.message, 'string');
});

test('completions: greedy text equals generate(); echo + logprobs score the prompt like a full forward pass', async () => {
  const prompt = 'Call me Ishmael';
  const ref = await generate(model, tok, prompt, { maxNewTokens: 12, temperature: 0 });
  const r = await json('/v1/completions', { model: 'tiny', prompt, max_tokens: 12, temperature: 0, logprobs: 2, echo: true });
  assert.equal(r.status, 200);
  const c = r.body.choices[0];
  assert.equal(c.text, prompt + ref.text);
  assert.equal(c.finish_reason, 'length');
  assert.deepEqual(r.body.usage, { prompt_tokens: 15, completion_tokens: 12, total_tokens: 27 });
  // Prompt and generated tokens, each with its logprob under the model (the first has none).
  const ids = [...tok.encode(prompt), ...ref.ids];
  assert.equal(c.logprobs.tokens.length, ids.length);
  assert.equal(c.logprobs.token_logprobs[0], null);
  const full = noGrad(() => model.forward(fromArray(Int32Array.from(ids), [1, ids.length]))).dataSync() as Float32Array;
  for (let i = 1; i < ids.length; i++) {
    const lp = logSoftmax(full.slice((i - 1) * 256, i * 256));
    // Tolerance: cached decoding vs one full pass differ in summation order only (1e-4 relative).
    assert.ok(Math.abs(c.logprobs.token_logprobs[i] - lp[ids[i]]) < 1e-4 * Math.max(1, Math.abs(lp[ids[i]])), `token ${i}`);
    assert.equal(Object.keys(c.logprobs.top_logprobs[i]).length <= 2, true);
  }
  assert.deepEqual(c.logprobs.text_offset.slice(0, 3), [0, 1, 2]);
  // max_tokens 0 with echo: the loglikelihood request of lm-eval-harness (token ids as the prompt).
  const s = await json('/v1/completions', { prompt: ids, max_tokens: 0, logprobs: 0, echo: true });
  assert.equal(s.status, 200);
  assert.equal(s.body.choices[0].logprobs.token_logprobs.length, ids.length);
  assert.ok(Math.abs(s.body.choices[0].logprobs.token_logprobs[5] - c.logprobs.token_logprobs[5]) < 1e-5);
});

test('several prompts in one request give one choice each, in order', async () => {
  const r = await json('/v1/completions', { prompt: ['The whale', 'Queequeg'], max_tokens: 5, temperature: 0 });
  assert.equal(r.status, 200);
  for (const [i, p] of ['The whale', 'Queequeg'].entries()) {
    assert.equal(r.body.choices[i].index, i);
    assert.equal(r.body.choices[i].text, (await generate(model, tok, p, { maxNewTokens: 5, temperature: 0 })).text);
  }
});

test('streaming completions and chat: chunks add up to the non-streamed text and end with [DONE]', async () => {
  const body = { prompt: 'It was the best', max_tokens: 10, temperature: 0 };
  const plain = (await json('/v1/completions', body)).body.choices[0].text;
  const r = await post('/v1/completions', { ...body, stream: true });
  assert.equal(r.headers.get('content-type'), 'text/event-stream');
  const ev = await events(r);
  assert.equal(ev.at(-1), '[DONE]');
  assert.equal(ev.at(-2).choices[0].finish_reason, 'length');
  assert.equal(ev.slice(0, -1).map((e) => e.choices[0].text).join(''), plain);
  assert.ok(ev.length >= 4, 'text arrives in several chunks');

  const msgs = [{ role: 'user', content: 'Hello' }];
  const chat = await json('/v1/chat/completions', { messages: msgs, max_tokens: 8, temperature: 0 });
  assert.equal(chat.status, 200);
  const rendered = '<user>Hello\n<assistant>';
  assert.equal(chat.body.choices[0].message.content, (await generate(model, tok, rendered, { maxNewTokens: 8, temperature: 0 })).text);
  assert.equal(chat.body.usage.prompt_tokens, rendered.length);
  const cs = await events(await post('/v1/chat/completions', { messages: msgs, max_tokens: 8, temperature: 0, stream: true }));
  assert.equal(cs[0].choices[0].delta.role, 'assistant');
  assert.equal(cs.slice(0, -1).map((e) => e.choices[0].delta.content ?? '').join(''), chat.body.choices[0].message.content);
});

test('stop strings end the text before them (finish_reason stop); seeded sampling is reproducible', async () => {
  const full = (await json('/v1/completions', { prompt: 'Call me', max_tokens: 20, temperature: 0 })).body.choices[0].text as string;
  const stop = full.slice(6, 8);
  const cut = full.indexOf(stop);
  const r = await json('/v1/completions', { prompt: 'Call me', max_tokens: 20, temperature: 0, stop: [stop] });
  assert.equal(r.body.choices[0].text, full.slice(0, cut));
  assert.equal(r.body.choices[0].finish_reason, 'stop');
  const ev = await events(await post('/v1/completions', { prompt: 'Call me', max_tokens: 20, temperature: 0, stop, stream: true }));
  assert.equal(ev.slice(0, -1).map((e) => e.choices[0].text).join(''), full.slice(0, cut));
  const s = { prompt: 'Call me', max_tokens: 16, temperature: 1.2, top_p: 0.9 };
  const a = await json('/v1/completions', { ...s, seed: 7 });
  const b = await json('/v1/completions', { ...s, seed: 7 });
  const c = await json('/v1/completions', { ...s, seed: 8 });
  assert.equal(a.body.choices[0].text, b.body.choices[0].text);
  assert.notEqual(a.body.choices[0].text, c.body.choices[0].text);
});

test('concurrent greedy requests are decoded together and each equals generate() alone', async () => {
  const prompts = ['Call me Ishmael.', 'The whale', 'It was', 'Some years ago - never mind how long', 'A', 'Queequeg was a native'];
  const lens = [20, 14, 25, 9, 18, 11];
  const refs = await Promise.all(prompts.map((p, i) => generate(model, tok, p, { maxNewTokens: lens[i], temperature: 0 })));
  const steps0 = server.scheduler.steps, rows0 = server.scheduler.stepRows;
  // 6 requests, 4 slots and 2 queue places: all are taken; two join as others leave.
  const out = await Promise.all(prompts.map((p, i) => json('/v1/completions', { prompt: p, max_tokens: lens[i], temperature: 0 })));
  out.forEach((r, i) => {
    assert.equal(r.status, 200);
    assert.equal(r.body.choices[0].text, refs[i].text, `request ${i}`);
  });
  const steps = server.scheduler.steps - steps0, rows = server.scheduler.stepRows - rows0;
  // One at a time would need sum(lens) - 6 decode steps; batched, each step carries several rows.
  assert.equal(rows, lens.reduce((s, x) => s + x - 1, 0));
  assert.ok(rows / steps > 2, `mean batch ${rows / steps}`);
});

test('a full queue answers 429 and the accepted requests still complete', async () => {
  const many = Array.from({ length: 9 }, (_, i) => json('/v1/completions', { prompt: `p${i}`, max_tokens: 60, temperature: 0 }));
  const res = await Promise.all(many);
  const codes = res.map((r) => r.status);
  assert.equal(codes.filter((c) => c === 200).length, 6, `codes ${codes}`);
  assert.equal(codes.filter((c) => c === 429).length, 3);
  for (const r of res) {
    if (r.status === 429) assert.equal(r.body.error.type, 'rate_limit_error');
    else assert.equal(r.body.choices[0].finish_reason, 'length');
  }
});

test('a client that disconnects frees its slot: decoding of its sequence stops', async () => {
  const ac = new AbortController();
  const r = await post('/v1/completions', { prompt: 'Call me', max_tokens: 80, temperature: 0, stream: true }, ac.signal);
  const reader = r.body!.getReader();
  await reader.read();
  const rows0 = server.scheduler.stepRows;
  ac.abort();
  const t0 = Date.now();
  while (server.scheduler.active > 0 && Date.now() - t0 < 5000) await new Promise((res) => setTimeout(res, 10));
  assert.equal(server.scheduler.active, 0);
  assert.ok(server.scheduler.stepRows - rows0 < 70, `decoded ${server.scheduler.stepRows - rows0} more tokens after the disconnect`);
  assert.equal((await json('/v1/completions', { prompt: 'x', max_tokens: 2 })).status, 200);
  // Non-streamed: the request is dropped too when its client goes away before the answer.
  const ac2 = new AbortController();
  const rows1 = server.scheduler.stepRows;
  const pending = post('/v1/completions', { prompt: 'Call me', max_tokens: 80, temperature: 0 }, ac2.signal).catch((e: Error) => e);
  const t1 = Date.now();
  while (server.scheduler.active === 0 && Date.now() - t1 < 5000) await new Promise((res) => setTimeout(res, 2));
  ac2.abort();
  assert.ok((await pending) instanceof Error);
  while (server.scheduler.active > 0 && Date.now() - t1 < 5000) await new Promise((res) => setTimeout(res, 10));
  assert.equal(server.scheduler.active, 0);
  assert.ok(server.scheduler.stepRows - rows1 < 79, `decoded ${server.scheduler.stepRows - rows1} tokens of 80`);
});

test('bad requests get a 400 JSON error naming the problem, and the server keeps serving', async () => {
  const cases: [unknown, RegExp][] = [
    ['{not json', /not valid JSON/],
    ['[1, 2]', /JSON object/],
    [{ prompt: 'x', max_tokens: -1 }, /max_tokens/],
    [{ prompt: 'x', max_tokens: 2.5 }, /max_tokens/],
    [{ prompt: 'x', temperature: 'hot' }, /temperature/],
    [{ prompt: 'x', top_p: 0 }, /top_p/],
    [{ prompt: 'x', stream: 'yes' }, /stream/],
    [{ prompt: 'x', stop: 3 }, /stop/],
    [{ prompt: 'x', logprobs: -2 }, /logprobs/],
    [{ prompt: 42 }, /prompt/],
    [{ prompt: [1, 999] }, /token-id prompt/],
    [{ prompt: 'x'.repeat(95), max_tokens: 10 }, /exceeds the model context of 96/],
    [{ model: 5, prompt: 'x' }, /model/],
  ];
  for (const [body, re] of cases) {
    const r = await json('/v1/completions', body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.match(r.body.error.message, re);
  }
  for (const [body, re] of [
    [{ messages: 'hi' }, /messages/],
    [{ messages: [{ role: 'user' }] }, /messages\[0\]/],
    [{ messages: [{ role: 'user', content: 'x' }], seed: -1 }, /seed/],
  ] as [unknown, RegExp][]) {
    const r = await json('/v1/chat/completions', body);
    assert.equal(r.status, 400);
    assert.match(r.body.error.message, re);
  }
  assert.equal((await (await fetch(`${base}/health`)).json()).status, 'ok');
});

test('a model without a chat template answers chat with a clear 400', async () => {
  const bare = new OpenAIServer({ model, tokenizer: tok, modelName: 'bare' });
  const url = `http://127.0.0.1:${await bare.listen(0)}`;
  const r = await fetch(`${url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }) });
  assert.equal(r.status, 400);
  assert.match((await r.json()).error.message, /no chat template/);
  await bare.close();
});
