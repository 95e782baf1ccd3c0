// GGUF files (versions 2 and 3): a little-endian header of typed key/value metadata and tensor
// descriptors, then the tensor data at aligned offsets. The reader checks every count, length, shape,
// offset and the alignment against the file size before it allocates or slices anything, so a corrupt
// or hostile file is refused with one line instead of a huge allocation or an out-of-range read.
// Tensor types: F32, F16, BF16 and the block formats Q8_0, Q4_0 and Q1_0 (see the codecs below).
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from './atomic.ts';
import { bf16BitsToF32, f16BitsToF32, f32ToF16Bits } from './raw.ts';

const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32

/** The ggml tensor types this build reads: id, weights per block, bytes per block. */
export const GGML_TYPES = {
  F32: { id: 0, block: 1, bytes: 4 },
  F16: { id: 1, block: 1, bytes: 2 },
  Q4_0: { id: 2, block: 32, bytes: 18 },
  Q8_0: { id: 8, block: 32, bytes: 34 },
  BF16: { id: 30, block: 1, bytes: 2 },
  /** 1 bit per weight and one f16 scale per 128 (llama.cpp's Q1_0, written as Q1_0_G128 by some builds). */
  Q1_0: { id: 41, block: 128, bytes: 18 },
} as const;
export type GgmlType = keyof typeof GGML_TYPES;
const TYPE_BY_ID = new Map<number, GgmlType>(Object.entries(GGML_TYPES).map(([k, v]) => [v.id, k as GgmlType]));

/** Bytes of `n` weights stored as `type` (n must be a whole number of blocks). */
function ggmlBytes(type: GgmlType, n: number): number {
  const t = GGML_TYPES[type];
  return (n / t.block) * t.bytes;
}

// Metadata value types of the GGUF spec.
const enum VT { U8 = 0, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 }
const SCALAR_SIZE: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

export type GgufValue = number | bigint | boolean | string | GgufValue[] | Float32Array | Int32Array | Uint32Array | Float64Array;

export interface GgufTensorInfo {
  name: string;
  type: GgmlType;
  /** ggml order: dims[0] is the contiguous (row) length, so a [out, in] matrix is dims [in, out]. */
  dims: number[];
  elements: number;
  /** The tensor's bytes (a view into the file buffer). */
  data: Uint8Array;
}

export interface GgufFile {
  version: number;
  alignment: number;
  metadata: Map<string, GgufValue>;
  tensors: Map<string, GgufTensorInfo>;
}

const UTF8 = new TextDecoder('utf-8', { fatal: false });

