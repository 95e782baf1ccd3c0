// Long-context inference on the CPU: TTT-Linear (fixed-size state) against attention with a
// preallocated KV cache, both at the 125M shapes (hidden 768, 12 heads, FFN 2048, vocab 32000,
// 12 layers by default). One process per model walks the contexts in increasing order: it prefills
// up to the next context in chunks (state carried across chunks), then times single-token decode
// steps there (median step). Reported per context: the cumulative prefill time to reach it (chunked; the decode
// steps taken at smaller contexts are part of the context but not of the prefill time), decode time
// per token at that context, and the peak resident memory of the process so far.
//
// Attention prefill is quadratic in the context; beyond --attn-prefill-max (default 4096) its KV
// caches are filled with random keys and values instead (prefill not timed, reported as null): the
// decode step's cost depends on the cache length, not on what the cache holds.
// Usage: node --import tsx bench/ttt-context.ts [--contexts 1024,2048,...,32768] [--layers 12]
//        [--decode 16] [--chunk 2048] [--attn-prefill-max 4096]
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CausalLM } from '../src/models/index.ts';
import '../src/models/ttt-plugin.ts';
import { TTT_PRESETS } from '../src/models/ttt-hf.ts';
import { KVCache } from '../src/nn/attention.ts';
import * as op from '../src/ops/index.ts';
import { fromArray, noGrad, randn, Rng } from '../src/tensor/index.ts';

const MiB = 2 ** 20;
const DEFAULT_CONTEXTS = [1024, 2048, 4096, 8192, 16384, 32768];
const DEFAULT_LAYERS = 12;
const WARM = 2;

interface Row { context: number; prefill_ms: number | null; decode_ms: number; peak_mib: number }
interface ChildArgs { kind: 'ttt' | 'attn'; contexts: number[]; layers: number; decode: number; chunk: number; attnPrefillMax: number }

function measure(a: ChildArgs): Row[] {
  const base = { ...TTT_PRESETS['ttt-linear-125m'], numLayers: a.layers };
  const cfg = a.kind === 'ttt' ? base : { ...base, mixer: 'attention' as const, ropeStyle: 'half' as const, ttt: undefined };
  const last = a.contexts[a.contexts.length - 1];
  const total = last + a.contexts.length * (WARM + a.decode);
  const model = new CausalLM({ ...cfg, maxPositions: Math.max(cfg.maxPositions ?? 0, total) }, { seed: 1 }).eval();
  const vocab = model.config.vocabSize;
  const ids = Int32Array.from({ length: total }, (_, i) => (i * 7919 + 13) % vocab);
  const state = model.createState(1, total);
  const rng = new Rng(2);
  let prefillMs = 0;
  const rows: Row[] = [];
  return noGrad(() => {
    for (const context of a.contexts) {
      const synthetic = a.kind === 'attn' && context > a.attnPrefillMax;
      if (synthetic) {
        // Random keys/values appended to every layer's cache up to the context.
        const n = context - state.position;
        for (const layer of state.layers) {
          const cache = layer.mixer as KVCache;
          const { numHeads: h, hiddenSize: c } = model.config;
          const kvh = model.config.numKvHeads;
          for (let t = 0; t < n; t += a.chunk) {
            const m = Math.min(a.chunk, n - t);
            cache.append(randn([1, m, kvh, c / h], rng, 1), randn([1, m, kvh, c / h], rng, 1));
          }
        }
        state.position = context;
      } else {
        const t0 = performance.now();
        while (state.position < context) {
          const p = state.position, n = Math.min(a.chunk, context - p);
          const h = model.hidden(fromArray(ids.subarray(p, p + n), [1, n]), state);
          if (state.position === context) model.logitsFromHidden(op.slice(h, 1, n - 1, n)).dataSync();
        }
        prefillMs += performance.now() - t0;
      }
      const step = () => {
        const p = state.position;
        model.forward(fromArray(ids.subarray(p, p + 1), [1, 1]), state).dataSync();
      };
      // The first decode steps compile the single-token code paths; they are not timed.
      for (let i = 0; i < WARM; i++) step();
      // Median step time: robust to other processes taking the cores for a moment.
      const times: number[] = [];
      for (let i = 0; i < a.decode; i++) {
        const t1 = performance.now();
        step();
        times.push(performance.now() - t1);
      }
      times.sort((x, y) => x - y);
      rows.push({
        context, prefill_ms: synthetic ? null : +prefillMs.toFixed(1), decode_ms: +times[times.length >> 1].toFixed(2),
        peak_mib: +((process.resourceUsage().maxRSS * 1024) / MiB).toFixed(1),
      });
    }
    return rows;
  });
}

