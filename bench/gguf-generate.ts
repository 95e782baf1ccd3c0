// Prefill / decode speed of GGUF files here and in llama.cpp's llama-bench, side by side in one run.
// Ours: prefill of 64 tokens (best of 3 after a warm-up) and 32 greedy decode steps with the KV cache.
// Usage: node --import tsx bench/gguf-generate.ts FILE.gguf... [--peer DIR] [--threads 2]
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadGgufModel } from '../src/infer/gguf-model.ts';
import { fromArray, noGrad, tidy } from '../src/tensor/index.ts';

const { values: a, positionals: files } = parseArgs({ allowPositionals: true, options: { peer: { type: 'string' }, threads: { type: 'string' } } });
const peerDir = a.peer ?? process.env.LLAMA_PEER_DIR;
if (!peerDir) throw new Error('name the llama.cpp peer folder (bin/, lib/, gguf-py/) with --peer DIR or LLAMA_PEER_DIR');
const peer = resolve(peerDir);
const threads = a.threads ?? '2';
const PP = 64, TG = 32;

for (const file of files) {
  const model = loadGgufModel(file);
  const v = model.config.vocabSize;
  const prompt = fromArray(Int32Array.from({ length: PP }, (_, i) => (i * 7919) % v), [1, PP]);
  const prefill = () => {
    const state = model.createState(1, PP + TG + 1);
    const t0 = performance.now();
    const logits = tidy(() => noGrad(() => model.forward(prompt, state)).dataSync() as Float32Array);
    return { ms: performance.now() - t0, state, last: logits.subarray(logits.length - v) };
  };
  prefill();
  let best = Infinity;
  let run = prefill();
  for (let r = 0; r < 3; r++) {
    const x = prefill();
    if (x.ms < best) { best = x.ms; run = x; }
  }
  let next = run.last.indexOf(Math.max(...run.last));
  const t0 = performance.now();
  for (let i = 0; i < TG; i++) {
    const l = tidy(() => noGrad(() => model.forward(fromArray(Int32Array.of(next), [1, 1]), run.state)).dataSync() as Float32Array);
    next = l.indexOf(Math.max(...l));
  }
  const tg = TG / ((performance.now() - t0) / 1000);
  const r = spawnSync(join(peer, 'bin', 'llama-bench'), ['-m', file, '-t', threads, '-p', String(PP), '-n', String(TG), '-r', '3', '-o', 'json'],
    { env: { ...process.env, LD_LIBRARY_PATH: join(peer, 'lib') }, encoding: 'utf8' });
  const rows = r.status === 0 ? (JSON.parse(r.stdout) as { n_prompt: number; avg_ts: number }[]) : [];
  const peerPp = rows.find((x) => x.n_prompt)?.avg_ts, peerTg = rows.find((x) => !x.n_prompt)?.avg_ts;
  console.log(JSON.stringify({
    file, frugal_pp_tokens_per_s: Number((PP / (best / 1000)).toFixed(1)), frugal_tg_tokens_per_s: Number(tg.toFixed(1)),
    peer_pp_tokens_per_s: peerPp && Number(peerPp.toFixed(1)), peer_tg_tokens_per_s: peerTg && Number(peerTg.toFixed(1)),
    pp_ratio: peerPp && Number((PP / (best / 1000) / peerPp).toFixed(2)), tg_ratio: peerTg && Number((tg / peerTg).toFixed(2)),
  }));
}
