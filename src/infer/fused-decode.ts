// Fused decoding of packed FBI models: the whole layer stack in one backend call per step (the fbi
// table's decodeStack; on the CPU native/fbi_decode.cc) instead of some twenty JS ops per layer.
// Its logits equal the per-module path's bit for bit (same kernels, same arithmetic; see the native
// file), so generation takes it whenever a model is covered:
//   - models on a backend with the kernel (the CPU) whose every block linear is a PackedLinear with int8 activations (the serving
//     default), softmax attention (grouped KV heads included) and SwiGLU FFNs in every layer;
//   - LM head f16 (HalfHead) or int8 (Int8Head) in the native call, any other head (f32, tied to
//     the embedding) applied after it to the final hidden states.
// Not covered, so served by the per-module path: exact f32 activations, TTT mixers, PEER FFNs,
// Qwen3-style q/k norms, GGUF models, backends without the kernel (WebGPU). FRUGAL_FUSED_DECODE=0
// turns it off.
import { type FbiDecodeStack, type FbiDecodeState, KernelUnavailableError } from '../backend/contracts.ts';
import { decodeStack, type DecodeStackLinear, type DecodeStackTensors } from '../ops/fbi.ts';
import type { CausalLM, ModelState } from '../models/index.ts';
import { ffnKindAt } from '../models/config.ts';
import { SelfAttention } from '../nn/attention.ts';
import { Embedding, type LinearLike, RMSNorm, SwiGLU } from '../nn/layers.ts';
import type { Module } from '../nn/module.ts';
import { HalfHead, Int8Head, PackedLinear } from '../nn/packed.ts';
import { fromArray, noGrad, type Tensor } from '../tensor/index.ts';

const envFlag = typeof process !== 'undefined' ? process.env?.FRUGAL_FUSED_DECODE : undefined;
if (envFlag !== undefined && envFlag !== '0' && envFlag !== '1') {
  throw new Error(`FRUGAL_FUSED_DECODE must be 0 or 1, got ${JSON.stringify(envFlag)}`);
}

const tensorOf = (m: Module, name: string): Tensor => {
  const t = new Map([...m.namedParameters(), ...m.namedBuffers()]).get(name);
  if (!t) throw new Error(`internal: no tensor '${name}'`);
  return t;
};

/** Why a model cannot take the fused path (null when it can). */
export function fusedDecodeGap(model: CausalLM): string | null {
  const cfg = model.config;
  if (envFlag === '0') return 'FRUGAL_FUSED_DECODE=0';
  if (cfg.mixer !== 'attention') return `mixer ${cfg.mixer}`;
  if (cfg.qkNorm) return 'q/k norms';
  for (let i = 0; i < cfg.numLayers; i++) if (ffnKindAt(cfg, i) !== 'swiglu') return `FFN ${ffnKindAt(cfg, i)} in layer ${i}`;
  const embed = model.model.embed;
  if (!(embed instanceof Embedding)) return 'a token embedding other than a table';
  for (const layer of model.model.layers) {
    if (layer.pre) return 'a pre-mixer';
    const att = layer.mixer, ffn = layer.ffn;
    if (!(att instanceof SelfAttention) || !(ffn instanceof SwiGLU)) return 'a layer that is not attention + SwiGLU';
    for (const l of [att.q, att.k, att.v, att.o, ffn.gate, ffn.up, ffn.down] as LinearLike[]) {
      if (!(l instanceof PackedLinear)) return 'linears that are not packed 1-bit';
      if (l.activations !== 'int8') return `packed linears with ${l.activations} activations`;
    }
    if (!(layer.norm instanceof RMSNorm) || !(layer.ffnNorm instanceof RMSNorm)) return 'norms other than RMSNorm';
  }
  return null;
}

function linearSpec(l: LinearLike): DecodeStackLinear {
  const p = l as PackedLinear;
  return { bits: tensorOf(p, 'weight_bits'), wscale: tensorOf(p, 'wscale'), wbias: tensorOf(p, 'wbias'), pattern: p.pattern, inF: p.inFeatures, outF: p.outFeatures };
}

