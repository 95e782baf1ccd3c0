// Long-context inference on the CPU or through WebGPU: TTT-Linear (fixed-size state) against
// attention with a preallocated KV cache, both at the 125M shapes (hidden 768, 12 heads, FFN 2048, vocab 32000,
// 12 layers by default). One process per model walks the contexts in increasing order: it prefills
// up to the next context in chunks (state carried across chunks), then times single-token decode
// steps there (median step). Reported per context: the cumulative prefill time to reach it (chunked; the decode
// steps taken at smaller contexts are part of the context but not of the prefill time), decode time
// per token at that context, and the peak resident memory of the process so far (CPU) or the
// high-water mark of the WebGPU buffer pool (--device webgpu: the pool keeps every buffer it ever
// created until the end, so live + pooled bytes is the GPU memory the process has taken; sizes are
// rounded up to the pool's buckets, at most 25%; unlike the CPU's lazily committed pages, the KV
// cache preallocated for the largest context counts in full from the first context). On WebGPU
// every timed interval ends by reading the logits back, as a generator would to sample the next token.
//
// Attention prefill is quadratic in the context; beyond --attn-prefill-max (default 4096) its KV
// caches are filled with random keys and values instead (prefill not timed, reported as null): the
// decode step's cost depends on the cache length, not on what the cache holds. (On WebGPU one random
// chunk is generated once and appended repeatedly: producing ~600M normals on the host would take
// longer than the measurement.)
// Usage: node --import tsx bench/ttt-context.ts [--device cpu|webgpu] [--contexts 1024,2048,...,32768]
//        [--layers 12] [--decode 16] [--chunk 2048] [--attn-prefill-max 4096]
//        [--dim 768] [--heads 12] [--ffn 2048] [--vocab 32000]   (smaller shapes only to check the paths quickly)
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CausalLM } from '../src/models/index.ts';
import '../src/models/ttt-plugin.ts';
import { PRESETS } from '../src/models/presets.ts';
import { destroyWebGPU, initWebGPU, webgpuAdapterName, webgpuPoolStats } from '../src/backend/webgpu/index.ts';
import { KVCache } from '../src/nn/attention.ts';
import * as op from '../src/ops/index.ts';
import { fromArray, keep, noGrad, randn, Rng, Tensor, tidy } from '../src/tensor/index.ts';

const MiB = 2 ** 20;
const DEFAULT_CONTEXTS = [1024, 2048, 4096, 8192, 16384, 32768];
const DEFAULT_LAYERS = 12;
const WARM = 2;

interface Row { context: number; prefill_ms: number | null; decode_ms: number; peak_mib: number }
interface Shape { dim: number; heads: number; ffn: number; vocab: number }
interface ChildArgs extends Shape { kind: 'ttt' | 'attn'; contexts: number[]; layers: number; decode: number; chunk: number; attnPrefillMax: number }
type State = ReturnType<CausalLM['createState']>;

/** The model of one child, its decoding state sized for every token the walk consumes, and those tokens. */
function build(a: ChildArgs, device: 'cpu' | 'webgpu'): { model: CausalLM; state: State; ids: Int32Array } {
  const base = {
    ...PRESETS['ttt-linear-125m'], numLayers: a.layers,
    hiddenSize: a.dim, numHeads: a.heads, numKvHeads: a.heads, intermediateSize: a.ffn, vocabSize: a.vocab,
  };
  const cfg = a.kind === 'ttt' ? base : { ...base, mixer: 'attention' as const, ropeStyle: 'half' as const, ttt: undefined };
  const last = a.contexts[a.contexts.length - 1];
  const total = last + a.contexts.length * (WARM + a.decode);
  const model = new CausalLM({ ...cfg, maxPositions: Math.max(cfg.maxPositions ?? 0, total) }, { seed: 1, device }).eval();
  const vocab = model.config.vocabSize;
  const ids = Int32Array.from({ length: total }, (_, i) => (i * 7919 + 13) % vocab);
  return { model, state: model.createState(1, total), ids };
}

