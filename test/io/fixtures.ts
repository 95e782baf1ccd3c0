// Builders for hand-made test inputs: zip archives, pickle byte streams and torch.save archives,
// written from the format specifications so the readers can be tested on cases the golden files lack.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { crc32, deflateRawSync } from 'node:zlib';
import type { TensorMap } from '../../src/io/raw.ts';

export const GOLDEN_DIR = resolve(process.env.FRUGAL_GOLDEN_DIR ?? resolve(import.meta.dirname, '..', 'fixtures', 'golden'));

/** Path of a golden file; fails the test (never skips) when the golden folder is missing. */
export function golden(...parts: string[]): string {
  const p = join(GOLDEN_DIR, ...parts);
  assert.ok(existsSync(p), `golden file ${p} not found; set FRUGAL_GOLDEN_DIR to the folder holding the reference outputs`);
  return p;
}

/** Asserts that `fn` throws an Error whose message matches every pattern. */
export function throwsClear(fn: () => unknown, ...patterns: RegExp[]): Error {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught !== undefined, `expected an error matching ${patterns.join(' & ')}, but nothing was thrown`);
  assert.ok(caught instanceof Error && caught.constructor === Error, `expected a plain Error, got ${String(caught)}`);
  for (const p of patterns) assert.match(caught.message, p);
  return caught;
}

/** Every tensor of `loaded` must equal `param.<name>` of the reference file bit for bit. */
export function assertMatchesGoldenParams(loaded: TensorMap, reference: TensorMap): void {
  const params = [...reference.keys()].filter((k) => k.startsWith('param.'));
  assert.ok(params.length > 0, 'reference has no param.* tensors');
  for (const p of params) {
    const name = p.slice('param.'.length);
    const got = loaded.get(name);
    assert.ok(got, `checkpoint lacks ${name}`);
    const want = reference.get(p)!;
    assert.equal(got.dtype, want.dtype, name);
    assert.deepEqual(got.shape, want.shape, name);
    assert.deepEqual(bytesOf(got.data), bytesOf(want.data), `${name}: values differ`);
  }
  // Anything else in the checkpoint must be a non-parameter buffer (e.g. rotary inv_freq).
  for (const k of loaded.keys()) {
    if (!reference.has(`param.${k}`)) assert.match(k, /inv_freq|buffer/, `unexpected extra tensor ${k}`);
  }
}

// ---- zip -----------------------------------------------------------------------------------

export interface ZipInput {
  name: string;
  data: Uint8Array;
  deflate?: boolean;
}

/** A zip archive; `zip64` stores every size and offset in zip64 fields and adds the zip64 end records. */
export function buildZip(files: ZipInput[], opts: { zip64?: boolean } = {}): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  const z64 = !!opts.zip64;
  for (const f of files) {
    const name = Buffer.from(f.name, 'utf8');
    const packed = f.deflate ? new Uint8Array(deflateRawSync(f.data)) : f.data;
    const crc = crc32(f.data) >>> 0;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(z64 ? 45 : 20, 4);
    local.writeUInt16LE(f.deflate ? 8 : 0, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(packed.byteLength, 18);
    local.writeUInt32LE(f.data.byteLength, 22);
    local.writeUInt16LE(name.byteLength, 26);
    const extra = z64 ? Buffer.alloc(28) : Buffer.alloc(0);
    if (z64) {
      extra.writeUInt16LE(1, 0);
      extra.writeUInt16LE(24, 2);
      extra.writeBigUInt64LE(BigInt(f.data.byteLength), 4);
      extra.writeBigUInt64LE(BigInt(packed.byteLength), 12);
      extra.writeBigUInt64LE(BigInt(offset), 20);
    }
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(z64 ? 45 : 20, 4);
    cd.writeUInt16LE(z64 ? 45 : 20, 6);
    cd.writeUInt16LE(f.deflate ? 8 : 0, 10);
    cd.writeUInt32LE(crc, 16);
    cd.writeUInt32LE(z64 ? 0xffffffff : packed.byteLength, 20);
    cd.writeUInt32LE(z64 ? 0xffffffff : f.data.byteLength, 24);
    cd.writeUInt16LE(name.byteLength, 28);
    cd.writeUInt16LE(extra.byteLength, 30);
    cd.writeUInt32LE(z64 ? 0xffffffff : offset, 42);
    central.push(cd, name, extra);
    parts.push(local, name, packed);
    offset += local.byteLength + name.byteLength + packed.byteLength;
  }
  const cdBytes = Buffer.concat(central);
  const cdOffset = offset;
  parts.push(cdBytes);
  offset += cdBytes.byteLength;
  if (z64) {
    const rec = Buffer.alloc(56);
    rec.writeUInt32LE(0x06064b50, 0);
    rec.writeBigUInt64LE(44n, 4);
    rec.writeUInt16LE(45, 12);
    rec.writeUInt16LE(45, 14);
    rec.writeBigUInt64LE(BigInt(files.length), 24);
    rec.writeBigUInt64LE(BigInt(files.length), 32);
    rec.writeBigUInt64LE(BigInt(cdBytes.byteLength), 40);
    rec.writeBigUInt64LE(BigInt(cdOffset), 48);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(0x07064b50, 0);
    loc.writeBigUInt64LE(BigInt(offset), 8);
    loc.writeUInt32LE(1, 16);
    parts.push(rec, loc);
  }
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(z64 ? 0xffff : files.length, 8);
  eocd.writeUInt16LE(z64 ? 0xffff : files.length, 10);
  eocd.writeUInt32LE(z64 ? 0xffffffff : cdBytes.byteLength, 12);
  eocd.writeUInt32LE(z64 ? 0xffffffff : cdOffset, 16);
  parts.push(eocd);
  return new Uint8Array(Buffer.concat(parts));
}

