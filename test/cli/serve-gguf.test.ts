// `frugal serve --model FILE.gguf`: the chat template comes from the file's tokenizer.chat_template
// (with bos_token / eos_token from its token ids); chat answers equal greedy generation on the
// rendered prompt; a GGUF without a template answers chat with a clear 400, and one whose template
// does not parse is refused at start with one line and exit 2. The GGUFs are written by the
// project's own writer.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { spmTokenizerMetadata } from '../../src/data/gguf-tokenizer.ts';
import { ggufFromModel } from '../../src/infer/gguf-model.ts';
import { generate } from '../../src/infer/generate.ts';
import { CausalLM } from '../../src/models/index.ts';
import { loadServingModel } from '../../src/cli/model-spec.ts';
import { chatTemplateFromGguf } from '../../src/serve/chat.ts';
import { type Served, startServe } from '../cli-helpers.ts';

const BIN = resolve(import.meta.dirname, '..', '..', 'bin', 'frugal.js');
const tmp = mkdtempSync(join(tmpdir(), 'frugal-serve-gguf-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const tokens = ['<unk>', '<s>', '</s>', ...Array.from({ length: 256 }, (_, i) => `<0x${i.toString(16).toUpperCase().padStart(2, '0')}>`), '\u2581the', 'he'];
const model = new CausalLM({ vocabSize: tokens.length, hiddenSize: 64, numLayers: 1, numHeads: 2, numKvHeads: 1, intermediateSize: 128, maxPositions: 128 }, { seed: 5 });
const tokMeta = spmTokenizerMetadata(tokens, tokens.map((_, i) => -i), tokens.map((_, i) => (i === 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1)), { bos: 1, eos: 2, unk: 0 });
const TEMPLATE = '{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}';
const withTpl = join(tmp, 'chat.gguf');
writeFileSync(withTpl, ggufFromModel(model, { metadata: { ...tokMeta, 'tokenizer.chat_template': TEMPLATE } }));
const noTpl = join(tmp, 'plain.gguf');
writeFileSync(noTpl, ggufFromModel(model, { metadata: tokMeta }));
const badTpl = join(tmp, 'bad.gguf');
writeFileSync(badTpl, ggufFromModel(model, { metadata: { ...tokMeta, 'tokenizer.chat_template': '{% for m in messages %}{{ m.content }' } }));

function serve(file: string): Promise<Served> {
  return startServe(['--model', file, '--threads', '1']);
}

async function stop(proc: ReturnType<typeof spawn>): Promise<void> {
  const exited = new Promise((r) => proc.on('exit', r));
  proc.kill('SIGTERM');
  await exited;
}

const chat = (base: string, body: object) => fetch(`${base}/v1/chat/completions`, { method: 'POST', body: JSON.stringify(body) });

test('the template of a GGUF: bos_token and eos_token are the texts of its token ids', () => {
  const meta = new Map<string, unknown>([['tokenizer.chat_template', '{{ bos_token }}[{{ messages[0].content }}]{{ eos_token }}'], ['tokenizer.ggml.tokens', tokens], ['tokenizer.ggml.bos_token_id', 1], ['tokenizer.ggml.eos_token_id', 2]]);
  const tpl = chatTemplateFromGguf(meta)!;
  assert.equal(tpl.render([{ role: 'user', content: 'hi' }]), '<s>[hi]</s>');
  assert.equal(tpl.bosToken, '<s>');
  assert.equal(chatTemplateFromGguf(new Map([['tokenizer.ggml.tokens', tokens]])), undefined);
  assert.throws(() => chatTemplateFromGguf(new Map([['tokenizer.chat_template', 7]]), 'x.gguf'), /x\.gguf: tokenizer\.chat_template must be a string/);
});

test('frugal serve FILE.gguf renders chat with the GGUF template; greedy replies equal generate() on the rendered text', async () => {
  const { proc, base, stderr } = await serve(withTpl);
  try {
    assert.match(stderr(), /chat template/);
    const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'the hen' }];
    const r = await chat(base, { messages, max_tokens: 8, temperature: 0 });
    assert.equal(r.status, 200);
    const body = await r.json();
    const rendered = 'system: Be brief.\nuser: the hen\nassistant:';
    const { model: m, tokenizer } = loadServingModel(withTpl);
    const ref = await generate(m, tokenizer!, rendered, { maxNewTokens: 8, temperature: 0 });
    assert.equal(body.choices[0].message.content, ref.text);
    // The rendered text's tokens plus the BOS the GGUF tokenizer adds.
    assert.equal(body.usage.prompt_tokens, tokenizer!.encode(rendered).length + 1);
  } finally {
    await stop(proc);
  }
});

test('a GGUF without tokenizer.chat_template answers chat with a 400 naming it; completions still work', async () => {
  const { proc, base, stderr } = await serve(noTpl);
  try {
    assert.doesNotMatch(stderr(), /chat template/);
    const r = await chat(base, { messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(r.status, 400);
    assert.match((await r.json()).error.message, /no chat template \(no tokenizer\.chat_template in its GGUF metadata\)/);
    const c = await fetch(`${base}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'the', max_tokens: 3, temperature: 0 }) });
    assert.equal(c.status, 200);
  } finally {
    await stop(proc);
  }
});

test('a GGUF whose chat template does not parse is refused at start: one line, exit 2', () => {
  const r = spawnSync(process.execPath, [BIN, 'serve', '--model', badTpl, '--port', '0'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 2, r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /^frugal: .*bad\.gguf \(tokenizer\.chat_template\): chat_template does not parse/);
});