/** Reading bounded by the buffer: every read checks the bytes left first. */
class Cursor {
  pos = 0;
  private readonly view: DataView;
  constructor(readonly bytes: Uint8Array, readonly what: string) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  get left(): number {
    return this.bytes.byteLength - this.pos;
  }
  fail(msg: string): never {
    // Names read from the file may hold control characters; the message stays one printable line.
    throw new Error(`${this.what}: ${msg.replace(/[\u0000-\u001f\u007f]/g, '?')}`);
  }
  need(n: number, for_: string): void {
    if (n > this.left) this.fail(`truncated: ${for_} needs ${n} bytes at offset ${this.pos} but the file has ${this.left} left`);
  }
  u8() { this.need(1, 'a value'); return this.view.getUint8(this.pos++); }
  u32() { this.need(4, 'a value'); const v = this.view.getUint32(this.pos, true); this.pos += 4; return v; }
  /** A u64 that must fit a JS number (counts, lengths, offsets). */
  count(for_: string): number {
    this.need(8, for_);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`${for_} ${v} is out of range`);
    return Number(v);
  }
  str(for_: string): string {
    const n = this.count(`length of ${for_}`);
    this.need(n, for_);
    const s = UTF8.decode(this.bytes.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }
  scalar(t: number): number | bigint | boolean {
    const size = SCALAR_SIZE[t];
    this.need(size, 'a value');
    const v = this.view, p = this.pos;
    this.pos += size;
    switch (t) {
      case VT.U8: return v.getUint8(p);
      case VT.I8: return v.getInt8(p);
      case VT.U16: return v.getUint16(p, true);
      case VT.I16: return v.getInt16(p, true);
      case VT.U32: return v.getUint32(p, true);
      case VT.I32: return v.getInt32(p, true);
      case VT.F32: return v.getFloat32(p, true);
      case VT.BOOL: return v.getUint8(p) !== 0;
      case VT.F64: return v.getFloat64(p, true);
      case VT.U64: { const b = v.getBigUint64(p, true); return b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b; }
      default: { const b = v.getBigInt64(p, true); return b <= BigInt(Number.MAX_SAFE_INTEGER) && b >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b; }
    }
  }
  value(t: number, key: string, depth: number): GgufValue {
    if (t === VT.STRING) return this.str(`the string value of ${key}`);
    if (t === VT.ARRAY) {
      if (depth > 2) this.fail(`${key}: arrays nested deeper than 2 levels are not supported`);
      const et = this.u32();
      const n = this.count(`length of array ${key}`);
      if (et !== VT.STRING && et !== VT.ARRAY && SCALAR_SIZE[et] === undefined) this.fail(`${key}: unknown array element type ${et}`);
      // Smallest encoding of one element: a scalar's size, 8 bytes of string length, 12 of array header.
      const min = et === VT.STRING ? 8 : et === VT.ARRAY ? 12 : SCALAR_SIZE[et];
      this.need(n * min, `array ${key} of ${n} elements`);
      if (et === VT.F32 || et === VT.I32 || et === VT.U32 || et === VT.F64) {
        // A copy (Node Buffers' slice is a view), so the typed array is aligned and owns its bytes.
        const bytes = new Uint8Array(n * min);
        bytes.set(this.bytes.subarray(this.pos, this.pos + n * min));
        this.pos += n * min;
        const C = et === VT.F32 ? Float32Array : et === VT.I32 ? Int32Array : et === VT.U32 ? Uint32Array : Float64Array;
        return new C(bytes.buffer, 0, n);
      }
      const out: GgufValue[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = this.value(et, key, depth + 1);
      return out;
    }
    if (SCALAR_SIZE[t] === undefined) this.fail(`metadata ${key} has unknown value type ${t}`);
    return this.scalar(t);
  }
}

const MAX_DIMS = 4;

/** Parses a GGUF held in memory; `what` names it in errors. */
export function parseGguf(bytes: Uint8Array, what = 'GGUF'): GgufFile {
  const c: Cursor = new Cursor(bytes, what);
  if (bytes.byteLength < 24) c.fail(`truncated: ${bytes.byteLength} bytes is shorter than a GGUF header`);
  if (c.u32() !== GGUF_MAGIC) c.fail('not a GGUF file (bad magic; expected "GGUF")');
  const version = c.u32();
  if (version !== 2 && version !== 3) c.fail(`GGUF version ${version} is not supported (versions 2 and 3 are)`);
  const nTensors = c.count('tensor count');
  const nKv = c.count('metadata count');
  // Each key/value takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor descriptor 8 + 4 + 8 + 4 + 8.
  if (nKv * 13 > c.left) c.fail(`header claims ${nKv} metadata entries, more than the file can hold: the file is truncated or corrupt`);
  if (nTensors * 32 > c.left) c.fail(`header claims ${nTensors} tensors, more than the file can hold: the file is truncated or corrupt`);
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < nKv; i++) {
    const key = c.str(`metadata key #${i}`);
    if (metadata.has(key)) c.fail(`metadata key ${key} appears twice`);
    metadata.set(key, c.value(c.u32(), key, 0));
  }
  let alignment = 32;
  if (metadata.has('general.alignment')) {
    const a = metadata.get('general.alignment');
    if (typeof a !== 'number' || a === undefined || !Number.isInteger(a) || a <= 0 || a > 1 << 20 || (a & (a - 1)) !== 0) c.fail(`general.alignment ${String(a)} is not a power of two`);
    alignment = a;
  }
  const descs: { name: string; type: GgmlType; dims: number[]; elements: number; offset: number; size: number }[] = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const name = c.str(`name of tensor #${i}`);
    if (names.has(name)) c.fail(`tensor ${name} appears twice`);
    names.add(name);
    const nd = c.u32();
    if (nd < 1 || nd > MAX_DIMS) c.fail(`tensor ${name} has ${nd} dimensions (1 to ${MAX_DIMS} allowed)`);
    const dims: number[] = [];
    let elements = 1;
    for (let d = 0; d < nd; d++) {
      const n = c.count(`dimension ${d} of tensor ${name}`);
      if (n < 1) c.fail(`tensor ${name} has an empty dimension`);
      dims.push(n);
      elements *= n;
      if (elements > bytes.byteLength * 8) c.fail(`tensor ${name} [${dims.join(', ')}...] has more elements than the file can hold`);
    }
    const typeId = c.u32();
    const type = TYPE_BY_ID.get(typeId);
    if (!type) c.fail(`tensor ${name} has ggml type ${typeId}, which this build does not read (supported: ${Object.keys(GGML_TYPES).join(', ')})`);
    const t = GGML_TYPES[type];
    if (dims[0] % t.block) c.fail(`tensor ${name} rows of ${dims[0]} are not a whole number of ${type} blocks of ${t.block}`);
    const offset = c.count(`offset of tensor ${name}`);
    if (offset % alignment) c.fail(`tensor ${name} offset ${offset} is not a multiple of the alignment ${alignment}`);
    descs.push({ name, type, dims, elements, offset, size: ggmlBytes(type, elements) });
  }
  const base = Math.ceil(c.pos / alignment) * alignment;
  const tensors = new Map<string, GgufTensorInfo>();
  for (const d of descs) {
    const start = base + d.offset;
    if (start + d.size > bytes.byteLength) {
      c.fail(`tensor ${d.name} (${d.type} [${d.dims.join(', ')}], ${d.size} bytes at ${start}) ends past the end of the file (${bytes.byteLength} bytes): the file is truncated or corrupt`);
    }
    tensors.set(d.name, { name: d.name, type: d.type, dims: d.dims, elements: d.elements, data: bytes.subarray(start, start + d.size) });
  }
  return { version, alignment, metadata, tensors };
}