function headSpec(head: LinearLike | undefined): DecodeStackTensors['head'] {
  if (head instanceof HalfHead) return { kind: 'f16', w: tensorOf(head, 'weight_f16') };
  if (head instanceof Int8Head) return { kind: 'int8', q: tensorOf(head, 'weight_q'), scale: tensorOf(head, 'weight_scale') };
  return { kind: 'none' };
}

/** A covered model's stack as one backend object (over the model's current tensors). */
export class FusedDecoder {
  readonly stack: FbiDecodeStack;
  /** Whether the LM head runs in the native call (else after it, on the hidden states). */
  readonly nativeHead: boolean;
  private constructor(readonly model: CausalLM) {
    const cfg = model.config, bb = model.model;
    const first = bb.layers[0]?.mixer as unknown as SelfAttention | undefined;
    const head = headSpec(model.lmHead);
    this.nativeHead = head.kind !== 'none';
    this.stack = decodeStack({
      hidden: cfg.hiddenSize, heads: cfg.numHeads, kvHeads: cfg.numKvHeads, headDim: first?.headDim ?? cfg.hiddenSize / cfg.numHeads,
      intermediate: cfg.intermediateSize, vocab: cfg.vocabSize, eps: bb.norm.eps, ropeTheta: cfg.ropeTheta, ropeStyle: cfg.ropeStyle,
      embed: tensorOf(bb.embed, 'weight'), norm: tensorOf(bb.norm, 'weight'), head,
      layers: bb.layers.map((layer) => {
        const att = layer.mixer as unknown as SelfAttention, ffn = layer.ffn as SwiGLU;
        if (layer.norm.eps !== bb.norm.eps || layer.ffnNorm.eps !== bb.norm.eps) throw new Error('internal: fused decode needs one norm epsilon');
        return {
          norm1: tensorOf(layer.norm, 'weight'), norm2: tensorOf(layer.ffnNorm, 'weight'),
          q: linearSpec(att.q), k: linearSpec(att.k), v: linearSpec(att.v), o: linearSpec(att.o),
          gate: linearSpec(ffn.gate), up: linearSpec(ffn.up), down: linearSpec(ffn.down),
        };
      }),
    });
  }

  /** The fused decoder of `model`, or null when the model is not covered (fusedDecodeGap says why) or its backend has no such kernel. */
  static for(model: CausalLM): FusedDecoder | null {
    if (fusedDecodeGap(model) !== null) return null;
    try {
      return new FusedDecoder(model);
    } catch (e) {
      if (e instanceof KernelUnavailableError) return null;
      throw e;
    }
  }

  /** A decoding state for up to `capacity` positions (prompt + new tokens). */
  createState(capacity: number): FbiDecodeState {
    if (capacity > this.model.config.maxPositions) {
      throw new Error(`fused decode: a state of ${capacity} positions exceeds the model context of ${this.model.config.maxPositions}`);
    }
    return this.stack.createState(capacity);
  }

  /**
   * Logits [L, V] (or of the last token only) of `ids` continuing `state`. With the head in the
   * native call the array is the state's, overwritten by its next step (no allocation per token).
   */
  logits(state: FbiDecodeState, ids: Int32Array, all = false): Float32Array {
    const out = this.stack.step(state, ids, all);
    if (this.nativeHead) return out;
    const rows = all ? ids.length : 1;
    return noGrad(() => {
      const h = fromArray(out, [1, rows, this.model.config.hiddenSize]);
      const y = this.model.logitsFromHidden(h);
      const data = Float32Array.from(y.dataSync() as Float32Array);
      y.dispose();
      return data;
    });
  }
}

// Decoding states that run fused: the ModelState stays as the model made it (empty caches), the
// fused state holds the real cache.
const fusedStates = new WeakMap<ModelState, { decoder: FusedDecoder; state: FbiDecodeState }>();

/** Marks `state` (fresh, position 0) to decode through `decoder` with a cache of `capacity` positions. */
export function attachFused(state: ModelState, decoder: FusedDecoder, capacity: number): void {
  if (state.position !== 0) throw new Error('internal: a fused decoding state must start empty');
  fusedStates.set(state, { decoder, state: decoder.createState(capacity) });
}

/** The fused decoder and state behind a ModelState, if it has one. */
export function fusedOf(state: ModelState): { decoder: FusedDecoder; state: FbiDecodeState } | undefined {
  return fusedStates.get(state);
}
