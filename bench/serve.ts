// frugal bench serve: load test of the OpenAI-compatible server on 127.0.0.1. For each number of
// concurrent streaming clients (default 1, 4, 16) every client sends one greedy completion; the
// server runs once with continuous batching (max batch = clients) and once one-at-a-time (max
// batch 1, the rest queued). Reported: time to first token p50/p99, aggregate tokens/s, and the
// speedup of batching; every response is checked complete and identical to generate() alone.
// The model is the tiny-dense preset shape with seeded random weights (a byte vocabulary).
// Usage: frugal bench serve [--clients 1,4,16] [--tokens 32] [--reps 3] [--preset tiny-dense] [--threads N] [--peer DIR]
// Each mode runs --reps rounds (alternating); the fastest round of each is reported.
// --peer DIR (or LLAMA_PEER_DIR): llama.cpp's DIR/bin/llama-server serves the same model written as
// GGUF (F32, byte vocabulary) under the same clients (token-id prompts, greedy, EOS ignored). A peer
// that does not start (a missing shared library, say) is reported as peer: { error } in the result.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ByteTokenizer } from '../src/data/index.ts';
import { generate } from '../src/infer/generate.ts';
import { CausalLM } from '../src/models/index.ts';
import { presetByName } from '../src/models/presets.ts';
import { OpenAIServer } from '../src/serve/server.ts';
import { cpuThreads, setCpuThreads } from '../src/backend/cpu/threads.ts';
import { ggufFromModel } from '../src/infer/gguf-model.ts';
import { runBenchIfMain } from './kit.ts';

type Args = Record<string, string | boolean>;

/** The --key options run() reads (frugal bench refuses any other). */
export const options: readonly string[] = ['clients', 'tokens', 'reps', 'preset', 'threads', 'peer'];

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};

interface Round {
  ttftMs: number[];
  wallMs: number;
  tokens: number;
  texts: string[];
  complete: boolean;
}

/** `clients` concurrent streaming requests against a fresh server; each client's TTFT, the wall time. */
async function round(model: CausalLM, prompts: string[], tokens: number, maxBatch: number): Promise<Round> {
  const server = new OpenAIServer({ model, tokenizer: new ByteTokenizer(), modelName: 'bench', maxBatch, maxQueue: prompts.length });
  const base = `http://127.0.0.1:${await server.listen(0, '127.0.0.1')}`;
  try {
    return await streamAll(base, prompts.map((prompt) => ({ prompt, max_tokens: tokens, temperature: 0, stream: true })), tokens);
  } finally {
    await server.close();
  }
}

/** One streaming /v1/completions request per body, all at once; each client's TTFT, the wall time. */
async function streamAll(base: string, bodies: object[], tokens: number): Promise<Round> {
  const t0 = performance.now();
  {
    const results = await Promise.all(bodies.map(async (body) => {
      const start = performance.now();
      const r = await fetch(`${base}/v1/completions`, { method: 'POST', body: JSON.stringify(body) });
      if (!r.ok) throw new Error(`${base}/v1/completions answered ${r.status}: ${(await r.text()).slice(0, 200)}`);
      const reader = r.body!.getReader();
      const dec = new TextDecoder();
      let raw = '';
      let first = -1;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (first < 0) {
          // The first chunk that carries generated text (not just headers).
          raw += dec.decode(value, { stream: true });
          if (raw.includes('"text"')) first = performance.now() - start;
        } else raw += dec.decode(value, { stream: true });
      }
      const events = raw.split(/\r?\n\r?\n/).map((e) => e.trim()).filter((e) => e.startsWith('data: '));
      const done = events.at(-1) === 'data: [DONE]';
      const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)));
      return {
        ttft: first, text: chunks.map((c) => c.choices[0].text).join(''),
        complete: done && chunks.at(-1)?.choices[0].finish_reason === 'length',
      };
    }));
    return {
      ttftMs: results.map((r) => r.ttft), wallMs: performance.now() - t0, tokens: bodies.length * tokens,
      texts: results.map((r) => r.text), complete: results.every((r) => r.complete),
    };
  }
}

/** A free loopback port (llama-server takes a fixed one). */
function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });
}

interface Peer {
  base: string;
  stop(): Promise<void>;
}

/**
 * llama-server of the peer folder on `gguf`, `slots` parallel sequences, on 127.0.0.1; an error
 * line when it cannot run (no binary, a shared library its lib/ lacks, it exits or never answers /health).
 */