function measure(a: ChildArgs): Row[] {
  const { model, state, ids } = build(a, 'cpu');
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

/** Every tensor reachable from the decoding state (KV caches, TTT inner weights, conv tails). */
function stateTensors(x: unknown, out: Tensor[] = [], seen = new Set<unknown>()): Tensor[] {
  if (x === null || typeof x !== 'object' || seen.has(x)) return out;
  seen.add(x);
  if (x instanceof Tensor) out.push(x);
  else for (const v of Array.isArray(x) ? x : Object.values(x)) stateTensors(v, out, seen);
  return out;
}

interface GpuRow { context: number; prefill_ms: number | null; decode_ms: number; peak_gpu_mib: number }

/** The same walk as measure() on the webgpu backend; GPU memory from the buffer pool. */
async function measureWebGPU(a: ChildArgs): Promise<{ adapter: string; rows: GpuRow[] }> {
  await initWebGPU();
  const { model, state, ids } = build(a, 'webgpu');
  const held = () => {
    const s = webgpuPoolStats();
    return s.liveBytes + s.pooledBytes;
  };
  let peak = held();
  // One forward under its own memory scope: the state outlives it (tensors the layers stored in it are
  // kept), tensors the state no longer holds (replaced conv tails) are freed, the rest of the step is
  // released when tidy() returns, so memory stays flat across steps.
  const scoped = <T>(fn: () => T): T => {
    const before = stateTensors(state);
    const out = tidy(() => {
      const r = noGrad(fn);
      for (const t of stateTensors(state)) keep(t);
      return r;
    });
    const now = new Set(stateTensors(state));
    for (const t of before) if (!now.has(t)) t.dispose();
    return out;
  };
  const input = (p: number, n: number) => fromArray(ids.subarray(p, p + n), [1, n], 'webgpu');
  const rng = new Rng(2);
  let prefillMs = 0;
  const rows: GpuRow[] = [];
  for (const context of a.contexts) {
    const synthetic = a.kind === 'attn' && context > a.attnPrefillMax;
    if (synthetic) {
      const n = context - state.position;
      const { numHeads: h, hiddenSize: c, numKvHeads: kvh } = model.config;
      const m0 = Math.min(a.chunk, n);
      const rk = randn([1, m0, kvh, c / h], rng, 1, { device: 'webgpu' }), rv = randn([1, m0, kvh, c / h], rng, 1, { device: 'webgpu' });
      scoped(() => {
        for (const layer of state.layers) {
          const cache = layer.mixer as KVCache;
          for (let t = 0; t < n; t += a.chunk) {
            const m = Math.min(a.chunk, n - t);
            cache.append(m === m0 ? rk : op.slice(rk, 1, 0, m), m === m0 ? rv : op.slice(rv, 1, 0, m));
          }
        }
        return null;
      });
      rk.dispose();
      rv.dispose();
      state.position = context;
    } else {
      const t0 = performance.now();
      while (state.position < context) {
        const p = state.position, n = Math.min(a.chunk, context - p);
        // Only the last position's logits are computed (what generation samples from); earlier chunks
        // are queued without waiting, the read-back of the last one waits for all of them.
        const logits = scoped(() => {
          const h = model.hidden(input(p, n), state);
          return state.position === context ? model.logitsFromHidden(op.slice(h, 1, n - 1, n)) : null;
        });
        if (logits) {
          await logits.data();
          logits.dispose();
        }
      }
      prefillMs += performance.now() - t0;
    }
    peak = Math.max(peak, held());
    const step = async () => {
      const p = state.position;
      const logits = scoped(() => model.forward(input(p, 1), state));
      await logits.data();
      logits.dispose();
    };
    // The first decode steps compile the single-token pipelines; they are not timed.
    for (let i = 0; i < WARM; i++) await step();
    const times: number[] = [];
    for (let i = 0; i < a.decode; i++) {
      const t1 = performance.now();
      await step();
      times.push(performance.now() - t1);
    }
    times.sort((x, y) => x - y);
    peak = Math.max(peak, held());
    rows.push({
      context, prefill_ms: synthetic ? null : +prefillMs.toFixed(1), decode_ms: +times[times.length >> 1].toFixed(2),
      peak_gpu_mib: +(peak / MiB).toFixed(1),
    });
  }
  for (const t of stateTensors(state)) t.dispose();
  for (const [, t] of [...model.namedParameters(), ...model.namedBuffers()]) t.dispose();
  const adapter = webgpuAdapterName();
  await destroyWebGPU();
  return { adapter, rows };
}


/** The --key options run() reads (`frugal bench ttt-context` rejects any other). */
export const options: readonly string[] = ['device', 'contexts', 'layers', 'decode', 'chunk', 'attn-prefill-max', 'dim', 'heads', 'ffn', 'vocab'];
export async function run(args: Record<string, string | boolean>): Promise<Record<string, unknown>> {
  const device = String(args.device ?? 'cpu');
  if (device !== 'cpu' && device !== 'webgpu') throw new Error(`--device must be cpu or webgpu, got '${device}'`);
  const contexts = typeof args.contexts === 'string' ? args.contexts.split(',').map(Number) : DEFAULT_CONTEXTS;
  const layers = Number(args.layers ?? DEFAULT_LAYERS);
  const decode = Number(args.decode ?? 16);
  const chunk = Number(args.chunk ?? 2048);
  const attnPrefillMax = Number(args['attn-prefill-max'] ?? 4096);
  const preset = PRESETS['ttt-linear-125m'];
  const dim = Number(args.dim ?? preset.hiddenSize), heads = Number(args.heads ?? preset.numHeads), ffn = Number(args.ffn ?? preset.intermediateSize);
  const vocab = Number(args.vocab ?? preset.vocabSize);
  for (const c of contexts) {
    if (!Number.isInteger(c) || c < 1) throw new Error(`--contexts: '${c}' is not a positive integer; use e.g. --contexts 1024,2048`);
  }
  if (contexts.some((c, i) => i > 0 && c <= contexts[i - 1])) throw new Error(`--contexts must increase, got ${contexts.join(',')}`);
  if (!Number.isInteger(layers) || layers < 1 || layers > 12) throw new Error(`--layers must be an integer in 1..12, got ${args.layers}`);
  for (const [name, v] of [['decode', decode], ['chunk', chunk], ['attn-prefill-max', attnPrefillMax], ['dim', dim], ['heads', heads], ['ffn', ffn], ['vocab', vocab]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer, got ${v}`);
  }
  if (dim % heads !== 0) throw new Error(`--dim ${dim} is not divisible by --heads ${heads}; pick a head count that divides the width`);
  const fullShape = dim === preset.hiddenSize && heads === preset.numHeads && ffn === preset.intermediateSize && vocab === preset.vocabSize;
  const self = fileURLToPath(import.meta.url);
  // One fresh process per model so its peak memory (RSS, or the GPU buffer pool) belongs to that model alone.
  const child = (kind: string): unknown => {
    const out = execFileSync(
      process.execPath,
      ['--import', 'tsx', self, '--child', kind, '--device', device, '--contexts', contexts.join(','), '--layers', String(layers),
        '--decode', String(decode), '--chunk', String(chunk), '--attn-prefill-max', String(attnPrefillMax),
        '--dim', String(dim), '--heads', String(heads), '--ffn', String(ffn), '--vocab', String(vocab)],
      { encoding: 'utf8', maxBuffer: 1 << 20 },
    );
    // The result is the last line; a graphics driver may print notices before it.
    return JSON.parse(out.trim().split('\n').pop()!);
  };
  let rows: { context: number; ttt_decode_ms: number; attn_decode_ms: number; [k: string]: number | null }[];
  let adapter: string | undefined;
  if (device === 'cpu') {
    const t = child('ttt') as Row[], a = child('attn') as Row[];
    rows = contexts.map((context, i) => ({
      context, ttt_prefill_ms: t[i].prefill_ms, ttt_decode_ms: t[i].decode_ms, attn_prefill_ms: a[i].prefill_ms,
      attn_decode_ms: a[i].decode_ms, ttt_peak_mib: t[i].peak_mib, attn_peak_mib: a[i].peak_mib,
    }));
  } else {
    const t = child('ttt') as { adapter: string; rows: GpuRow[] }, a = child('attn') as { adapter: string; rows: GpuRow[] };
    adapter = t.adapter;
    rows = contexts.map((context, i) => ({
      context, ttt_prefill_ms: t.rows[i].prefill_ms, ttt_decode_ms: t.rows[i].decode_ms, attn_prefill_ms: a.rows[i].prefill_ms,
      attn_decode_ms: a.rows[i].decode_ms, ttt_peak_gpu_mib: t.rows[i].peak_gpu_mib, attn_peak_gpu_mib: a.rows[i].peak_gpu_mib,
    }));
  }
  // The smallest measured context from which TTT decodes faster at every larger measured context.
  let from: number | null = null;
  for (let i = rows.length - 1; i >= 0 && rows[i].ttt_decode_ms < rows[i].attn_decode_ms; i--) from = rows[i].context;
  const shapes = fullShape ? 'ttt-linear-125m shapes' : `reduced shapes (hidden ${dim}, ${heads} heads, FFN ${ffn}, vocab ${vocab}; not the 125M model)`;
  return {
    model: `${shapes} (Mamba backbone) vs attention with the same dims, random weights, batch 1, ${device}`,
    ...(adapter !== undefined ? { adapter } : {}),
    attn_cache: `preallocated KV cache; contexts above ${attnPrefillMax} filled with random keys/values (attn_prefill_ms null)`,
    prefill: `chunks of ${chunk} tokens, cumulative over the contexts walked in one process`,
    ...(device === 'webgpu' ? {
      gpu_memory: 'high-water mark of the WebGPU buffer pool (live + pooled bytes, bucket-rounded), weights included; '
        + 'the KV cache is allocated once for the largest context, so attn_peak_gpu_mib holds it from the first row',
    } : {}),
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
    const a: ChildArgs = {
      kind: args.child === 'ttt' ? 'ttt' : 'attn', contexts: String(args.contexts).split(',').map(Number),
      layers: Number(args.layers), decode: Number(args.decode), chunk: Number(args.chunk), attnPrefillMax: Number(args['attn-prefill-max']),
      dim: Number(args.dim), heads: Number(args.heads), ffn: Number(args.ffn), vocab: Number(args.vocab),
    };
    console.log(JSON.stringify(args.device === 'webgpu' ? await measureWebGPU(a) : measure(a)));
  } else {
    console.log(JSON.stringify(await run(args), null, 2));
  }
}
