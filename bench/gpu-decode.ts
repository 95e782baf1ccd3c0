// Batch-1 decode of a packed FBI model on WebGPU (fbi-1.3b by default, random weights: speed only)
// beside PyTorch decoding the dense model of the same shape in bf16 with a KV cache on the same GPU
// (bench/torch_decode_peer.py), with our weight-read bandwidth and where a token's time goes.
//   frugal bench gpu-decode [--preset fbi-1.3b] [--prompt 16] [--decode 64] [--layers N] [--budget-s 60]
//     [--peer-budget-s 60] [--prefill N] [--no-peer] [--cpu-smoke] [--profile]
// Two loops are timed: 'host' is what `frugal generate` does per token (ids uploaded, logits read
// back, argmax on the host); 'device' keeps the greedy token on the GPU (argmax there, fed straight
// back as the next input) and syncs once at the end, the loop the PyTorch peer runs. Then the parts
// of a token: the 7 packed linears of every layer alone, the f32 LM head alone, and the cost of one
// small dispatch, each over repeated calls between two syncs. A third loop, 'replayed', records one
// token step and replays it per token (src/infer/replayed-decode.ts), the analogue of the peer's CUDA
// graph. --prefill N also times an N-token
// prefill, on int8 subgroup matrices when the device has them (FRUGAL_WEBGPU_SUBGROUP_MATRIX=1) and
// on the scalar int8 kernel, with the logits of the two compared.
import { PackedLinear } from '../src/nn/packed.ts';
import { ReplayedDecoder } from '../src/infer/replayed-decode.ts';
import { CausalLM, type ModelConfig, type ModelState } from '../src/models/index.ts';
import { PRESETS } from '../src/models/presets.ts';
import { argmax, reshape } from '../src/ops/index.ts';
import { fromArray, keep, noGrad, Tensor, tidy } from '../src/tensor/index.ts';
import { syncWebGPU, webgpuRuntime } from '../src/backend/webgpu/index.ts';
import { UsageError } from '../src/cli/args.ts';
import { finishWebGPU, releasePool, runPythonPeer, startWebGPU } from './matmul.ts';
import { runBenchIfMain } from './kit.ts';

/** The --key options run() reads (`frugal bench gpu-decode` rejects any other). */
export const options: readonly string[] = ['device', 'keep-device', 'preset', 'prompt', 'decode', 'prefill', 'layers', 'budget-s', 'peer-budget-s', 'no-peer', 'cpu-smoke', 'profile'];

const FBI_PRESETS = Object.keys(PRESETS).filter((n) => n.startsWith('fbi-'));