/** Reads a GGUF file (the whole file is held in memory; tensors are views into it). */
export function readGguf(path: string): GgufFile {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new Error(`cannot read GGUF file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parseGguf(bytes, path);
}

// ---- block codecs -------------------------------------------------------------------------
// Q8_0:  32 weights = f16 d, then 32 int8 q;             w = d * q
// Q4_0:  32 weights = f16 d, then 16 bytes of nibbles;   byte i holds weight i (low nibble) and
//        weight i + 16 (high nibble); w = d * (nibble - 8)
// Q1_0: 128 weights = f16 d, then 16 bytes of bits;      bit i % 8 of byte i / 8 (least significant
//        first); w = +d where the bit is set, -d where clear (d = mean |w| of the block)

function putF16(out: Uint8Array, at: number, x: number): void {
  const h = f32ToF16Bits(x);
  out[at] = h & 0xff;
  out[at + 1] = h >> 8;
}
const getF16 = (b: Uint8Array, at: number) => f16BitsToF32(b[at] | (b[at + 1] << 8));

/** Encodes f32 weights (a whole number of blocks) as `type`. */
export function quantize(type: GgmlType, x: Float32Array): Uint8Array {
  const t = GGML_TYPES[type];
  if (x.length % t.block) throw new Error(`quantize ${type}: ${x.length} values are not a whole number of blocks of ${t.block}`);
  const out = new Uint8Array(ggmlBytes(type, x.length));
  const nb = x.length / t.block;
  switch (type) {
    case 'F32': new Float32Array(out.buffer).set(x); break;
    case 'F16': { const h = new Uint16Array(out.buffer); for (let i = 0; i < x.length; i++) h[i] = f32ToF16Bits(x[i]); break; }
    case 'BF16': {
      const h = new Uint16Array(out.buffer), u = new Uint32Array(Float32Array.from(x).buffer);
      // Round to nearest even on the dropped 16 bits (NaN kept quiet).
      for (let i = 0; i < x.length; i++) h[i] = Number.isNaN(x[i]) ? 0x7fc0 : (u[i] + 0x7fff + ((u[i] >>> 16) & 1)) >>> 16;
      break;
    }
    case 'Q8_0':
      for (let b = 0; b < nb; b++) {
        let amax = 0;
        for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[b * 32 + i]));
        const d = amax / 127, id = d ? 1 / d : 0, o = b * 34;
        putF16(out, o, d);
        for (let i = 0; i < 32; i++) out[o + 2 + i] = Math.round(x[b * 32 + i] * id) & 0xff;
      }
      break;
    case 'Q4_0':
      for (let b = 0; b < nb; b++) {
        let amax = 0, max = 0;
        for (let i = 0; i < 32; i++) {
          const v = x[b * 32 + i];
          if (Math.abs(v) > amax) { amax = Math.abs(v); max = v; }
        }
        const d = max / -8, id = d ? 1 / d : 0, o = b * 18;
        putF16(out, o, d);
        const q = (v: number) => Math.min(15, Math.max(0, Math.trunc(v * id + 8.5)));
        for (let i = 0; i < 16; i++) out[o + 2 + i] = q(x[b * 32 + i]) | (q(x[b * 32 + 16 + i]) << 4);
      }
      break;
    case 'Q1_0':
      for (let b = 0; b < nb; b++) {
        let s = 0;
        for (let i = 0; i < 128; i++) s += Math.abs(x[b * 128 + i]);
        const o = b * 18;
        putF16(out, o, s / 128);
        for (let i = 0; i < 128; i++) if (x[b * 128 + i] >= 0) out[o + 2 + (i >> 3)] |= 1 << (i & 7);
      }
      break;
  }
  return out;
}

/** Decodes `count` weights starting at weight `start` (a block boundary) of `type` data into f32. */
export function dequantize(type: GgmlType, data: Uint8Array, count: number, start = 0, out = new Float32Array(count)): Float32Array {
  const t = GGML_TYPES[type];
  if (start % t.block || count % t.block) throw new Error(`dequantize ${type}: range [${start}, ${start + count}) does not fall on blocks of ${t.block}`);
  if (ggmlBytes(type, start + count) > data.byteLength) throw new Error(`dequantize ${type}: ${data.byteLength} bytes hold fewer than ${start + count} values`);
  const at = data.byteOffset + ggmlBytes(type, start);
  const b0 = start / t.block, nb = count / t.block;
  switch (type) {
    case 'F32': out.set(new Float32Array(data.buffer.slice(at, at + count * 4))); break;
    case 'F16': case 'BF16': {
      const h = new Uint16Array(data.buffer.slice(at, at + count * 2));
      const f = type === 'F16' ? f16BitsToF32 : bf16BitsToF32;
      for (let i = 0; i < count; i++) out[i] = f(h[i]);
      break;
    }
    case 'Q8_0':
      for (let b = 0; b < nb; b++) {
        const o = (b0 + b) * 34, d = getF16(data, o);
        for (let i = 0; i < 32; i++) out[b * 32 + i] = d * ((data[o + 2 + i] << 24) >> 24);
      }
      break;
    case 'Q4_0':
      for (let b = 0; b < nb; b++) {
        const o = (b0 + b) * 18, d = getF16(data, o);
        for (let i = 0; i < 16; i++) {
          out[b * 32 + i] = d * ((data[o + 2 + i] & 15) - 8);
          out[b * 32 + 16 + i] = d * ((data[o + 2 + i] >> 4) - 8);
        }
      }
      break;
    case 'Q1_0':
      for (let b = 0; b < nb; b++) {
        const o = (b0 + b) * 18, d = getF16(data, o);
        for (let i = 0; i < 128; i++) out[b * 128 + i] = (data[o + 2 + (i >> 3)] >> (i & 7)) & 1 ? d : -d;
      }
      break;
  }
  return out;
}

// ---- writer -------------------------------------------------------------------------------

/** A metadata value with its GGUF type spelled out (plain JS values get a default type, see below). */
export interface TypedValue {
  type: 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'bool' | 'string' | 'u64' | 'i64' | 'f64';
  value: number | bigint | boolean | string;
}
/** Defaults: integer -> u32 (i32 if negative), other number -> f32, string, boolean -> bool,
 * string[] / number[] arrays (number[] as i32 if all integers, else f32), Float32Array -> f32 array,
 * Int32Array -> i32 array. */
export type WritableValue = TypedValue | number | string | boolean | string[] | number[] | Float32Array | Int32Array;

export interface WritableTensor {
  name: string;
  type: GgmlType;
  /** ggml order (dims[0] contiguous). */
  dims: number[];
  data: Uint8Array;
}

const TYPE_CODE: Record<TypedValue['type'], number> = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, u64: 10, i64: 11, f64: 12 };

class Sink {
  parts: Uint8Array[] = [];
  length = 0;
  push(b: Uint8Array) { this.parts.push(b); this.length += b.byteLength; }
  num(code: number, v: number | bigint | boolean) {
    const b = new Uint8Array(SCALAR_SIZE[code]);
    const dv = new DataView(b.buffer);
    switch (code) {
      case 0: dv.setUint8(0, Number(v)); break;
      case 1: dv.setInt8(0, Number(v)); break;
      case 2: dv.setUint16(0, Number(v), true); break;
      case 3: dv.setInt16(0, Number(v), true); break;
      case 4: dv.setUint32(0, Number(v), true); break;
      case 5: dv.setInt32(0, Number(v), true); break;
      case 6: dv.setFloat32(0, Number(v), true); break;
      case 7: dv.setUint8(0, v ? 1 : 0); break;
      case 10: dv.setBigUint64(0, BigInt(v), true); break;
      case 11: dv.setBigInt64(0, BigInt(v), true); break;
      case 12: dv.setFloat64(0, Number(v), true); break;
    }
    this.push(b);
  }
  str(s: string) {
    const b = new TextEncoder().encode(s);
    this.num(10, b.byteLength);
    this.push(b);
  }
}

function writeValue(s: Sink, v: WritableValue): void {
  const arr = (code: number, items: ArrayLike<number | string>) => {
    s.num(4, VT.ARRAY);
    s.num(4, code);
    s.num(10, items.length);
    for (let i = 0; i < items.length; i++) code === VT.STRING ? s.str(items[i] as string) : s.num(code, items[i] as number);
  };
  if (typeof v === 'string') { s.num(4, VT.STRING); s.str(v); return; }
  if (typeof v === 'boolean') { s.num(4, VT.BOOL); s.num(7, v); return; }
  if (typeof v === 'number') {
    const code = Number.isInteger(v) ? (v < 0 ? 5 : 4) : 6;
    s.num(4, code);
    s.num(code, v);
    return;
  }
  if (v instanceof Float32Array) return arr(VT.F32, v);
  if (v instanceof Int32Array) return arr(VT.I32, v);
  if (Array.isArray(v)) {
    if (v.every((x) => typeof x === 'string')) return arr(VT.STRING, v as string[]);
    return arr((v as number[]).every(Number.isInteger) ? VT.I32 : VT.F32, v as number[]);
  }
  const code = TYPE_CODE[v.type];
  s.num(4, code);
  code === VT.STRING ? s.str(String(v.value)) : s.num(code, v.value as number);
}

/** The bytes of a GGUF v3 file with these metadata entries and tensors (data aligned to `alignment`). */
export function encodeGguf(metadata: Record<string, WritableValue>, tensors: WritableTensor[], alignment = 32): Uint8Array {
  const s = new Sink();
  const entries = Object.entries(metadata);
  if (alignment !== 32 && !('general.alignment' in metadata)) entries.push(['general.alignment', alignment]);
  s.num(4, GGUF_MAGIC);
  s.num(4, 3);
  s.num(10, tensors.length);
  s.num(10, entries.length);
  for (const [k, v] of entries) { s.str(k); writeValue(s, v); }
  const align = (n: number) => Math.ceil(n / alignment) * alignment;
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    const n = t.dims.reduce((a, b) => a * b, 1);
    if (ggmlBytes(t.type, n) !== t.data.byteLength) throw new Error(`GGUF write: tensor ${t.name} (${t.type} [${t.dims}]) needs ${ggmlBytes(t.type, n)} bytes, got ${t.data.byteLength}`);
    s.str(t.name);
    s.num(4, t.dims.length);
    for (const d of t.dims) s.num(10, d);
    s.num(4, GGML_TYPES[t.type].id);
    s.num(10, offset);
    offsets.push(offset);
    offset = align(offset + t.data.byteLength);
  }
  const base = align(s.length);
  const out = new Uint8Array(base + offset);
  let p = 0;
  for (const b of s.parts) { out.set(b, p); p += b.byteLength; }
  tensors.forEach((t, i) => out.set(t.data, base + offsets[i]));
  return out;
}

/** Writes a GGUF file atomically. */
export function writeGguf(path: string, metadata: Record<string, WritableValue>, tensors: WritableTensor[], alignment = 32): void {
  writeFileAtomic(path, encodeGguf(metadata, tensors, alignment));
}
