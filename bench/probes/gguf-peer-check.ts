// Cross-check of GGUF loading against llama.cpp's own tools (a measurement, not a test: it needs the
// peer folder). For a frugal LLaMA checkpoint: gguf-py writes F32/F16/Q8_0/Q4_0 GGUFs (and the weights
// as gguf-py dequantizes them, as checkpoint folders), llama-quantize writes an all-Q1_0 GGUF; then
//  1. logits of each GGUF here vs the same weights loaded from safetensors (max relative difference);
//  2. perplexity of each GGUF on a text: llama-perplexity vs `frugal eval --llama-cpp` (same windows).
// With --ours DIR (any dense LLaMA or Qwen3 layout checkpoint, e.g. q/k norms, GQA, tied head), the GGUFs
// are written by our own writer instead (src/infer/gguf-model.ts, architecture qwen3 or llama, all
// types from our quantizers) and only the perplexities are compared.
// Usage: node --import tsx bench/probes/gguf-peer-check.ts (--checkpoint DIR | --ours DIR) --text FILE [--peer DIR] [--ctx 128] [--out DIR]
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadGgufModel, saveGgufModel } from '../../src/infer/gguf-model.ts';
import { BYTE_TO_CHAR } from '../../src/data/byte-level.ts';
import { loadModel } from '../../src/train/checkpoint.ts';
import { fromArray, noGrad } from '../../src/tensor/index.ts';

const { values: a } = parseArgs({ options: { checkpoint: { type: 'string' }, ours: { type: 'string' }, text: { type: 'string' }, peer: { type: 'string' }, ctx: { type: 'string' }, out: { type: 'string' } } });
if (!(a.checkpoint || a.ours) || !a.text) throw new Error('usage: gguf-peer-check.ts (--checkpoint DIR | --ours DIR) --text FILE [--peer DIR] [--ctx 128] [--out DIR]');
const peerDir = a.peer ?? process.env.LLAMA_PEER_DIR;
if (!peerDir) throw new Error('name the llama.cpp peer folder (bin/, lib/, gguf-py/) with --peer DIR or LLAMA_PEER_DIR');
const peer = resolve(peerDir);
const out = resolve(a.out ?? '/tmp/frugal-gguf-peer');
const ctx = a.ctx ?? '128';
mkdirSync(out, { recursive: true });
const env = { ...process.env, PYTHONPATH: join(peer, 'gguf-py'), LD_LIBRARY_PATH: join(peer, 'lib') };
const run = (cmd: string, args: string[]) => {
  const r = spawnSync(cmd, args, { env, encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr.slice(-2000)}`);
  return r.stdout + r.stderr;
};
if (a.ours) {
  // The byte tokenizer as a GGUF 'gpt2' vocabulary (token 0 = bytes 1+2, one merge, as in gguf_peer_write.py).
  const tokens = [...BYTE_TO_CHAR];
  tokens[0] = BYTE_TO_CHAR[1] + BYTE_TO_CHAR[2];
  const metadata = {
    'tokenizer.ggml.model': 'gpt2', 'tokenizer.ggml.pre': 'default', 'tokenizer.ggml.tokens': tokens,
    'tokenizer.ggml.token_type': Int32Array.from(tokens, () => 1), 'tokenizer.ggml.merges': [`${BYTE_TO_CHAR[1]} ${BYTE_TO_CHAR[2]}`],
    'tokenizer.ggml.add_bos_token': false,
  };
  const model = loadModel(a.ours);
  for (const t of ['F32', 'F16', 'Q8_0', 'Q4_0', 'Q1_0'] as const) saveGgufModel(model, join(out, `model-${t}.gguf`), { linearType: t, metadata });
} else {
  run('python3', [join(import.meta.dirname, 'gguf_peer_write.py'), a.checkpoint!, out]);
}
const linears = ['attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'].map((n) => `${n}=q1_0_g128`).join(',');
if (!a.ours) run(join(peer, 'bin', 'llama-quantize'), ['--custom-q', linears, '--token-embedding-type', 'q1_0_g128', '--output-tensor-type', 'q1_0_g128',
  join(out, 'model-F16.gguf'), join(out, 'model-Q1_0.gguf'), 'Q8_0']);

const ids = fromArray(Int32Array.from({ length: 64 }, (_, i) => 32 + ((i * 37) % 90)), [1, 64]);
const logits = (m: ReturnType<typeof loadModel>) => noGrad(() => m.forward(ids)).dataSync() as Float32Array;
const rel = (x: Float32Array, y: Float32Array) => {
  let e = 0, s = 0;
  for (let i = 0; i < x.length; i++) { e = Math.max(e, Math.abs(x[i] - y[i])); s = Math.max(s, Math.abs(y[i])); }
  return e / s;
};
const rows = [];
for (const t of ['F32', 'F16', 'Q8_0', 'Q4_0', 'Q1_0']) {
  const file = join(out, `model-${t}.gguf`);
  const g = logits(loadGgufModel(file));
  const ref = t === 'Q1_0' || a.ours ? null : logits(loadModel(join(out, `deq-${t}`)));
  const peerOut = run(join(peer, 'bin', 'llama-perplexity'), ['-m', file, '-f', a.text, '-c', ctx, '-b', ctx, '-t', '2']);
  const peerPpl = Number(/Final estimate: PPL over \d+ chunks for n_ctx=\d+ = ([\d.]+)/.exec(peerOut)?.[1]);
  const ours = JSON.parse(run(process.execPath, [join(import.meta.dirname, '..', '..', 'bin', 'frugal.js'), 'eval', '--model', file, '--data', a.text, '--window', ctx, '--llama-cpp', '--json']));
  rows.push({
    type: t, logits_rel_diff_vs_safetensors: ref ? Number(rel(g, ref).toExponential(2)) : null,
    peer_ppl: peerPpl, frugal_ppl: Number(ours.perplexity.perplexity.toFixed(4)), windows: ours.perplexity.windows,
    ppl_rel_diff: Number(Math.abs(ours.perplexity.perplexity / peerPpl - 1).toExponential(2)),
  });
  console.log(JSON.stringify(rows.at(-1)));
}
