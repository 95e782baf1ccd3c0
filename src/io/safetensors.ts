// safetensors: an 8-byte little-endian header length, a JSON header mapping names to
// { dtype, shape, data_offsets } (offsets relative to the byte buffer after the header) and an
// optional "__metadata__" string map, then the raw little-endian tensor bytes.
// Every header field is validated before any tensor byte is touched.
import {
  type ByteSource, type FileDType, type RawTensor, type TensorMap, ITEM_SIZE, bufferSource, checkRawTensor,
  decodeElements, f32ToF16Bits, fileSource, isFileDType, numel, toTensorMap,
} from './raw.ts';
import { writeFileAtomic } from './atomic.ts';

/** Headers larger than this are refused rather than parsed (the reference implementation uses the same bound). */
const MAX_HEADER_BYTES = 100_000_000;

export interface SafetensorsEntry {
  dtype: FileDType;
  shape: number[];
  /** Byte range inside the data buffer (after the header). */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  metadata: Record<string, string>;
  entries: Map<string, SafetensorsEntry>;
  /** File offset where the data buffer starts. */
  dataStart: number;
}

const formatError = (name: string, problem: string): Error =>
  new Error(`${name} is not a valid safetensors file: ${problem}`);

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function isOffset(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Reads and validates the header of a safetensors source. */
export function parseSafetensorsHeader(src: ByteSource): SafetensorsHeader {
  const fail = (problem: string) => formatError(src.name, problem);
  if (src.size < 8) throw fail(`it is ${src.size} bytes long, too short for the 8-byte header length`);
  const lenBytes = src.read(0, 8);
  const headerLen = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true);
  if (headerLen > BigInt(src.size - 8)) {
    throw fail(`the header length field says ${headerLen} bytes but only ${src.size - 8} follow; the file is truncated or not safetensors`);
  }
  if (headerLen > BigInt(MAX_HEADER_BYTES)) throw fail(`the header is ${headerLen} bytes, more than the ${MAX_HEADER_BYTES} allowed`);
  const n = Number(headerLen);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(src.read(8, n)));
  } catch (e) {
    throw fail(`the header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (!isRecord(json)) throw fail('the header is not a JSON object');

  const dataStart = 8 + n;
  const dataLen = src.size - dataStart;
  const metadata: Record<string, string> = {};
  const entries = new Map<string, SafetensorsEntry>();
  for (const [name, raw] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isRecord(raw)) throw fail('"__metadata__" is not an object of strings');
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== 'string') throw fail(`"__metadata__.${k}" is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const where = `tensor "${name}"`;
    if (!isRecord(raw)) throw fail(`${where} is not an object`);
    const { dtype, shape, data_offsets: offsets } = raw;
    if (!isFileDType(dtype)) {
      throw fail(`${where} has dtype ${JSON.stringify(dtype)}, which cannot be read (supported: ${Object.keys(ITEM_SIZE).join(', ')})`);
    }
    if (!Array.isArray(shape) || !shape.every(isOffset)) throw fail(`${where} has shape ${JSON.stringify(shape)}; expected a list of non-negative integers`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isOffset)) {
      throw fail(`${where} has data_offsets ${JSON.stringify(offsets)}; expected [begin, end] non-negative integers`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end) throw fail(`${where} has data_offsets [${begin}, ${end}] with begin after end`);
    if (end > dataLen) {
      throw fail(`${where} ends at byte ${end} of the data buffer but the buffer has ${dataLen} bytes; the file is truncated`);
    }
    let count: number;
    try {
      count = numel(shape as number[], where);
    } catch (e) {
      throw fail((e as Error).message);
    }
    const bytes = count * ITEM_SIZE[dtype];
    if (!Number.isSafeInteger(bytes) || bytes !== end - begin) {
      throw fail(`${where} has shape [${shape.join(', ')}] of ${dtype} (${bytes} bytes) but data_offsets span ${end - begin} bytes`);
    }
    entries.set(name, { dtype, shape: shape as number[], begin, end });
  }

  // The buffer must be covered exactly: sorted ranges, no overlap, no gap, nothing trailing.
  const sorted = [...entries].sort((a, b) => a[1].begin - b[1].begin || a[1].end - b[1].end);
  let pos = 0;
  let prev = '';
  for (const [name, e] of sorted) {
    if (e.begin < pos) throw fail(`tensor "${name}" (bytes ${e.begin}..${e.end}) overlaps tensor "${prev}" (ends at ${pos})`);
    if (e.begin > pos) throw fail(`there is a gap of ${e.begin - pos} unindexed bytes before tensor "${name}"`);
    pos = e.end;
    prev = name;
  }
  if (pos !== dataLen) throw fail(`${dataLen - pos} bytes after the last tensor are not described by the header`);
  return { metadata, entries, dataStart };
}

