// Serving GGUF models: LLaMA and Qwen3 files become a CausalLM whose linears, embedding and head run
// from the stored blocks. Q8_0 / Q4_0 / Q1_0 weights stay in their blocks (native int8 products,
// src/ops/fbi.ts quantLinear); an embedding lookup decodes only the rows it looks up. F32 / F16 / BF16
// weights are decoded to f32 once and use the dense GEMM.
import { dequantize, GGML_TYPES, type GgmlType, type GgufFile, type GgufTensorInfo, quantize, readGguf, type WritableTensor, type WritableValue, encodeGguf } from '../io/gguf.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { CausalLM, type TokenEmbedding } from '../models/causal-lm.ts';
import { headDimOf, type ModelConfig } from '../models/config.ts';
import { configFromGguf, ggufModuleName, moduleOfGgufTensor } from '../models/gguf-config.ts';
import '../models/index.ts';
import { applyMatrix, type LinearLike } from '../nn/layers.ts';
import { Module } from '../nn/module.ts';
import * as op from '../ops/index.ts';
import { type QuantBlockType, quantLinear } from '../ops/fbi.ts';
import { fromArray, type Tensor } from '../tensor/tensor.ts';

const isBlockType = (t: GgmlType): t is QuantBlockType => t === 'Q8_0' || t === 'Q4_0' || t === 'Q1_0';

/** Weights of one matrix [rows, cols] as stored in a GGUF: f32 (decoded) or quantized blocks. */
class StoredMatrix {
  dense?: Tensor;
  blocks?: { type: QuantBlockType; data: Uint8Array };
  constructor(readonly rows: number, readonly cols: number, readonly what: string) {}
  set(t: GgufTensorInfo): void {
    if (t.dims.length !== 2 || t.dims[0] !== this.cols || t.dims[1] !== this.rows) {
      throw new Error(`GGUF tensor ${t.name} is [${t.dims.join(', ')}], the model expects [${this.cols}, ${this.rows}] (ggml order) for ${this.what}`);
    }
    if (isBlockType(t.type)) this.blocks = { type: t.type, data: t.data };
    else this.dense = fromArray(dequantize(t.type, t.data, t.elements), [this.rows, this.cols]);
  }
  get type(): GgmlType {
    return this.blocks?.type ?? 'F32';
  }
  /** x [..., cols] -> [..., rows]. */
  apply(x: Tensor): Tensor {
    if (this.dense) return applyMatrix(x, this.dense, this.cols, this.rows);
    if (!this.blocks) throw new Error(`${this.what}: no weights loaded`);
    if (x.shape.at(-1) !== this.cols) throw new Error(`${this.what}: input [${x.shape}] does not end in ${this.cols} features`);
    return quantLinear(x, this.blocks.data, this.blocks.type, this.cols, this.rows);
  }
  get storageBytes(): number {
    return this.blocks ? this.blocks.data.byteLength : this.rows * this.cols * 4;
  }
}

/** A linear [out, in] run from GGUF weights (forward only). */
export class GgufLinear extends Module implements LinearLike {
  readonly weights: StoredMatrix;
  constructor(readonly inFeatures: number, readonly outFeatures: number) {
    super();
    this.weights = new StoredMatrix(outFeatures, inFeatures, `linear [${outFeatures}, ${inFeatures}]`);
  }
  forward(x: Tensor): Tensor {
    return this.weights.apply(x);
  }
}

/** Token embedding from GGUF weights; tied to the head through `project`. */
export class GgufEmbedding extends Module implements TokenEmbedding {
  readonly weights: StoredMatrix;
  constructor(readonly vocab: number, readonly dim: number) {
    super();
    this.weights = new StoredMatrix(vocab, dim, `embedding [${vocab}, ${dim}]`);
  }
  forward(ids: Tensor): Tensor {
    if (this.weights.dense) return op.embedding(this.weights.dense, ids);
    const b = this.weights.blocks!;
    const host = ids.dataSync() as Int32Array;
    const out = new Float32Array(host.length * this.dim);
    for (let i = 0; i < host.length; i++) {
      const id = host[i];
      if (id < 0 || id >= this.vocab) throw new Error(`embedding: token id ${id} out of range for a vocabulary of ${this.vocab}`);
      dequantize(b.type, b.data, this.dim, id * this.dim, out.subarray(i * this.dim, (i + 1) * this.dim));
    }
    return fromArray(out, [...ids.shape, this.dim]);
  }
  project(h: Tensor): Tensor {
    return this.weights.apply(h);
  }
}

/** Builds and loads the CausalLM of a GGUF (LLaMA or Qwen3). Every tensor must be used, none missing. */
export function modelFromGguf(file: GgufFile, what = 'GGUF'): CausalLM {
  const cfg = configFromGguf(file.metadata, file.tensors, what);
  let model: CausalLM;
  try {
    model = new CausalLM(cfg, {
      linear: (_c, inF, outF) => new GgufLinear(inF, outF),
      embedding: (v, d) => new GgufEmbedding(v, d),
      head: (inF, outF) => new GgufLinear(inF, outF),
    });
  } catch (e) {
    throw new Error(`${what}: ${(e as Error).message}`);
  }
  const modules = new Map(model.namedModules());
  const params = new Map([...model.namedParameters()]);
  const used = new Set<string>();
  for (const [name, t] of file.tensors) {
    const path = moduleOfGgufTensor(name);
    const m = path === null ? undefined : modules.get(path);
    if (!m) throw new Error(`${what}: tensor ${name} has no place in a ${String(file.metadata.get('general.architecture'))} model of this config`);
    used.add(path!);
    if (m instanceof GgufLinear || m instanceof GgufEmbedding) {
      m.weights.set(t);
      continue;
    }
    const p = params.get(`${path}.weight`)!;
    if (t.dims.length !== 1 || t.dims[0] !== p.size) throw new Error(`${what}: tensor ${name} is [${t.dims.join(', ')}], expected [${p.size}]`);
    model.setTensor(`${path}.weight`, fromArray(dequantize(t.type, t.data, t.elements), [p.size]));
  }
  const missing = [...modules].filter(([n, m]) => (m instanceof GgufLinear || m instanceof GgufEmbedding || params.has(`${n}.weight`)) && !used.has(n));
  if (missing.length) throw new Error(`${what}: missing tensor(s) ${missing.map(([n]) => `${ggufModuleName(n)}.weight`).join(', ')}`);
  for (const p of model.parameters()) p.requiresGrad = false;
  return model.eval();
}

