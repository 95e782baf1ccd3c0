// Long-context inference on the CPU: TTT-Linear (fixed-size state) against attention with a KV cache,
// both at the 125M shapes (hidden 768, 12 heads, FFN 2048, vocab 32000). For each context: prefill
// time (hidden states of the whole context plus the last position's logits), decode time per token
// after that context, and the peak resident memory of a fresh process that does just that run.
// Usage: node --import tsx bench/ttt-context.ts [--contexts 1024,2048,4096] [--layers 2] [--decode 8]
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CausalLM } from '../src/models/index.ts';
import '../src/models/ttt-plugin.ts';
import { TTT_PRESETS } from '../src/models/ttt-hf.ts';
import * as op from '../src/ops/index.ts';
import { fromArray, noGrad } from '../src/tensor/index.ts';

const MiB = 2 ** 20;
// The default run keeps to a few minutes on 2 cores; pass --layers 12 --contexts ... for the full model.
const DEFAULT_CONTEXTS = [1024, 2048, 4096, 8192];
const DEFAULT_LAYERS = 2;

interface ChildResult { prefill_ms: number; decode_ms: number; peak_mib: number }

function measure(kind: 'ttt' | 'attn', context: number, layers: number, decode: number): ChildResult {
  const base = { ...TTT_PRESETS['ttt-linear-125m'], numLayers: layers };
  const cfg = kind === 'ttt' ? base : { ...base, mixer: 'attention' as const, ropeStyle: 'half' as const, ttt: undefined };
  const model = new CausalLM(cfg, { seed: 1 }).eval();
  const vocab = model.config.vocabSize;
  const warm = 2;
  const ids = Int32Array.from({ length: context + warm + decode }, (_, i) => (i * 7919 + 13) % vocab);
  // Attention: capacity 0 makes the KV cache grow by concatenation. The preallocated cache
  // (capacity > length) hands the fused attention kernel views over a longer buffer, which its length
  // check rejects at present.
  const state = model.createState(1, kind === 'ttt' ? context + warm + decode : 0);
  return noGrad(() => {
    const t0 = performance.now();
    const h = model.hidden(fromArray(ids.subarray(0, context), [1, context]), state);
    model.logitsFromHidden(op.slice(h, 1, context - 1, context)).dataSync();
    const prefill = performance.now() - t0;
    const step = (i: number) => model.forward(fromArray(ids.subarray(context + i, context + i + 1), [1, 1]), state).dataSync();
    // The first decode steps compile the single-token code paths; they are not timed.
    for (let i = 0; i < warm; i++) step(i);
    const t1 = performance.now();
    for (let i = warm; i < warm + decode; i++) step(i);
    const perToken = (performance.now() - t1) / decode;
    return {
      prefill_ms: +prefill.toFixed(1), decode_ms: +perToken.toFixed(2),
      peak_mib: +((process.resourceUsage().maxRSS * 1024) / MiB).toFixed(1),
    };
  });
}

export async function run(args: Record<string, string | boolean>): Promise<Record<string, unknown>> {
  const contexts = typeof args.contexts === 'string' ? args.contexts.split(',').map(Number) : DEFAULT_CONTEXTS;
  const layers = Number(args.layers ?? DEFAULT_LAYERS);
  const decode = Number(args.decode ?? 8);
  for (const c of contexts) {
    if (!Number.isInteger(c) || c < 1) throw new Error(`--contexts: '${c}' is not a positive integer; use e.g. --contexts 1024,2048`);
  }
  if (!Number.isInteger(layers) || layers < 1 || layers > 12) throw new Error(`--layers must be an integer in 1..12, got ${args.layers}`);
  const self = fileURLToPath(import.meta.url);
  // One fresh process per (model, context) so the peak RSS belongs to that run alone.
  const child = (kind: string, c: number): ChildResult => JSON.parse(execFileSync(
    process.execPath,
    ['--import', 'tsx', self, '--child', kind, '--context', String(c), '--layers', String(layers), '--decode', String(decode)],
    { encoding: 'utf8', maxBuffer: 1 << 20 },
  ));
  const rows = contexts.map((context) => {
    const t = child('ttt', context), a = child('attn', context);
    return {
      context, ttt_prefill_ms: t.prefill_ms, ttt_decode_ms: t.decode_ms, attn_prefill_ms: a.prefill_ms,
      attn_decode_ms: a.decode_ms, ttt_peak_mib: t.peak_mib, attn_peak_mib: a.peak_mib,
    };
  });
  // The smallest measured context from which TTT decodes faster at every larger measured context.
  let from: number | null = null;
  for (let i = rows.length - 1; i >= 0 && rows[i].ttt_decode_ms < rows[i].attn_decode_ms; i--) from = rows[i].context;
  return {
    model: 'ttt-linear-125m shapes (Mamba backbone) vs attention with the same dims, random weights, batch 1, cpu',
    attn_cache: 'KV cache grown by concatenation (capacity 0)',
    layers, full_model_layers: 12, reduced_layers: layers < 12, decode_tokens: decode, rows, ttt_beats_attention_from: from,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args: Record<string, string | boolean> = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    if (!argv[i].startsWith('--')) continue;
    const next = argv[i + 1];
    args[argv[i].slice(2)] = next !== undefined && !next.startsWith('--') ? (i++, next) : true;
  }
  if (typeof args.child === 'string') {
    const kind = args.child === 'ttt' ? 'ttt' : 'attn';
    console.log(JSON.stringify(measure(kind, Number(args.context), Number(args.layers), Number(args.decode ?? 8))));
  } else {
    console.log(JSON.stringify(await run(args), null, 2));
  }
}
