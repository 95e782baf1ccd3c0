// Batch-1 decode and 64-token prefill speed of an FBI model served from packed sign bits (int8
// activations by default), beside the llama.cpp-family peer's formats measured in the same run,
// with our weight-read bandwidth against the machine's measured copy bandwidth.
// Random weights: the bits are random words, the head random f16 values (speed only).
//   frugal bench fbi-generate --preset fbi-130m|fbi-1.3b [--peer DIR] [--reps 3] [--decode 32] [--prefill 64]
//     [--head f16|int8] [--activations int8|f32] [--f32-baseline] [--layers N (fewer layers, for quick checks)]
//     [--path fused|modules] (fused: one native call per step, src/infer/fused-decode.ts, the default
//     where the model is covered; modules: the per-module forward, for the before/after comparison)
// The peer runs when --peer DIR or LLAMA_PEER_DIR names its folder (bench.sh, bin/llama-bench): each
// round times our prefill + decode once, then llama-bench -r 1 on every format, with the same thread
// count; figures are the median over the rounds on both sides.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { copyBandwidth, fbiInt8Isa, fbiUnpack, readBandwidth } from '../src/backend/cpu/fbi.ts';
import { nativeAddon } from '../src/backend/cpu/native.ts';
import { HalfHead, Int8Head, PackedLinear, type PackedActivations, setPackedActivations } from '../src/nn/packed.ts';
import { CausalLM, type ModelConfig } from '../src/models/index.ts';
import { withFbiLinearFactory } from '../src/models/fbi-plugin.ts';
import { PRESETS } from '../src/models/presets.ts';

const FBI_PRESETS = Object.keys(PRESETS).filter((n) => n.startsWith('fbi-'));
import { applyMatrix, type LinearLike } from '../src/nn/layers.ts';
import { Module } from '../src/nn/module.ts';
import { bitsFromCounts } from '../src/nn/fbi-linear.ts';
import { empty, fromArray, noGrad, type Tensor } from '../src/tensor/index.ts';
import { runBenchIfMain } from './kit.ts';
import { FusedDecoder, fusedDecodeGap } from '../src/infer/fused-decode.ts';
import { UsageError } from '../src/cli/args.ts';

/** The --key options run() reads (`frugal bench fbi-generate` rejects any other). */
export const options: readonly string[] = ['preset', 'decode', 'prefill', 'reps', 'peer', 'head', 'activations', 'f32-baseline', 'layers', 'path'];

/** A dense linear whose f32 weight is filled in afterwards (no random init of billions of values). */
class MaterializedLinear extends Module implements LinearLike {
  constructor(readonly inFeatures: number, readonly outFeatures: number) {
    super();
    this.param('weight', empty([outFeatures, inFeatures]));
  }
  forward(x: Tensor): Tensor {
    return applyMatrix(x, this.get('weight'), this.inFeatures, this.outFeatures);
  }
}

interface Args { path: 'fused' | 'modules'; layers: number | null; preset: string; decode: number; prefill: number; reps: number; peer: string | null; head: 'f16' | 'int8'; activations: PackedActivations; f32Baseline: boolean }