export async function run(args: Record<string, string | boolean>): Promise<Record<string, unknown>> {
  const contexts = typeof args.contexts === 'string' ? args.contexts.split(',').map(Number) : DEFAULT_CONTEXTS;
  const layers = Number(args.layers ?? DEFAULT_LAYERS);
  const decode = Number(args.decode ?? 16);
  const chunk = Number(args.chunk ?? 2048);
  const attnPrefillMax = Number(args['attn-prefill-max'] ?? 4096);
  for (const c of contexts) {
    if (!Number.isInteger(c) || c < 1) throw new Error(`--contexts: '${c}' is not a positive integer; use e.g. --contexts 1024,2048`);
  }
  if (contexts.some((c, i) => i > 0 && c <= contexts[i - 1])) throw new Error(`--contexts must increase, got ${contexts.join(',')}`);
  if (!Number.isInteger(layers) || layers < 1 || layers > 12) throw new Error(`--layers must be an integer in 1..12, got ${args.layers}`);
  for (const [name, v] of [['decode', decode], ['chunk', chunk], ['attn-prefill-max', attnPrefillMax]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer, got ${v}`);
  }
  const self = fileURLToPath(import.meta.url);
  // One fresh process per model so its peak RSS belongs to that model alone.
  const child = (kind: string): Row[] => JSON.parse(execFileSync(
    process.execPath,
    ['--import', 'tsx', self, '--child', kind, '--contexts', contexts.join(','), '--layers', String(layers), '--decode', String(decode),
      '--chunk', String(chunk), '--attn-prefill-max', String(attnPrefillMax)],
    { encoding: 'utf8', maxBuffer: 1 << 20 },
  ));
  const t = child('ttt'), a = child('attn');
  const rows = contexts.map((context, i) => ({
    context, ttt_prefill_ms: t[i].prefill_ms, ttt_decode_ms: t[i].decode_ms, attn_prefill_ms: a[i].prefill_ms,
    attn_decode_ms: a[i].decode_ms, ttt_peak_mib: t[i].peak_mib, attn_peak_mib: a[i].peak_mib,
  }));
  // The smallest measured context from which TTT decodes faster at every larger measured context.
  let from: number | null = null;
  for (let i = rows.length - 1; i >= 0 && rows[i].ttt_decode_ms < rows[i].attn_decode_ms; i--) from = rows[i].context;
  return {
    model: 'ttt-linear-125m shapes (Mamba backbone) vs attention with the same dims, random weights, batch 1, cpu',
    attn_cache: `preallocated KV cache; contexts above ${attnPrefillMax} filled with random keys/values (attn_prefill_ms null)`,
    prefill: `chunks of ${chunk} tokens, cumulative over the contexts walked in one process`,
    layers, full_model_layers: 12, reduced_layers: layers < 12, decode_tokens: decode, rows,
    ttt_decode_ratio_last_over_first: +(rows[rows.length - 1].ttt_decode_ms / rows[0].ttt_decode_ms).toFixed(2),
    ttt_beats_attention_from: from,
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
    console.log(JSON.stringify(measure({
      kind: args.child === 'ttt' ? 'ttt' : 'attn', contexts: String(args.contexts).split(',').map(Number),
      layers: Number(args.layers), decode: Number(args.decode), chunk: Number(args.chunk), attnPrefillMax: Number(args['attn-prefill-max']),
    })));
  } else {
    console.log(JSON.stringify(await run(args), null, 2));
  }
}
