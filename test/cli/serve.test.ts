// `frugal serve` as a process on 127.0.0.1 with a free port: concurrent greedy requests equal
// `frugal generate`, SIGTERM lets a response in flight finish and exits 0; bad flags exit 2.
// Also the generation flags of `frugal generate` (--stop, --prompt-file and stdin, --threads, --device).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { CausalLM } from '../../src/models/index.ts';
import { saveCheckpoint } from '../../src/train/checkpoint.ts';
import { type Served, startServe } from '../cli-helpers.ts';

const BIN = resolve(import.meta.dirname, '..', '..', 'bin', 'frugal.js');
const tmp = mkdtempSync(join(tmpdir(), 'frugal-serve-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const dir = join(tmp, 'm');
saveCheckpoint(dir, new CausalLM({ vocabSize: 256, hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, intermediateSize: 64, maxPositions: 128 }, { seed: 9 }));

function frugal(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000, input });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** Starts `frugal serve --port 0` and resolves with the process and its base URL once it listens. */
function serve(extra: string[] = []): Promise<Served> {
  return startServe(['--model', dir, ...extra]);
}

test('concurrent greedy requests to frugal serve equal frugal generate; SIGTERM finishes the response in flight', async () => {
  const { proc, base, stderr } = await serve(['--max-batch', '3', '--threads', '1']);
  const exited = new Promise<number | null>((r) => proc.on('exit', (c) => r(c)));
  const prompts = ['Call me Ishmael', 'The whale', 'It was the best of times', 'Q'];
  const bodies = await Promise.all(prompts.map(async (prompt) => {
    const r = await fetch(`${base}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt, max_tokens: 16, temperature: 0 }) });
    return (await r.json()).choices[0].text as string;
  }));
  prompts.forEach((p, i) => {
    const g = frugal(['generate', '--model', dir, '--prompt', p, '--max-new-tokens', '16', '--temperature', '0']);
    assert.equal(g.code, 0, g.err);
    assert.equal(bodies[i], g.out.slice(p.length, -1), `prompt ${i}`);
  });
  // A long streamed response, then SIGTERM while it runs: it still completes, then the process exits.
  const r = await fetch(`${base}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'x', max_tokens: 100, temperature: 0, stream: true }) });
  const reader = r.body!.getReader();
  await reader.read();
  proc.kill('SIGTERM');
  let text = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  assert.match(text, /"finish_reason":"length"/);
  assert.ok(text.endsWith('data: [DONE]\n\n'));
  assert.equal(await exited, 0);
  assert.match(stderr(), /SIGTERM: finishing 1 request/);
});

test('frugal serve: bad flags and an unavailable device are one clear line and exit 2', () => {
  for (const [args, re] of [
    [['serve'], /needs --model/],
    [['serve', '--model', join(tmp, 'nope')], /does not exist/],
    [['serve', '--model', dir, '--port', '70000'], /--port must be/],
    [['serve', '--model', dir, '--max-batch', '0'], /--max-batch must be/],
    [['serve', '--model', dir, '--device', 'tpu'], /--device must be cpu or webgpu/],
    [['generate', '--model', dir, '--threads', '0', '--prompt', 'x'], /--threads must be/],
    [['generate', '--model', dir, '--min-p', '2', '--prompt', 'x'], /min-p/],
    [['generate', '--model', dir, '--prompt-file', join(tmp, 'nope.txt')], /cannot read the prompt/],
  ] as [string[], RegExp][]) {
    const r = frugal(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, re);
    assert.equal(r.err.trim().split('\n').filter((l) => l.startsWith('frugal:')).length, 1);
  }
  // webgpu either works or is refused with the reason; never a silent run on the cpu.
  const w = frugal(['generate', '--model', dir, '--device', 'webgpu', '--prompt', 'x', '--max-new-tokens', '2', '--temperature', '0']);
  if (w.code !== 0) {
    assert.equal(w.code, 2);
    assert.match(w.err, /frugal: --device webgpu is unavailable: /);
  }
});

test('frugal generate: --prompt-file and stdin give the same text as --prompt; --stop cuts before the stop text', () => {
  const args = ['generate', '--model', dir, '--max-new-tokens', '20', '--temperature', '0'];
  const a = frugal([...args, '--prompt', 'Call me']);
  const file = join(tmp, 'p.txt');
  writeFileSync(file, 'Call me');
  const b = frugal([...args, '--prompt-file', file]);
  const c = frugal([...args, '--prompt-file', '-'], 'Call me');
  assert.equal(a.code, 0, a.err);
  assert.equal(b.out, a.out);
  assert.equal(c.out, a.out);
  const gen = a.out.slice('Call me'.length, -1);
  const stop = gen.slice(5, 7);
  const s = frugal([...args, '--prompt', 'Call me', '--stop', stop, '--threads', '1']);
  assert.equal(s.out, `Call me${gen.slice(0, gen.indexOf(stop))}\n`);
});