// ---- pickle --------------------------------------------------------------------------------

/** Emits pickle opcodes; method names follow the opcode names. */
export class PickleWriter {
  private out: number[] = [];
  private memo = 0;
  bytes(...b: number[]): this {
    this.out.push(...b);
    return this;
  }
  proto(v = 2): this { return this.bytes(0x80, v); }
  mark(): this { return this.bytes(0x28); }
  stop(): this { return this.bytes(0x2e); }
  emptyDict(): this { return this.bytes(0x7d); }
  emptyList(): this { return this.bytes(0x5d); }
  emptyTuple(): this { return this.bytes(0x29); }
  none(): this { return this.bytes(0x4e); }
  bool(v: boolean): this { return this.bytes(v ? 0x88 : 0x89); }
  tuple(): this { return this.bytes(0x74); }
  tuple2(): this { return this.bytes(0x86); }
  setitem(): this { return this.bytes(0x73); }
  setitems(): this { return this.bytes(0x75); }
  appends(): this { return this.bytes(0x65); }
  reduce(): this { return this.bytes(0x52); }
  build(): this { return this.bytes(0x62); }
  binpersid(): this { return this.bytes(0x51); }
  put(): this { return this.bytes(0x71, this.memo++); }
  get(i: number): this { return this.bytes(0x68, i); }
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    if (b.byteLength < 256) return this.bytes(0x8c, b.byteLength, ...b);
    return this.bytes(0x58, ...u32le(b.byteLength), ...b);
  }
  int(n: number): this {
    if (n >= 0 && n < 256) return this.bytes(0x4b, n);
    if (n >= 0 && n < 65536) return this.bytes(0x4d, n & 0xff, n >> 8);
    if (n >= -(2 ** 31) && n < 2 ** 31) return this.bytes(0x4a, ...u32le(n >>> 0));
    return this.long(BigInt(n));
  }
  long(v: bigint): this {
    const b: number[] = [];
    let x = v;
    // Minimal two's-complement little-endian, as Python's LONG1 encoder writes it.
    for (;;) {
      b.push(Number(x & 0xffn));
      x >>= 8n;
      if ((x === 0n && !(b[b.length - 1] & 0x80)) || (x === -1n && b[b.length - 1] & 0x80)) break;
    }
    return this.bytes(0x8a, b.length, ...b);
  }
  float(v: number): this {
    const b = Buffer.alloc(8);
    b.writeDoubleBE(v);
    return this.bytes(0x47, ...b);
  }
  global(module: string, name: string): this {
    return this.bytes(0x63, ...Buffer.from(`${module}\n${name}\n`, 'latin1'));
  }
  stackGlobal(module: string, name: string): this {
    return this.str(module).str(name).bytes(0x93);
  }
  toBytes(): Uint8Array {
    return Uint8Array.from(this.out);
  }
}

function u32le(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

// ---- torch.save archives --------------------------------------------------------------------

export interface TorchTensorSpec {
  name: string;
  storage: { type: string; key: string; numel: number };
  offset: number;
  size: number[];
  stride: number[];
  /** Wrap in torch._utils._rebuild_parameter, as an nn.Parameter is pickled. */
  parameter?: boolean;
}

/**
 * The data.pkl torch.save writes for a state dict, as `torch.save` lays it out: either a plain
 * dict, or (withMetadata) the OrderedDict REDUCE + SETITEMS + BUILD({'_metadata': ...}) form of
 * `module.state_dict()`.
 */
export function stateDictPickle(tensors: TorchTensorSpec[], opts: { withMetadata?: boolean } = {}): Uint8Array {
  const w = new PickleWriter().proto(2);
  if (opts.withMetadata) w.global('collections', 'OrderedDict').emptyTuple().reduce();
  else w.emptyDict();
  w.mark();
  for (const t of tensors) {
    w.str(t.name);
    if (t.parameter) w.global('torch._utils', '_rebuild_parameter');
    w.global('torch._utils', '_rebuild_tensor_v2').mark();
    w.mark().str('storage').global('torch', t.storage.type).str(t.storage.key).str('cpu').int(t.storage.numel).tuple().binpersid();
    w.int(t.offset);
    w.mark();
    for (const s of t.size) w.int(s);
    w.tuple().mark();
    for (const s of t.stride) w.int(s);
    w.tuple().bool(false).global('collections', 'OrderedDict').emptyTuple().reduce().tuple().reduce();
    if (t.parameter) w.bool(true).global('collections', 'OrderedDict').emptyTuple().reduce().bytes(0x87).reduce(); // TUPLE3, REDUCE
  }
  w.setitems();
  if (opts.withMetadata) {
    w.emptyDict().str('_metadata').global('collections', 'OrderedDict').emptyTuple().reduce();
    w.str('').emptyDict().str('version').int(1).setitem().setitem();
    w.setitem().build();
  }
  return w.stop().toBytes();
}

/** A torch.save zip: `<prefix>/data.pkl`, `<prefix>/byteorder`, `<prefix>/data/<key>` per storage. */
export function torchArchive(pkl: Uint8Array, storages: Record<string, Uint8Array>, opts: { prefix?: string; deflate?: boolean } = {}): Uint8Array {
  const prefix = opts.prefix ?? 'archive';
  const files: ZipInput[] = [
    { name: `${prefix}/data.pkl`, data: pkl, deflate: opts.deflate },
    { name: `${prefix}/byteorder`, data: Buffer.from('little') },
  ];
  for (const [key, data] of Object.entries(storages)) files.push({ name: `${prefix}/data/${key}`, data, deflate: opts.deflate });
  files.push({ name: `${prefix}/version`, data: Buffer.from('3\n') });
  return buildZip(files);
}

export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
