// Packed 1-bit model folders: `config.json` (the HF config plus a `frugal_packed` block) and
// `model.safetensors` holding, for each binarized linear `<name>`:
//   <name>.weight_bits  I32 [out, ceil(in / 32)]  sign bits, row-major, bit j % 32 of word j / 32
//                                                 (least significant first), 1 = +1, 0 = -1, rows
//                                                 padded with zero bits to whole 32-bit words
//   <name>.wscale, <name>.wbias  F32              the scale and shift (FBI-LLM alpha, beta)
// and every other tensor as is: embedding and LM head in F16 (or F32 on request), norms F32. The
// safetensors metadata `packed_linears` maps each packed name to its [out, in].
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readConfig, saveCheckpointFolder } from './hf-folder.ts';
import type { RawTensor, TensorMap } from './raw.ts';
import { readSafetensors } from './safetensors.ts';

export const PACKED_FORMAT = 'fbi-1bit';
export const PACKED_VERSION = 1;

export interface PackedLinearData {
  outFeatures: number;
  inFeatures: number;
  /** [out * ceil(in / 32)] sign words. */
  bits: Uint32Array;
  wscale: RawTensor;
  wbias: RawTensor;
}

export interface PackedModelData {
  /** The HF-style model config (without the packed marker; it is added on write). */
  config: Record<string, unknown>;
  linears: Map<string, PackedLinearData>;
  /** Full-precision tensors (embedding, LM head, norms). */
  tensors: TensorMap;
  /**
   * How the LM head is stored: 'f16'/'f32' as `lm_head.weight`, 'int8' as `lm_head.weight_q` (I32
   * words holding int8 bytes, rows padded to 64 bytes) and `lm_head.weight_scale` (F32 per row).
   * Unset for in-memory data: the head is then f32.
   */
  headDtype?: 'f16' | 'f32' | 'int8';
}

export interface PackedWriteOptions {
  /** Storage of the embedding and LM head: 'f16' (default) or 'f32'. */
  embeddingDtype?: 'f16' | 'f32';
}

const EMBED = /(^|\.)embed_tokens\.weight$/;
const HEAD = 'lm_head.weight';

export const packedWordsPerRow = (inF: number) => Math.ceil(inF / 32);

/** Whether a parsed config.json marks a packed folder. */
export function isPackedConfig(config: Record<string, unknown>): boolean {
  return typeof config.frugal_packed === 'object' && config.frugal_packed !== null;
}

/** Writes a packed model folder atomically (a failing write leaves an existing folder as it was). */
export function writePackedFolder(dir: string, data: PackedModelData, opts: PackedWriteOptions = {}): void {
  const embeddingDtype = opts.embeddingDtype ?? 'f16';
  if (embeddingDtype !== 'f16' && embeddingDtype !== 'f32') throw new Error(`packed write: embeddingDtype must be 'f16' or 'f32', got ${JSON.stringify(embeddingDtype)}`);
  const headDtype = data.headDtype === 'int8' ? 'int8' : embeddingDtype;
  if (headDtype === 'int8' && (data.tensors.has(HEAD) || !data.tensors.has('lm_head.weight_q') || !data.tensors.has('lm_head.weight_scale'))) {
    throw new Error('packed write: an int8 head is given as lm_head.weight_q and lm_head.weight_scale (and no lm_head.weight)');
  }
  const tensors: TensorMap = new Map();
  const shapes: Record<string, [number, number]> = {};
  for (const [name, l] of data.linears) {
    const words = packedWordsPerRow(l.inFeatures);
    if (l.bits.length !== l.outFeatures * words) {
      throw new Error(`packed write: ${name} has ${l.bits.length} sign words, expected ${l.outFeatures} x ${words} for [${l.outFeatures}, ${l.inFeatures}]`);
    }
    tensors.set(`${name}.weight_bits`, { dtype: 'i32', shape: [l.outFeatures, words], data: new Int32Array(l.bits.buffer, l.bits.byteOffset, l.bits.length) });
    tensors.set(`${name}.wscale`, l.wscale);
    tensors.set(`${name}.wbias`, l.wbias);
    shapes[name] = [l.outFeatures, l.inFeatures];
  }
  for (const [name, t] of data.tensors) {
    if (tensors.has(name)) throw new Error(`packed write: tensor ${name} is given both packed and full precision`);
    tensors.set(name, t);
  }
  const config = {
    ...data.config,
    frugal_packed: { format: PACKED_FORMAT, version: PACKED_VERSION, word_bits: 32, bit_order: 'lsb-first', embedding_dtype: embeddingDtype, head_dtype: headDtype },
  };
  saveCheckpointFolder(dir, config, tensors, { packed_linears: JSON.stringify(shapes) }, {
    f16: (name) => (name === HEAD ? headDtype === 'f16' : embeddingDtype === 'f16' && EMBED.test(name)),
  });
}

/** Reads a packed model folder written by writePackedFolder; anything else fails with a clear message. */
export function readPackedFolder(dir: string): PackedModelData {
  const raw = readConfig(dir);
  const marker = raw.frugal_packed as Record<string, unknown> | undefined;
  if (!isPackedConfig(raw)) throw new Error(`${dir} is not a packed model folder (its config.json has no "frugal_packed" block); load it with loadPretrained, or pack it first`);
  if (marker!.format !== PACKED_FORMAT || marker!.version !== PACKED_VERSION || marker!.word_bits !== 32) {
    throw new Error(`${dir}: packed format ${JSON.stringify(marker)} is not supported (expected ${PACKED_FORMAT} version ${PACKED_VERSION}, 32-bit words)`);
  }
  const path = join(dir, 'model.safetensors');
  if (!existsSync(path)) throw new Error(`packed model folder ${dir} has no model.safetensors`);
  const { tensors, metadata } = readSafetensors(path);
  let shapes: Record<string, [number, number]>;
  try {
    shapes = JSON.parse(metadata.packed_linears ?? '');
  } catch {
    throw new Error(`${path}: missing or invalid "packed_linears" metadata; the file was not written by the packer`);
  }
  const linears = new Map<string, PackedLinearData>();
  for (const [name, shape] of Object.entries(shapes)) {
    const [outF, inF] = Array.isArray(shape) ? shape : [NaN, NaN];
    const take = (suffix: string) => {
      const t = tensors.get(`${name}${suffix}`);
      if (!t) throw new Error(`${path}: packed linear ${name} lacks ${name}${suffix}`);
      tensors.delete(`${name}${suffix}`);
      return t;
    };
    const bits = take('.weight_bits'), wscale = take('.wscale'), wbias = take('.wbias');
    if (!Number.isSafeInteger(outF) || !Number.isSafeInteger(inF) || bits.dtype !== 'i32' || bits.shape.length !== 2 ||
      bits.shape[0] !== outF || bits.shape[1] !== packedWordsPerRow(inF)) {
      throw new Error(`${path}: ${name}.weight_bits [${bits.shape}] does not hold [${outF}, ${inF}] sign bits`);
    }
    linears.set(name, { outFeatures: outF, inFeatures: inF, bits: new Uint32Array(bits.data.buffer, bits.data.byteOffset, bits.data.length), wscale, wbias });
  }
  const headDtype = marker!.head_dtype ?? marker!.embedding_dtype ?? 'f32';
  if (headDtype !== 'f16' && headDtype !== 'f32' && headDtype !== 'int8') throw new Error(`${dir}: packed head_dtype ${JSON.stringify(headDtype)} is not f16, f32 or int8`);
  const config = { ...raw };
  delete config.frugal_packed;
  return { config, linears, tensors, headDtype };
}
