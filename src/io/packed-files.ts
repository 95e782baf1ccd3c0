// The packed 1-bit folder format without file access: its constants, the in-memory form, and the
// parsing of a folder's config.json and model.safetensors from bytes. Node reads folders through
// readPackedFolder (io/packed.ts, which uses this module); browsers pass the bytes of picked or
// fetched files. Imports nothing Node-only.
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

export const packedWordsPerRow = (inF: number) => Math.ceil(inF / 32);

/** The model tensors of packed data by name: each linear's sign bits and scales, plus the stored tensors. */
export function packedTensorMap(data: PackedModelData): Map<string, RawTensor> {
  const given = new Map<string, RawTensor>(data.tensors);
  for (const [name, l] of data.linears) {
    given.set(`${name}.weight_bits`, { dtype: 'i32', shape: [l.outFeatures, packedWordsPerRow(l.inFeatures)], data: new Int32Array(l.bits.buffer, l.bits.byteOffset, l.bits.length) });
    given.set(`${name}.wscale`, l.wscale);
    given.set(`${name}.wbias`, l.wbias);
  }
  return given;
}

/** Throws one error naming the tensors a model expects but packed data lacks, and those it has in excess. */
export function checkPackedNames(expected: readonly string[], given: ReadonlyMap<string, unknown>): void {
  const want = new Set(expected);
  const missing = expected.filter((n) => !given.has(n));
  const extra = [...given.keys()].filter((n) => !want.has(n));
  if (missing.length || extra.length) {
    throw new Error(`packed model does not match its config: ${missing.length ? `missing ${missing.join(', ')}` : ''}${missing.length && extra.length ? '; ' : ''}${extra.length ? `unexpected ${extra.join(', ')}` : ''}`);
  }
}

/** Whether a parsed config.json marks a packed folder. */
export function isPackedConfig(config: Record<string, unknown>): boolean {
  return typeof config.frugal_packed === 'object' && config.frugal_packed !== null;
}

/** Checks the packed marker of a parsed config.json (a packed folder of a format this version reads). */
export function checkPackedConfig(raw: Record<string, unknown>, where: string): void {
  const marker = raw.frugal_packed as Record<string, unknown> | undefined;
  if (!isPackedConfig(raw)) throw new Error(`${where} is not a packed model folder (its config.json has no "frugal_packed" block); load it with loadPretrained, or pack it first`);
  if (marker!.format !== PACKED_FORMAT || marker!.version !== PACKED_VERSION || marker!.word_bits !== 32) {
    throw new Error(`${where}: packed format ${JSON.stringify(marker)} is not supported (expected ${PACKED_FORMAT} version ${PACKED_VERSION}, 32-bit words)`);
  }
}

/**
 * Packed model data from a folder's parsed config.json and its model.safetensors (a path in Node, or
 * the file's bytes). `where` names the folder in error messages.
 */
export function packedDataFrom(raw: Record<string, unknown>, weights: string | Uint8Array, where: string): PackedModelData {
  checkPackedConfig(raw, where);
  const marker = raw.frugal_packed as Record<string, unknown>;
  const file = typeof weights === 'string' ? weights : `${where}/model.safetensors`;
  const { tensors, metadata } = readSafetensors(weights);
  let shapes: Record<string, [number, number]>;
  try {
    shapes = JSON.parse(metadata.packed_linears ?? '');
  } catch {
    throw new Error(`${file}: missing or invalid "packed_linears" metadata; the file was not written by the packer`);
  }
  const linears = new Map<string, PackedLinearData>();
  for (const [name, shape] of Object.entries(shapes)) {
    const [outF, inF] = Array.isArray(shape) ? shape : [NaN, NaN];
    const take = (suffix: string) => {
      const t = tensors.get(`${name}${suffix}`);
      if (!t) throw new Error(`${file}: packed linear ${name} lacks ${name}${suffix}`);
      tensors.delete(`${name}${suffix}`);
      return t;
    };
    const bits = take('.weight_bits'), wscale = take('.wscale'), wbias = take('.wbias');
    if (!Number.isSafeInteger(outF) || !Number.isSafeInteger(inF) || bits.dtype !== 'i32' || bits.shape.length !== 2 ||
      bits.shape[0] !== outF || bits.shape[1] !== packedWordsPerRow(inF)) {
      throw new Error(`${file}: ${name}.weight_bits [${bits.shape}] does not hold [${outF}, ${inF}] sign bits`);
    }
    linears.set(name, { outFeatures: outF, inFeatures: inF, bits: new Uint32Array(bits.data.buffer, bits.data.byteOffset, bits.data.length), wscale, wbias });
  }
  const headDtype = marker.head_dtype ?? marker.embedding_dtype ?? 'f32';
  if (headDtype !== 'f16' && headDtype !== 'f32' && headDtype !== 'int8') throw new Error(`${where}: packed head_dtype ${JSON.stringify(headDtype)} is not f16, f32 or int8`);
  const config = { ...raw };
  delete config.frugal_packed;
  return { config, linears, tensors, headDtype };
}