function positive(args: Record<string, string | boolean>, key: string, dflt: number): number {
  if (args[key] === undefined) return dflt;
  const n = Number(args[key]);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${key} needs a positive integer, got ${String(args[key])}`);
  return n;
}

// xorshift32 words for the sign bits.
function randomWords(n: number, seed: number): [Int32Array, number] {
  const a = new Int32Array(n);
  let s = seed | 0 || 1;
  for (let i = 0; i < n; i++) { s ^= s << 13; s ^= s >>> 17; s ^= s << 5; a[i] = s; }
  return [a, s];
}

/** Keeps every tensor a decoding state holds (KV caches) past the step's tidy(). */
function keepState(x: unknown, seen = new Set<unknown>()): void {
  if (x === null || typeof x !== 'object' || seen.has(x)) return;
  seen.add(x);
  if (x instanceof Tensor) { keep(x); return; }
  for (const v of Array.isArray(x) ? x : Object.values(x)) keepState(v, seen);
}

const rd = (x: number) => Number(x.toPrecision(4));

export async function run(args: Record<string, string | boolean> = {}): Promise<Record<string, unknown>> {
  if (args.device !== undefined && args.device !== 'webgpu') throw new UsageError(`gpu-decode runs on webgpu only, got --device ${String(args.device)}`);
  const preset = String(args.preset ?? 'fbi-1.3b');
  if (!FBI_PRESETS.includes(preset)) throw new UsageError(`--preset must be one of ${FBI_PRESETS.join(', ')}, got ${preset}`);
  const promptLen = positive(args, 'prompt', 16), decode = positive(args, 'decode', 64);
  const prefillLen = args.prefill === undefined ? 0 : positive(args, 'prefill', 1);
  const budgetMs = positive(args, 'budget-s', 60) * 1000;
  const layers = args.layers === undefined ? null : positive(args, 'layers', 1);
  const cfg = { ...PRESETS[preset], ...(layers ? { numLayers: layers } : {}) } as ModelConfig;
  const t0 = performance.now();
  const adapter = await startWebGPU();
  const rt = webgpuRuntime();
  let dispatches = 0;
  const dispatch = rt.dispatch.bind(rt);
  rt.dispatch = (...a: Parameters<typeof rt.dispatch>) => { dispatches++; dispatch(...a); };

  // The packed model straight on the GPU: random sign words, scales near the xnor init of N(0, 0.02).
  const device = 'webgpu' as const;
  const model = new CausalLM(cfg, { device, seed: 1, linear: (c, i, o) => new PackedLinear(i, o, c.fbiScale, device) });
  let seed = 12345, packedBytes = 0;
  const linears: PackedLinear[] = [];
  for (const [name, mod] of model.namedModules()) {
    if (!(mod instanceof PackedLinear)) continue;
    linears.push(mod);
    const bits = new Map(mod.namedBuffers()).get('weight_bits')!;
    let words: Int32Array;
    [words, seed] = randomWords(bits.size, seed);
    model.setTensor(`${name}.weight_bits`, fromArray(words, bits.shape, device));
    bits.dispose();
    for (const key of ['wscale', 'wbias'] as const) {
      const old = new Map(mod.namedBuffers()).get(key)!;
      const v = Float32Array.from({ length: old.size }, (_, i) => key === 'wscale' ? 0.016 * (1 + 0.1 * Math.sin(i)) : 1e-3 * Math.cos(i));
      model.setTensor(`${name}.${key}`, fromArray(v, old.shape, device));
      old.dispose();
    }
    packedBytes += mod.storageBytes;
  }
  for (const p of model.parameters()) p.requiresGrad = false;
  model.eval();
  const headBytes = cfg.vocabSize * cfg.hiddenSize * 4; // the head runs in f32 on webgpu
  const buildS = (performance.now() - t0) / 1000;
  const vocab = cfg.vocabSize;
  const prompt = Int32Array.from({ length: promptLen }, (_, i) => (i * 7919 + 13) % vocab);

  /** Greedy decode with a host round trip per token (logits read back). Returns [seconds, ids]. */
  async function hostLoop(n: number): Promise<[number, number[], number]> {
    const state: ModelState = model.createState(1, promptLen + n + 4);
    let logits = await stepLogits(prompt, state);
    const ids: number[] = [];
    const d0 = dispatches;
    const t = performance.now();
    for (let s = 0; s < n; s++) {
      let best = 0;
      for (let i = 1; i < vocab; i++) if (logits[i] > logits[best]) best = i;
      ids.push(best);
      logits = await stepLogits([best], state);
    }
    return [(performance.now() - t) / 1000, ids, (dispatches - d0) / n];
  }
  async function stepLogits(ids: ArrayLike<number>, state: ModelState): Promise<Float32Array> {
    const out = tidy(() => {
      const y = noGrad(() => model.forward(fromArray(Int32Array.from(ids), [1, ids.length], device), state));
      keepState(state);
      return y;
    });
    const data = (await out.data()) as Float32Array;
    out.dispose();
    return data.subarray(data.length - vocab);
  }
  /** Greedy decode with the token kept on the GPU; one sync at the end. */
  async function deviceLoop(n: number): Promise<[number, number[]]> {
    const state: ModelState = model.createState(1, promptLen + n + 4);
    const first = await stepLogits(prompt, state);
    let best = 0;
    for (let i = 1; i < vocab; i++) if (first[i] > first[best]) best = i;
    let tok = fromArray(Int32Array.of(best), [1, 1], device);
    const toks: Tensor[] = [];
    await syncWebGPU();
    const t = performance.now();
    for (let s = 0; s < n; s++) {
      const next = tidy(() => {
        const y = noGrad(() => model.forward(tok, state));
        keepState(state);
        return reshape(argmax(reshape(y, [vocab]), 0), [1, 1]);
      });
      toks.push(tok);
      tok = next;
    }
    await tok.data();
    const s = (performance.now() - t) / 1000;
    // The tokens fed, as the host loop lists them (the first one came from the prompt's logits).
    const ids: number[] = [];
    for (const x of toks) { ids.push((await x.data())[0]); x.dispose(); }
    tok.dispose();
    return [s, ids];
  }
  /**
   * Greedy decode from one recorded token step, replayed per token (src/infer/replayed-decode.ts); one
   * sync at the end. Returns [seconds per replayed token, ids as the host loop lists them, commands per
   * step, the step's GPU profile by kernel family when asked].
   */
  type Profile = { totalMs: number; families: { key: string; count: number; ms: number }[] };
  async function replayedLoop(n: number, profile = false): Promise<[number, number[], number, Profile | null]> {
    const state: ModelState = model.createState(1, promptLen + n + 4);
    const first = await stepLogits(prompt, state);
    let best = 0;
    for (let i = 1; i < vocab; i++) if (first[i] > first[best]) best = i;
    const tok = fromArray(Int32Array.of(best), [1, 1], device);
    const dec = ReplayedDecoder.start(model, state, tok, n - 1);
    await syncWebGPU();
    const t = performance.now();
    while (dec.count < n - 1) dec.next();
    const ids = [best, ...(await dec.tokens())];
    const s = (performance.now() - t) / 1000;
    const commands = dec.commandCount;
    const prof = profile ? await dec.profile() : null;
    dec.dispose();
    tok.dispose();
    return [s / (n - 2), ids, commands, prof];
  }
  /** Mean ms of fn over calls between two syncs (a warm-up call first), bounded by ~targetMs. */
  async function meanMs(fn: () => void, maxReps: number, targetMs = 1000): Promise<number> {
    fn(); await syncWebGPU();
    let t = performance.now(); fn(); await syncWebGPU();
    const one = performance.now() - t;
    const reps = Math.max(1, Math.min(maxReps, Math.floor(targetMs / Math.max(one, 0.01))));
    t = performance.now();
    for (let r = 0; r < reps; r++) fn();
    await syncWebGPU();
    return (performance.now() - t) / reps;
  }

  const res: Record<string, unknown> = { bench: 'gpu-decode', device, adapter, preset, layers: cfg.numLayers, hidden: cfg.hiddenSize, ffn: cfg.intermediateSize, vocab, prompt_tokens: promptLen, decode_tokens: decode, build_s: rd(buildS) };
  // Warm-up (pipelines), then the two loops; the same greedy ids from both is a consistency check.
  await hostLoop(2);
  const [hostS, hostIds, perToken] = await hostLoop(decode);
  const [devS, devIds] = (performance.now() - t0 < budgetMs) ? await deviceLoop(decode) : [NaN, []];
  let replayed: Record<string, unknown> = {};
  if (performance.now() - t0 < budgetMs && decode >= 3) {
    await replayedLoop(3); // warm-up: the recording's pipelines and buffers
    const [perTokenS, ids, commands, replayProfile] = await replayedLoop(decode, Boolean(args.profile));
    replayed = {
      replayed_tokens_per_s: rd(1 / perTokenS), replayed_ms_per_token: rd(1000 * perTokenS), replayed_commands_per_token: commands,
      replayed_greedy_ids_agree: ids.length === hostIds.length && ids.every((x, i) => x === hostIds[i]),
      replayed_weight_read_GBps: rd((packedBytes + headBytes) / perTokenS / 1e9),
    };
    // GPU time of the replayed step by kernel family, each family submitted alone (--profile).
    if (replayProfile) {
      replayed.replayed_profile_ms = rd(replayProfile.totalMs);
      replayed.replayed_profile = replayProfile.families.map((f) => ({ key: f.key, count: f.count, ms: rd(f.ms) }));
    }
  }
  const tps = decode / devS, hostTps = decode / hostS;
  Object.assign(res, {
    tokens_per_s: rd(tps), host_loop_tokens_per_s: rd(hostTps), ms_per_token: rd(1000 / tps), host_loop_ms_per_token: rd(1000 / hostTps),
    greedy_ids_agree: devIds.length === hostIds.length && devIds.every((x, i) => x === hostIds[i]),
    dispatches_per_token: rd(perToken),
    packed_linear_bytes: packedBytes, head_bytes: headBytes, weight_bytes_per_token: packedBytes + headBytes,
    weight_read_GBps: rd(((packedBytes + headBytes) * tps) / 1e9),
    ...replayed,
  });
  if (performance.now() - t0 < budgetMs) {
    // A token's parts, alone: all packed linears (one row each), the head, one tiny dispatch.
    const xs = new Map<number, Tensor>();
    for (const l of linears) if (!xs.has(l.inFeatures)) xs.set(l.inFeatures, fromArray(new Float32Array(l.inFeatures).map((_, i) => Math.sin(i)), [1, l.inFeatures], device));
    const linMs = await meanMs(() => tidy(() => noGrad(() => { for (const l of linears) l.forward(xs.get(l.inFeatures)!); })), 50);
    const h = xs.get(cfg.hiddenSize) ?? fromArray(new Float32Array(cfg.hiddenSize), [1, cfg.hiddenSize], device);
    const headMs = await meanMs(() => tidy(() => noGrad(() => { model.logitsFromHidden(h); })), 200);
    const tiny = fromArray(new Float32Array(64), [64], device);
    const n = 500;
    const dispMs = await meanMs(() => tidy(() => noGrad(() => { for (let i = 0; i < n; i++) argmax(tiny, 0); })), 20) / n;
    Object.assign(res, {
      packed_linears_ms_per_token: rd(linMs), packed_linear_dispatches: linears.length * 2,
      packed_linears_GBps: rd(packedBytes / linMs / 1e6), head_ms: rd(headMs), head_GBps: rd(headBytes / headMs / 1e6),
      small_dispatch_us: rd(dispMs * 1000), dispatch_floor_ms_per_token: rd(perToken * dispMs),
    });
    for (const x of new Set([...xs.values(), h, tiny])) x.dispose();
  }
  if (prefillLen && performance.now() - t0 < budgetMs) {
    const ids = Int32Array.from({ length: prefillLen }, (_, i) => (i * 7919 + 13) % vocab);
    const mma = rt.int8Mma;
    const timed = async (): Promise<[number, Float32Array]> => {
      let best = Infinity, last: Float32Array = new Float32Array(0);
      for (let r = 0; r < 2; r++) {
        const state = model.createState(1, prefillLen + 1);
        await syncWebGPU();
        const t = performance.now();
        last = await stepLogits(ids, state);
        best = Math.min(best, performance.now() - t);
      }
      return [best, last.slice()];
    };
    const pf: Record<string, unknown> = { tokens: prefillLen, subgroup_matrix: mma };
    const flops = 2 * prefillLen * linears.reduce((n, l) => n + l.inFeatures * l.outFeatures, 0);
    if (mma) {
      const [ms, logits] = await timed();
      rt.int8Mma = null;
      const [ms0, logits0] = await timed();
      rt.int8Mma = mma;
      let diff = 0;
      for (let i = 0; i < logits.length; i++) if (!Object.is(logits[i], logits0[i])) diff++;
      Object.assign(pf, { mma_ms: rd(ms), scalar_ms: rd(ms0), mma_tokens_per_s: rd(prefillLen / ms * 1000), scalar_tokens_per_s: rd(prefillLen / ms0 * 1000),
        mma_linear_tops_upper_bound: rd(flops / ms / 1e9), speedup: rd(ms0 / ms), last_logits_differing: diff });
    } else {
      const [ms0] = await timed();
      Object.assign(pf, { scalar_ms: rd(ms0), scalar_tokens_per_s: rd(prefillLen / ms0 * 1000) });
    }
    res.prefill = pf;
  }
  for (const t of [...model.parameters(), ...model.namedBuffers().map(([, b]) => b)]) t.dispose();
  await releasePool();
  if (!args['no-peer']) {
    const peer = torchGpuPeerDecode(cfg, promptLen, decode, args);
    if ('torch_error' in peer) res.torch_error = peer.torch_error;
    else {
      Object.assign(res, peer);
      const ptps = peer.torch_bf16_tokens_per_s as number;
      if (ptps) res.ratio_vs_torch_bf16 = rd(tps / ptps);
    }
  }
  res.wall_s = rd((performance.now() - t0) / 1000);
  await finishWebGPU(args);
  return res;
}

/** The PyTorch bf16 dense decode peer (bench/torch_decode_peer.py): one JSON line, or torch_error. */
function torchGpuPeerDecode(cfg: ModelConfig, prompt: number, decode: number, args: Record<string, string | boolean>): Record<string, unknown> {
  return runPythonPeer('torch_decode_peer.py', {
    vocab: cfg.vocabSize, dim: cfg.hiddenSize, layers: cfg.numLayers, heads: cfg.numHeads, kv_heads: cfg.numKvHeads ?? cfg.numHeads,
    ffn: cfg.intermediateSize, eps: cfg.rmsNormEps ?? 1e-5, theta: cfg.ropeTheta ?? 10000, prompt, decode,
  }, args, 60, 60);
}

await runBenchIfMain(import.meta.url, run);