/** Reads a GGUF file as a runnable CausalLM. */
export function loadGgufModel(path: string): CausalLM {
  return modelFromGguf(readGguf(path), path);
}

/** Bytes of the stored weights of a GGUF-built model's linears, embedding and head, by type. */
export function ggufWeightTypes(model: CausalLM): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of model.modules()) {
    if (m instanceof GgufLinear || m instanceof GgufEmbedding) {
      const t = m.weights;
      out[t.type] = (out[t.type] ?? 0) + t.rows * t.cols;
    }
  }
  return out;
}

// ---- writing ---------------------------------------------------------------------------------

export interface GgufExportOptions {
  /** Type of the block linears (default F32). */
  linearType?: GgmlType;
  /** Type of the embedding and LM head (default: linearType). */
  embeddingType?: GgmlType;
  /** Extra metadata (e.g. the tokenizer's, see tokenizerToGguf in src/data). */
  metadata?: Record<string, WritableValue>;
}

/**
 * The GGUF of a dense LLaMA-layout or Qwen3-layout CausalLM: architecture 'qwen3' when it has q/k
 * norms, else 'llama' (q/k rows then permuted from half-split to the interleaved RoPE order llama.cpp
 * uses for LLaMA, unless the model already rotates interleaved pairs). Norms stay F32.
 */
export function ggufFromModel(model: CausalLM, o: GgufExportOptions = {}): Uint8Array {
  const c: ModelConfig = model.config;
  if (c.mixer !== 'attention' || c.linear !== 'dense' || (Array.isArray(c.ffn) ? c.ffn.some((f) => f !== 'swiglu') : c.ffn !== 'swiglu')) {
    throw new Error('GGUF export: only dense attention + SwiGLU models map to the llama / qwen3 architectures');
  }
  const arch = c.qkNorm ? 'qwen3' : 'llama';
  if (arch === 'qwen3' && c.ropeStyle !== 'half') throw new Error('GGUF export: a qwen3 model rotates half-split pairs; this model uses interleaved RoPE');
  const permute = arch === 'llama' && c.ropeStyle === 'half';
  const d = headDimOf(c);
  const meta: Record<string, WritableValue> = {
    'general.architecture': arch,
    'general.name': 'frugal-lm export',
    [`${arch}.context_length`]: c.maxPositions,
    [`${arch}.embedding_length`]: c.hiddenSize,
    [`${arch}.block_count`]: c.numLayers,
    [`${arch}.feed_forward_length`]: c.intermediateSize,
    [`${arch}.attention.head_count`]: c.numHeads,
    [`${arch}.attention.head_count_kv`]: c.numKvHeads,
    [`${arch}.attention.key_length`]: d,
    [`${arch}.attention.value_length`]: d,
    [`${arch}.rope.dimension_count`]: d,
    [`${arch}.attention.layer_norm_rms_epsilon`]: { type: 'f32', value: c.rmsNormEps },
    [`${arch}.rope.freq_base`]: { type: 'f32', value: c.ropeTheta },
    ...o.metadata,
  };
  const linearType = o.linearType ?? 'F32';
  const embeddingType = o.embeddingType ?? linearType;
  const tensors: WritableTensor[] = [];
  for (const [name, t] of [...model.namedParameters(), ...model.namedBuffers()]) {
    if (!name.endsWith('.weight')) throw new Error(`GGUF export: tensor ${name} has no GGUF name`);
    const mod = name.slice(0, -'.weight'.length);
    const g = ggufModuleName(mod);
    if (!g) throw new Error(`GGUF export: tensor ${name} has no GGUF name`);
    let data = t.dataSync() as Float32Array;
    if (t.ndim === 1) {
      tensors.push({ name: `${g}.weight`, type: 'F32', dims: [t.size], data: quantize('F32', data) });
      continue;
    }
    const [rows, cols] = t.shape;
    if (permute && /\.self_attn\.[qk]_proj$/.test(mod)) data = halfToInterleavedRows(data, rows / d, d, cols);
    const type = /embed_tokens|lm_head/.test(mod) ? embeddingType : linearType;
    if (cols % GGML_TYPES[type].block) throw new Error(`GGUF export: ${name} rows of ${cols} are not whole ${type} blocks of ${GGML_TYPES[type].block}`);
    tensors.push({ name: `${g}.weight`, type, dims: [cols, rows], data: quantize(type, data) });
  }
  return encodeGguf(meta, tensors);
}

/** Writes ggufFromModel(model) to a file atomically. */
export function saveGgufModel(model: CausalLM, path: string, o: GgufExportOptions = {}): void {
  writeFileAtomic(path, ggufFromModel(model, o));
}

/** Rows of each head reordered from [first half | second half] to interleaved pairs (llama.cpp's LLaMA q/k order). */
function halfToInterleavedRows(w: Float32Array, heads: number, d: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  const half = d / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const src = (h * d + j * half + i) * cols, dst = (h * d + 2 * i + j) * cols;
        out.set(w.subarray(src, src + cols), dst);
      }
    }
  }
  return out;
}