export interface SafetensorsFile extends SafetensorsHeader {
  readonly name: string;
  /** Loads one tensor (converted to f32/i32) by reading only its byte range. */
  read(tensorName: string): RawTensor;
  close(): void;
}

/** Opens a safetensors file or buffer for partial reads: the header now, tensors on demand. */
export function openSafetensors(input: string | Uint8Array): SafetensorsFile {
  const src = typeof input === 'string' ? fileSource(input) : bufferSource(input);
  let header: SafetensorsHeader;
  try {
    header = parseSafetensorsHeader(src);
  } catch (e) {
    src.close();
    throw e;
  }
  return {
    ...header,
    name: src.name,
    read(tensorName) {
      const e = header.entries.get(tensorName);
      if (!e) throw new Error(`${src.name} has no tensor named "${tensorName}"`);
      const data = decodeElements(src.read(header.dataStart + e.begin, e.end - e.begin), e.dtype, `${src.name}: tensor "${tensorName}"`, src.fresh);
      return { dtype: data instanceof Float32Array ? 'f32' : 'i32', shape: [...e.shape], data };
    },
    close: () => src.close(),
  };
}

/** Reads every tensor of a safetensors file (or in-memory bytes) plus its metadata. */
export function readSafetensors(input: string | Uint8Array): { tensors: TensorMap; metadata: Record<string, string> } {
  const file = openSafetensors(input);
  try {
    const tensors: TensorMap = new Map();
    for (const name of [...file.entries.keys()].sort()) tensors.set(name, file.read(name));
    return { tensors, metadata: file.metadata };
  } finally {
    file.close();
  }
}

export interface SafetensorsWriteOptions {
  /** Store the chosen f32 tensors as F16 (half the bytes; values round to nearest f16, overflow becomes +-Inf). */
  f16?: (name: string) => boolean;
}

/**
 * Encodes tensors as safetensors chunks (header, then each tensor's bytes) without copying f32/i32 data.
 * Tensors are laid out in name order.
 */
export function encodeSafetensors(
  tensors: TensorMap | Record<string, RawTensor>,
  metadata: Record<string, string> = {},
  opts: SafetensorsWriteOptions = {},
): Uint8Array[] {
  const map = toTensorMap(tensors);
  const header: Record<string, unknown> = {};
  if (!isRecord(metadata)) throw new Error('safetensors metadata must be an object of strings');
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') throw new Error(`safetensors metadata "${k}" must be a string (got ${typeof v}); JSON.stringify it first`);
  }
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const name of [...map.keys()].sort()) {
    if (name === '__metadata__') throw new Error('a tensor cannot be named "__metadata__" in safetensors');
    const t = map.get(name)!;
    checkRawTensor(name, t);
    let bytes: Uint8Array;
    let dtype: FileDType;
    if (t.dtype === 'f32' && opts.f16?.(name)) {
      const half = new Uint16Array(t.data.length);
      for (let i = 0; i < half.length; i++) half[i] = f32ToF16Bits(t.data[i]);
      bytes = new Uint8Array(half.buffer);
      dtype = 'F16';
    } else {
      bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      dtype = t.dtype === 'f32' ? 'F32' : 'I32';
    }
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes.byteLength] };
    offset += bytes.byteLength;
    chunks.push(bytes);
  }
  // Pad the header with spaces so the data buffer starts 8-byte aligned (as other writers do).
  let json = JSON.stringify(header);
  const jsonBytes = Buffer.byteLength(json, 'utf8');
  json += ' '.repeat((8 - ((8 + jsonBytes) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const prefix = new Uint8Array(8 + headerBytes.byteLength);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  prefix.set(headerBytes, 8);
  return [prefix, ...chunks];
}

/** Writes a safetensors file atomically (temp file + rename), F32/I32 by default, F16 where `opts.f16` says. */
export function writeSafetensors(
  path: string,
  tensors: TensorMap | Record<string, RawTensor>,
  metadata: Record<string, string> = {},
  opts: SafetensorsWriteOptions = {},
): void {
  writeFileAtomic(path, encodeSafetensors(tensors, metadata, opts));
}