function positive(args: Record<string, string | boolean>, key: string, dflt: number): number {
  if (args[key] === undefined) return dflt;
  const n = Number(args[key]);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${key} needs a positive integer, got ${String(args[key])}`);
  return n;
}

function parseArgs(args: Record<string, string | boolean>): Args {
  const preset = String(args.preset ?? 'fbi-1.3b');
  if (!FBI_PRESETS.includes(preset)) throw new UsageError(`--preset must be one of ${FBI_PRESETS.join(', ')}, got ${preset}`);
  const head = String(args.head ?? 'f16'), activations = String(args.activations ?? 'int8');
  if (head !== 'f16' && head !== 'int8') throw new UsageError(`--head must be f16 or int8, got ${head}`);
  if (activations !== 'int8' && activations !== 'f32') throw new UsageError(`--activations must be int8 or f32, got ${activations}`);
  const path = String(args.path ?? 'fused');
  if (path !== 'fused' && path !== 'modules') throw new UsageError(`--path must be fused or modules, got ${path}`);
  const peer = typeof args.peer === 'string' ? args.peer : process.env.LLAMA_PEER_DIR || null;
  if (args.peer === true) throw new UsageError('--peer needs a folder (the llama.cpp peer with bench.sh and bin/llama-bench)');
  if (peer !== null && !existsSync(join(peer, 'bin', 'llama-bench'))) throw new UsageError(`--peer ${peer}: no bin/llama-bench there`);
  return {
    path, preset, head, activations, peer, f32Baseline: args['f32-baseline'] === true, layers: args.layers === undefined ? null : positive(args, 'layers', 1),
    decode: positive(args, 'decode', 32), prefill: positive(args, 'prefill', 64), reps: positive(args, 'reps', 3),
  };
}

// xorshift32 words: fast enough to fill a billion sign bits in a few seconds, reproducible.
function fillRandomWords(a: Int32Array, seed: number): number {
  let s = seed | 0 || 1;
  for (let i = 0; i < a.length; i++) {
    s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
    a[i] = s;
  }
  return s;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

// Time spent inside the weight kernels (packed linears and head), to split a decoded token's time
// into kernels and everything else (JS ops, allocation, attention, norms).
let kernelMs = 0;
function timeKernels(): void {
  for (const cls of [PackedLinear, HalfHead, Int8Head, MaterializedLinear] as { prototype: { forward(x: Tensor): Tensor } }[]) {
    const f = cls.prototype.forward;
    cls.prototype.forward = function (this: unknown, x: Tensor) {
      const t = performance.now();
      const y = f.call(this, x);
      kernelMs += performance.now() - t;
      return y;
    };
  }
}

interface Round { prefillS: number; decodeS: number; decodeKernelMs: number; logits: Float32Array; phases?: Record<string, number> }

/** The same greedy rounds through the fused decoder (one native call per step). */
function measureFused(dec: FusedDecoder, prompt: Int32Array, decode: number): Round {
  const vocab = dec.model.config.vocabSize;
  const state = dec.createState(prompt.length + decode + 4);
  let t = performance.now();
  // Prefill: logits of the last prompt token only (as llama-bench's prompt runs).
  let logits = dec.logits(state, prompt);
  const prefillS = (performance.now() - t) / 1000;
  const first = logits.slice();
  let last: Float32Array = logits;
  const before = state.phaseTimes();
  t = performance.now();
  for (let s = 0; s < decode; s++) {
    let best = 0;
    for (let i = 1; i < vocab; i++) if (last[i] > last[best]) best = i;
    last = logits = dec.logits(state, Int32Array.of(best));
  }
  const decodeS = (performance.now() - t) / 1000;
  const after = state.phaseTimes();
  const phases: Record<string, number> = {};
  for (const k of Object.keys(after)) {
    phases[k] = (after[k] - before[k]) / decode;
    phases[`prefill_${k}`] = before[k];
  }
  const kernel = phases.products_ms + phases.head_ms;
  return { prefillS, decodeS, decodeKernelMs: kernel * decode, logits: first, phases };
}

/** Prefill the prompt, then decode `decode` tokens one at a time (greedy, through the KV cache). */
function measure(model: CausalLM, prompt: Int32Array, decode: number): Round {
  return noGrad(() => {
    const vocab = model.config.vocabSize;
    const state = model.createState(1, prompt.length + decode + 4);
    let t = performance.now();
    let logits = model.forward(fromArray(prompt, [1, prompt.length]), state).dataSync() as Float32Array;
    const prefillS = (performance.now() - t) / 1000;
    const first = logits.slice(0, vocab * Math.min(prompt.length, 4));
    let last: Float32Array = logits.subarray(logits.length - vocab);
    kernelMs = 0;
    t = performance.now();
    for (let s = 0; s < decode; s++) {
      let best = 0;
      for (let i = 1; i < vocab; i++) if (last[i] > last[best]) best = i;
      logits = model.forward(fromArray(Int32Array.of(best), [1, 1]), state).dataSync() as Float32Array;
      last = logits;
    }
    return { prefillS, decodeS: (performance.now() - t) / 1000, decodeKernelMs: kernelMs, logits: first };
  });
}

const PEER_FORMATS = [['f16', 'F16'], ['Q4_0', 'Q4_0'], ['q1_0_g128', 'Q1_0_G128 (f16 head)'], ['iq2_bn', 'IQ2_BN (f16 head)'], ['iq1_bn', 'IQ1_BN (f16 head)']] as const;

/** The peer's GGUFs of this shape (written once by its bench.sh) and one llama-bench round over them. */
class Peer {
  readonly base: string;
  private readonly env: NodeJS.ProcessEnv;
  constructor(readonly dir: string, cfg: ModelConfig, readonly threads: number, readonly pp: number, readonly tg: number) {
    const cache = process.env.PEER_CACHE ?? '/tmp/llama-peer';
    this.base = join(cache, `llama-${cfg.hiddenSize}-${cfg.numLayers}-${cfg.numHeads}-${cfg.intermediateSize}-${cfg.vocabSize}`);
    this.env = { ...process.env, LD_LIBRARY_PATH: [join(dir, 'lib'), process.env.LD_LIBRARY_PATH].filter(Boolean).join(':') };
    if (PEER_FORMATS.some(([f]) => !existsSync(`${this.base}-${f}.gguf`))) {
      // bench.sh writes the missing files; its own timing run is kept short and ignored.
      execFileSync('bash', [join(dir, 'bench.sh'), String(cfg.hiddenSize), String(cfg.numLayers), String(cfg.numHeads), String(cfg.intermediateSize), String(cfg.vocabSize)],
        { env: { ...process.env, THREADS: String(threads), PP: '1', TG: '1' }, stdio: ['ignore', 'ignore', 'inherit'] });
    }
  }
  round(): Record<string, { pp: number; tg: number }> {
    const out: Record<string, { pp: number; tg: number }> = {};
    for (const [f, label] of PEER_FORMATS) {
      const json = execFileSync(join(this.dir, 'bin', 'llama-bench'), ['-m', `${this.base}-${f}.gguf`, '-t', String(this.threads), '-p', String(this.pp),
        '-n', String(this.tg), '-r', '1', '-o', 'json'], { env: this.env, stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 1 << 24 }).toString();
      const rows = JSON.parse(json) as { n_prompt: number; n_gen: number; avg_ts: number }[];
      out[label] = { pp: rows.find((r) => r.n_prompt > 0)?.avg_ts ?? NaN, tg: rows.find((r) => r.n_gen > 0)?.avg_ts ?? NaN };
    }
    return out;
  }
}

export async function run(rawArgs: Record<string, string | boolean> = {}): Promise<Record<string, unknown>> {
  const args = parseArgs(rawArgs);
  const cfg = { ...PRESETS[args.preset], ...(args.layers ? { numLayers: args.layers } : {}) } as ModelConfig;
  const threads = nativeAddon().numThreads() as number;
  const prompt = Int32Array.from({ length: args.prefill }, (_, i) => (i * 7919 + 13) % cfg.vocabSize);
  timeKernels();

  // Packed model: random sign words, scales around the xnor init of N(0, 0.02) weights.
  const t0 = performance.now();
  const created: PackedLinear[] = [];
  const packed = withFbiLinearFactory((c, i, o) => {
    const l = new PackedLinear(i, o, c.fbiScale);
    created.push(l);
    return l;
  }, () => new CausalLM(cfg, { seed: 1 }));
  const buffers = new Map(packed.namedBuffers());
  const bitNames = [...buffers.keys()].filter((n) => n.endsWith('.weight_bits'));
  // Linears register in construction order, so the i-th packed buffer belongs to the i-th linear built.
  const linears = bitNames.map((n, i): [string, PackedLinear] => {
    const l = created[i];
    if (new Map(l.namedBuffers()).get('weight_bits') !== buffers.get(n)) throw new Error(`internal: linear order differs at ${n}`);
    return [n.slice(0, -'.weight_bits'.length), l];
  });
  let seed = 12345;
  let binarized = 0, linearFp = 0, packedBytes = 0;
  for (const [base, l] of linears) {
    seed = fillRandomWords(buffers.get(`${base}.weight_bits`)!.dataSync() as Int32Array, seed);
    const scale = buffers.get(`${base}.wscale`)!.dataSync(), shift = buffers.get(`${base}.wbias`)!.dataSync();
    for (let i = 0; i < scale.length; i++) { scale[i] = 0.016 * (1 + 0.1 * Math.sin(i)); shift[i] = 1e-3 * Math.cos(i); }
    binarized += l.inFeatures * l.outFeatures;
    linearFp += scale.length + shift.length;
    packedBytes += l.storageBytes;
  }
  for (const p of packed.parameters()) p.requiresGrad = false;
  const otherFp = packed.parameters().reduce((s, p) => s + p.size, 0);
  const headW = new Map(packed.namedParameters()).get('lm_head.weight')!.dataSync() as Float32Array;
  const head = args.head === 'f16' ? new HalfHead(cfg.hiddenSize, cfg.vocabSize, headW) : Int8Head.fromWeight(cfg.hiddenSize, cfg.vocabSize, headW);
  packed.replaceChild('lm_head', head);
  (packed as unknown as { lmHead: LinearLike }).lmHead = head;
  const headBytes = cfg.vocabSize * cfg.hiddenSize * (args.head === 'f16' ? 2 : 1) + (args.head === 'int8' ? 4 * cfg.vocabSize : 0);
  setPackedActivations(packed, args.activations);
  const buildPackedS = (performance.now() - t0) / 1000;

  const copyBps = copyBandwidth(256, 3), readBps = readBandwidth(256, 3);
  const peer = args.peer ? new Peer(args.peer, cfg, threads, args.prefill, args.decode) : null;
  const fused = args.path === 'fused' ? FusedDecoder.for(packed) : null;
  if (args.path === 'fused' && !fused) throw new UsageError(`--path fused: this model is not covered (${fusedDecodeGap(packed)}); use --path modules`);
  const once = (n: Int32Array, d: number) => (fused ? measureFused(fused, n, d) : measure(packed, n, d));
  once(prompt.slice(0, 8), 2); // warm-up: interleaved bits are built on first use
  const ours: Round[] = [];
  const theirs: Record<string, { pp: number; tg: number }>[] = [];
  for (let r = 0; r < args.reps; r++) {
    ours.push(once(prompt, args.decode));
    if (peer) theirs.push(peer.round());
  }
  const rd = (x: number) => Number(x.toPrecision(4));
  const decodeTps = median(ours.map((o) => args.decode / o.decodeS));
  const prefillTps = median(ours.map((o) => args.prefill / o.prefillS));
  const decodeMs = 1000 / decodeTps;
  const kernelMsPerToken = median(ours.map((o) => o.decodeKernelMs / args.decode));
  const weightBytes = packedBytes + headBytes;
  const result: Record<string, unknown> = {
    bench: 'fbi-generate',
    preset: args.preset,
    isa: fbiInt8Isa(),
    threads,
    activations: args.activations,
    head: args.head,
    path: args.path,
    prefill_tokens: args.prefill,
    decode_steps: args.decode,
    rounds: args.reps,
    statistic: 'median over rounds (ours and peer alike)',
    packed_tokens_per_s: rd(decodeTps),
    packed_prefill_tokens_per_s: rd(prefillTps),
    decode_ms_per_token: rd(decodeMs),
    decode_kernel_ms_per_token: rd(kernelMsPerToken),
    decode_outside_kernels_ms_per_token: rd(decodeMs - kernelMsPerToken),
    weight_bytes_per_token: weightBytes,
    packed_linear_bytes: packedBytes,
    head_bytes: headBytes,
    weight_read_GBps: rd((weightBytes * decodeTps) / 1e9),
    copy_bandwidth_GBps: rd(copyBps / 1e9),
    weight_read_vs_copy: rd((weightBytes * decodeTps) / copyBps),
    // copy bandwidth counts the bytes read and the bytes written; the read bandwidth (a parallel
    // read of 256 MiB) is the ceiling for a decode that only reads weights.
    read_bandwidth_GBps: rd(readBps / 1e9),
    weight_read_vs_read: rd((weightBytes * decodeTps) / readBps),
    bits_per_param_linear: rd(bitsFromCounts(binarized, linearFp, otherFp).linear),
    build_packed_s: rd(buildPackedS),
  };
  if (fused) {
    // Where a decoded token's time goes inside the native call (median over rounds, ms per token).
    const names = Object.keys(ours[0].phases!);
    const med = (k: string) => rd(median(ours.map((o) => o.phases![k])));
    result.decode_phases_ms_per_token = Object.fromEntries(names.filter((k) => !k.startsWith('prefill_')).map((k) => [k.replace(/_ms$/, ''), med(k)]));
    result.prefill_phases_ms = Object.fromEntries(names.filter((k) => k.startsWith('prefill_')).map((k) => [k.slice(8).replace(/_ms$/, ''), med(k)]));
  }
  if (peer) {
    const fmt: Record<string, { pp_tokens_per_s: number; tg_tokens_per_s: number }> = {};
    for (const [, label] of PEER_FORMATS) fmt[label] = { pp_tokens_per_s: rd(median(theirs.map((t) => t[label].pp))), tg_tokens_per_s: rd(median(theirs.map((t) => t[label].tg))) };
    const bestTg = Math.max(...Object.values(fmt).map((f) => f.tg_tokens_per_s));
    const bestPp = Math.max(...Object.values(fmt).map((f) => f.pp_tokens_per_s));
    Object.assign(result, {
      peer: { dir: args.peer, threads, formats: fmt },
      decode_vs_fastest_peer: rd(decodeTps / bestTg),
      prefill_vs_fastest_peer: rd(prefillTps / bestPp),
    });
  }
  if (args.f32Baseline) {
    // The same model in f32: identical embedding, norms and head values; linears = alpha * S + beta.
    const dense = withFbiLinearFactory((_c, i, o) => new MaterializedLinear(i, o), () => new CausalLM(cfg, { seed: 1 }));
    for (const [n, t] of packed.namedParameters()) if (n !== 'lm_head.weight') dense.setTensor(n, t);
    for (const [base, l] of linears) {
      const w = new Map(dense.namedParameters()).get(`${base}.weight`)!;
      const bits = buffers.get(`${base}.weight_bits`)!.dataSync() as Int32Array;
      fbiUnpack(new Uint32Array(bits.buffer, bits.byteOffset, bits.length), buffers.get(`${base}.wscale`)!.dataSync() as Float32Array,
        buffers.get(`${base}.wbias`)!.dataSync() as Float32Array, l.pattern, l.inFeatures, l.outFeatures, w.dataSync() as Float32Array);
    }
    for (const p of dense.parameters()) p.requiresGrad = false;
    const fp = measure(dense, prompt, args.decode);
    Object.assign(result, { f32_tokens_per_s: rd(args.decode / fp.decodeS), f32_prefill_tokens_per_s: rd(args.prefill / fp.prefillS) });
  }
  return result;
}

await runBenchIfMain(import.meta.url, run);
