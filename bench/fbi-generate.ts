// Batch-1 generation and prefill speed of an FBI model served from packed sign bits, against the same
// model with its binarized weights materialized in f32 (dense GEMMs on the same engine), on all cores.
// Random weights: the bits are random words and both models share the same signs and scales, so
// their logits must agree (reported as logits_rel_diff).
//   node --import tsx bench/fbi-generate.ts --preset fbi-1.3b [--decode 8] [--prefill 64]
import { pathToFileURL } from 'node:url';
import { fbiIsa, fbiUnpack } from '../src/backend/cpu/fbi.ts';
import { nativeAddon } from '../src/backend/cpu/native.ts';
import { PackedLinear } from '../src/infer/packed-linear.ts';
import { CausalLM, type ModelConfig } from '../src/models/index.ts';
import { withFbiLinearFactory } from '../src/models/fbi-plugin.ts';
import { FBI_PRESETS, presetConfig } from '../src/models/llama-hf.ts';
import { applyMatrix, type LinearLike } from '../src/nn/layers.ts';
import { Module } from '../src/nn/module.ts';
import { bitsFromCounts } from '../src/nn/fbi-linear.ts';
import { empty, fromArray, noGrad, type Tensor } from '../src/tensor/index.ts';

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

interface Args { preset: string; decode: number; prefill: number }

function parseArgs(argv: string[]): Args {
  const out: Args = { preset: 'fbi-1.3b', decode: 8, prefill: 64 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i], v = argv[i + 1];
    if (a === '--json') continue;
    if (a === '--preset') { out.preset = v; i++; continue; }
    if (a === '--decode' || a === '--prefill') {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new Error(`${a} needs a positive integer, got ${v}`);
      out[a.slice(2) as 'decode' | 'prefill'] = n;
      i++;
      continue;
    }
    throw new Error(`fbi-generate: unknown argument ${a}; use --preset ${Object.keys(FBI_PRESETS).join('|')} [--decode N] [--prefill N]`);
  }
  if (!FBI_PRESETS[out.preset]) throw new Error(`fbi-generate: --preset must be one of ${Object.keys(FBI_PRESETS).join(', ')}, got ${out.preset}`);
  return out;
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

function timeIt(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return (performance.now() - t0) / 1000;
}

/** Prefill `prefill` tokens, then decode `decode` tokens one at a time (greedy, through the KV cache). */
function measure(model: CausalLM, prompt: Int32Array, decode: number): { prefillS: number; decodeS: number; logits: Float32Array<ArrayBufferLike> } {
  return noGrad(() => {
    const vocab = model.config.vocabSize;
    const warm = model.createState(1, prompt.length + decode + 4);
    model.forward(fromArray(prompt.slice(0, 4), [1, 4]), warm);
    const state = model.createState(1, prompt.length + decode + 4);
    let logits: Float32Array = new Float32Array(0);
    const prefillS = timeIt(() => {
      logits = model.forward(fromArray(prompt, [1, prompt.length]), state).dataSync() as Float32Array;
    });
    const first = logits.slice(0, vocab * Math.min(prompt.length, 4));
    let last: Float32Array = logits.subarray(logits.length - vocab);
    const decodeS = timeIt(() => {
      for (let s = 0; s < decode; s++) {
        let best = 0;
        for (let i = 1; i < vocab; i++) if (last[i] > last[best]) best = i;
        last = model.forward(fromArray(Int32Array.of(best), [1, 1]), state).dataSync() as Float32Array;
      }
    });
    return { prefillS, decodeS, logits: first };
  });
}

export async function run(argv: string[] = []): Promise<Record<string, unknown>> {
  const args = parseArgs(argv);
  const cfg = presetConfig(args.preset) as ModelConfig;
  const prompt = Int32Array.from({ length: args.prefill }, (_, i) => (i * 7919 + 13) % cfg.vocabSize);

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
  const buildPackedS = (performance.now() - t0) / 1000;
  const pk = measure(packed, prompt, args.decode);

  // The same model in f32: identical embedding, norms and head; linears = alpha * S + beta materialized.
  const t1 = performance.now();
  const dense = withFbiLinearFactory((_c, i, o) => new MaterializedLinear(i, o), () => new CausalLM(cfg, { seed: 1 }));
  for (const [n, t] of packed.namedParameters()) dense.setTensor(n, t);
  let f32Bytes = 0;
  for (const [base, l] of linears) {
    const w = (dense.namedParameters().find(([n]) => n === `${base}.weight`) ?? [])[1];
    if (!w) throw new Error(`internal: no dense weight for ${base}`);
    const bits = buffers.get(`${base}.weight_bits`)!.dataSync() as Int32Array;
    fbiUnpack(new Uint32Array(bits.buffer, bits.byteOffset, bits.length), buffers.get(`${base}.wscale`)!.dataSync() as Float32Array,
      buffers.get(`${base}.wbias`)!.dataSync() as Float32Array, l.pattern, l.inFeatures, l.outFeatures, w.dataSync() as Float32Array);
    f32Bytes += w.size * 4;
  }
  for (const p of dense.parameters()) p.requiresGrad = false;
  const buildF32S = (performance.now() - t1) / 1000;
  const fp = measure(dense, prompt, args.decode);

  let diff = 0, ref = 0;
  for (let i = 0; i < pk.logits.length; i++) { diff = Math.max(diff, Math.abs(pk.logits[i] - fp.logits[i])); ref = Math.max(ref, Math.abs(fp.logits[i])); }
  const bits = bitsFromCounts(binarized, linearFp, otherFp);
  const r = (x: number) => Number(x.toPrecision(4));
  return {
    bench: 'fbi-generate',
    preset: args.preset,
    isa: fbiIsa(),
    threads: nativeAddon().numThreads?.() ?? null,
    prefill_tokens: args.prefill,
    decode_steps: args.decode,
    packed_tokens_per_s: r(args.decode / pk.decodeS),
    f32_tokens_per_s: r(args.decode / fp.decodeS),
    decode_speedup: r(fp.decodeS / pk.decodeS),
    packed_prefill_tokens_per_s: r(args.prefill / pk.prefillS),
    f32_prefill_tokens_per_s: r(args.prefill / fp.prefillS),
    prefill_speedup: r(fp.prefillS / pk.prefillS),
    packed_linear_bytes: packedBytes,
    f32_linear_bytes: f32Bytes,
    linear_size_ratio: r(f32Bytes / packedBytes),
    bits_per_param_linear: r(bits.linear),
    bits_per_param_model: r(bits.model),
    logits_rel_diff: r(diff / ref),
    build_packed_s: r(buildPackedS),
    build_f32_s: r(buildF32S),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  run(process.argv.slice(2)).then((r) => console.log(JSON.stringify(r, null, 2)), (e: Error) => {
    console.error(`fbi-generate: ${e.message}`);
    process.exit(1);
  });
}