async function startPeer(dir: string, gguf: string, slots: number, ctxPerSlot: number, threads: number): Promise<Peer | { error: string }> {
  const bin = join(dir, 'bin', 'llama-server');
  if (!existsSync(bin)) return { error: `no llama-server at ${bin}` };
  const env = { ...process.env, LD_LIBRARY_PATH: [join(dir, 'lib'), process.env.LD_LIBRARY_PATH].filter(Boolean).join(':') };
  // Does it load at all (the dynamic loader names a missing library and exits 127)?
  const probe = spawnSync(bin, ['--version'], { env, encoding: 'utf8', timeout: 30_000 });
  if (probe.error) return { error: `llama-server (${bin}) does not run: ${probe.error.message}` };
  if (probe.status !== 0) {
    const line = `${probe.stderr}\n${probe.stdout}`.split('\n').map((l) => l.trim()).filter(Boolean).at(-1) ?? '';
    const lib = /error while loading shared libraries: ([^:]+)/.exec(line)?.[1];
    return { error: lib ? `llama-server does not start: ${lib} is missing from ${join(dir, 'lib')} (${line})` : `llama-server --version exited with ${probe.status}: ${line}` };
  }
  const port = await freePort();
  const proc = spawn(bin, ['-m', gguf, '--host', '127.0.0.1', '--port', String(port), '-np', String(slots), '-c', String(slots * ctxPerSlot), '-t', String(threads), '--no-webui'],
    { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d) => {
    err = (err + d).slice(-4000);
  });
  let exited = false;
  const gone = new Promise<void>((r) => proc.on('exit', () => {
    exited = true;
    r();
  }));
  const stop = async () => {
    if (!exited) proc.kill('SIGTERM');
    await gone;
  };
  const base = `http://127.0.0.1:${port}`;
  for (const t0 = performance.now(); performance.now() - t0 < 60_000;) {
    if (exited) return { error: `llama-server exited while starting: ${err.trim().split('\n').at(-1) ?? ''}` };
    try {
      if ((await fetch(`${base}/health`)).ok) return { base, stop };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  await stop();
  return { error: 'llama-server did not answer /health within 60 s' };
}

/** GGUF tokenizer metadata of the byte vocabulary: GPT-2 byte-level tokens, id = byte (prompts go as ids). */
function byteVocabGguf(): Record<string, string | string[] | number | boolean> {
  const vocab = (new ByteTokenizer().toJSON() as { model: { vocab: Record<string, number> } }).model.vocab;
  const tokens: string[] = new Array(256);
  for (const [t, id] of Object.entries(vocab)) tokens[id] = t;
  return { 'tokenizer.ggml.model': 'gpt2', 'tokenizer.ggml.pre': 'default', 'tokenizer.ggml.tokens': tokens, 'tokenizer.ggml.merges': [], 'tokenizer.ggml.add_bos_token': false };
}

export async function run(args: Args = {}) {
  const clients = String(args.clients ?? '1,4,16').split(',').map(Number);
  if (clients.some((c) => !(Number.isInteger(c) && c >= 1 && c <= 64))) throw new Error(`--clients must be integers in [1, 64], got '${args.clients}'`);
  const tokens = Number(args.tokens ?? 32);
  if (!(Number.isInteger(tokens) && tokens >= 1 && tokens <= 200)) throw new Error(`--tokens must be an integer in [1, 200], got '${args.tokens}'`);
  const reps = Number(args.reps ?? 3);
  if (!(Number.isInteger(reps) && reps >= 1 && reps <= 20)) throw new Error(`--reps must be an integer in [1, 20], got '${args.reps}'`);
  if (args.threads !== undefined) setCpuThreads(Number(args.threads));
  const preset = String(args.preset ?? 'tiny-dense');
  const model = new CausalLM({ ...(await presetByName(preset)), vocabSize: 256 }, { seed: 0 }).eval();
  const tok = new ByteTokenizer();
  // Warm-up (JIT, sockets, kernel first calls), not reported.
  await round(model, ['warm up ', 'warm up 2 '], 4, 2);
  await round(model, ['warm up '], 4, 1);
  const rows = [];
  let identical = true;
  for (const c of clients) {
    const prompts = Array.from({ length: c }, (_, i) => `Client ${i}: call me Ishmael. `);
    const refs = await Promise.all(prompts.map((p) => generate(model, tok, p, { maxNewTokens: tokens, temperature: 0 })));
    // Best of `reps` rounds per mode, alternating the modes, so a burst of load elsewhere on the
    // machine does not decide the ratio; every round's responses are checked.
    const all: Round[] = [];
    let batched: Round | undefined, serial: Round | undefined;
    for (let r = 0; r < reps; r++) {
      const b = await round(model, prompts, tokens, c);
      const s = await round(model, prompts, tokens, 1);
      all.push(b, s);
      if (!batched || b.wallMs < batched.wallMs) batched = b;
      if (!serial || s.wallMs < serial.wallMs) serial = s;
    }
    const same = all.every((r) => r.complete && r.texts.every((t, i) => t === refs[i].text));
    if (!batched || !serial) throw new Error('internal: no rounds');
    identical &&= same;
    const tps = (r: Round) => r.tokens / (r.wallMs / 1000);
    rows.push({
      clients: c,
      batched: { ttft_p50_ms: pct(batched.ttftMs, 50), ttft_p99_ms: pct(batched.ttftMs, 99), tokens_per_s: tps(batched) },
      one_at_a_time: { ttft_p50_ms: pct(serial.ttftMs, 50), ttft_p99_ms: pct(serial.ttftMs, 99), tokens_per_s: tps(serial) },
      batching_speedup: tps(batched) / tps(serial),
      responses_identical_to_generate: same,
    });
  }
  const peerArg = args.peer ?? process.env.LLAMA_PEER_DIR;
  if (peerArg === true) throw new Error('--peer needs the llama.cpp folder (bin/, lib/)');
  const peer = peerArg ? await runPeer(resolve(peerArg), model, clients, tokens, reps, new Map(rows.map((r) => [r.clients, r.batched.tokens_per_s]))) : 'not run (pass --peer DIR or set LLAMA_PEER_DIR)';
  return {
    bench: 'serve', model: preset, params: model.numParameters(), tokens_per_request: tokens, reps, threads: cpuThreads(), cores: cpus().length,
    host: '127.0.0.1', rows, all_identical: identical, peer,
  };
}

/** The same clients against llama-server on the model as GGUF; batched rows (one slot per client) or { error }. */
async function runPeer(dir: string, model: CausalLM, clients: number[], tokens: number, reps: number, frugalTps: Map<number, number>) {
  const tmp = mkdtempSync(join(tmpdir(), 'frugal-bench-serve-'));
  try {
    const gguf = join(tmp, 'model.gguf');
    try {
      writeFileSync(gguf, ggufFromModel(model, { metadata: byteVocabGguf() }));
    } catch (e) {
      return { error: `the model does not go to GGUF: ${(e as Error).message}` };
    }
    const tok = new ByteTokenizer();
    const rows = [];
    for (const c of clients) {
      const prompts = Array.from({ length: c }, (_, i) => `Client ${i}: call me Ishmael. `);
      const refs = await Promise.all(prompts.map((p) => generate(model, tok, p, { maxNewTokens: tokens, temperature: 0 })));
      const p = await startPeer(dir, gguf, c, Math.max(...prompts.map((x) => x.length)) + tokens + 16, cpuThreads());
      if ('error' in p) return { error: p.error };
      try {
        const bodies = prompts.map((x) => ({ prompt: tok.encode(x), max_tokens: tokens, temperature: 0, ignore_eos: true, cache_prompt: false, stream: true }));
        let best: Round | undefined;
        const all: Round[] = [];
        for (let r = 0; r < reps; r++) {
          const x = await streamAll(p.base, bodies, tokens);
          all.push(x);
          if (!best || x.wallMs < best.wallMs) best = x;
        }
        rows.push({
          clients: c, ttft_p50_ms: pct(best!.ttftMs, 50), ttft_p99_ms: pct(best!.ttftMs, 99), tokens_per_s: best!.tokens / (best!.wallMs / 1000),
          frugal_batched_over_peer: (frugalTps.get(c) ?? NaN) / (best!.tokens / (best!.wallMs / 1000)),
          responses_identical_to_generate: all.every((x) => x.complete && x.texts.every((t, i) => t === refs[i].text)),
        });
      } finally {
        await p.stop();
      }
    }
    return { server: join(dir, 'bin', 'llama-server'), rows };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

await runBenchIfMain(import.meta.url, run);
