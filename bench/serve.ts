// frugal bench serve: load test of the OpenAI-compatible server on 127.0.0.1. For each number of
// concurrent streaming clients (default 1, 4, 16) every client sends one greedy completion; the
// server runs once with continuous batching (max batch = clients) and once one-at-a-time (max
// batch 1, the rest queued). Reported: time to first token p50/p99, aggregate tokens/s, and the
// speedup of batching; every response is checked complete and identical to generate() alone.
// The model is the tiny-dense preset shape with seeded random weights (a byte vocabulary).
// Usage: frugal bench serve [--clients 1,4,16] [--tokens 32] [--reps 3] [--preset tiny-dense] [--threads N]
// Each mode runs --reps rounds (alternating); the fastest round of each is reported.
// The llama.cpp peer (llama-server on the same model as GGUF) is not wired in yet: see bench/NOTES.md.
import { cpus } from 'node:os';
import { ByteTokenizer } from '../src/data/index.ts';
import { generate } from '../src/infer/generate.ts';
import { CausalLM } from '../src/models/index.ts';
import { presetByName } from '../src/models/presets.ts';
import { OpenAIServer } from '../src/serve/server.ts';
import { cpuThreads, setCpuThreads } from '../src/backend/cpu/threads.ts';
import { runBenchIfMain } from './kit.ts';

type Args = Record<string, string | boolean>;

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
  const t0 = performance.now();
  try {
    const results = await Promise.all(prompts.map(async (prompt) => {
      const start = performance.now();
      const r = await fetch(`${base}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt, max_tokens: tokens, temperature: 0, stream: true }) });
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
      const events = raw.split('\n\n').filter((e) => e.startsWith('data: '));
      const done = events.at(-1) === 'data: [DONE]';
      const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)));
      return {
        ttft: first, text: chunks.map((c) => c.choices[0].text).join(''),
        complete: done && chunks.at(-1)?.choices[0].finish_reason === 'length',
      };
    }));
    return {
      ttftMs: results.map((r) => r.ttft), wallMs: performance.now() - t0, tokens: prompts.length * tokens,
      texts: results.map((r) => r.text), complete: results.every((r) => r.complete),
    };
  } finally {
    await server.close();
  }
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
  const peerDir = (args.peer as string | undefined) ?? process.env.LLAMA_PEER_DIR;
  return {
    bench: 'serve', model: preset, params: model.numParameters(), tokens_per_request: tokens, reps, threads: cpuThreads(), cores: cpus().length,
    host: '127.0.0.1', rows, all_identical: identical,
    peer: peerDir ? `not run: the GGUF export for llama-server is not implemented in this benchmark yet (${peerDir})` : 'not run (pass --peer DIR or set LLAMA_PEER_DIR)',
  };
}

await runBenchIfMain(import.meta.url, run);
