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
import { checkPackedConfig, PACKED_FORMAT, PACKED_VERSION, packedDataFrom, type PackedModelData, packedWordsPerRow } from './packed-files.ts';
import type { TensorMap } from './raw.ts';

// The format itself (constants, in-memory form, parsing from bytes) lives in packed-files.ts.
export { isPackedConfig, PACKED_FORMAT, PACKED_VERSION, type PackedLinearData, type PackedModelData, packedWordsPerRow } from './packed-files.ts';

export interface PackedWriteOptions {
  /** Storage of the embedding and LM head: 'f16' (default) or 'f32'. */
  embeddingDtype?: 'f16' | 'f32';
}

const EMBED = /(^|\.)embed_tokens\.weight$/;
const HEAD = 'lm_head.weight';

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
  checkPackedConfig(raw, dir);
  const path = join(dir, 'model.safetensors');
  if (!existsSync(path)) throw new Error(`packed model folder ${dir} has no model.safetensors`);
  return packedDataFrom(raw, path, dir);
}
