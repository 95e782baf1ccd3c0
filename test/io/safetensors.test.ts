import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeSafetensors, openSafetensors, parseSafetensorsHeader, readSafetensors, writeSafetensors } from '../../src/io/safetensors.ts';
import { type RawTensor, f16BitsToF32, f32ToF16Bits } from '../../src/io/raw.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { bytesOf, golden, throwsClear } from './fixtures.ts';

const tmp = () => mkdtempSync(join(tmpdir(), 'frugal-st-'));
const concat = (chunks: Uint8Array[]) => new Uint8Array(Buffer.concat(chunks));

function randF32(n: number, rng: Rng): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rng.nextU32() / 2 ** 32 - 0.5) * 8;
  return a;
}

/** A safetensors file from a literal header object and a data buffer (for hand-made and broken files). */
function rawFile(header: unknown, data: Uint8Array, headerLen?: bigint): Uint8Array {
  const json = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(headerLen ?? BigInt(json.byteLength));
  return new Uint8Array(Buffer.concat([prefix, json, data]));
}

test('round trip f32, i32, scalars, empty tensors and metadata through a file', () => {
  const rng = new Rng(1);
  const ints = new Int32Array(12);
  for (let i = 0; i < ints.length; i++) ints[i] = (rng.nextU32() | 0);
  const tensors: Record<string, RawTensor> = {
    'w.weight': { dtype: 'f32', shape: [3, 5], data: randF32(15, rng) },
    ids: { dtype: 'i32', shape: [2, 6], data: ints },
    scalar: { dtype: 'f32', shape: [], data: Float32Array.of(-0) },
    empty: { dtype: 'f32', shape: [0, 4], data: new Float32Array(0) },
  };
  const dir = tmp();
  try {
    const path = join(dir, 'a.safetensors');
    writeSafetensors(path, tensors, { note: 'hello', json: '{"a":1}' });
    const back = readSafetensors(path);
    assert.deepEqual(back.metadata, { note: 'hello', json: '{"a":1}' });
    assert.deepEqual([...back.tensors.keys()].sort(), Object.keys(tensors).sort());
    for (const [name, t] of Object.entries(tensors)) {
      const b = back.tensors.get(name)!;
      assert.equal(b.dtype, t.dtype, name);
      assert.deepEqual(b.shape, t.shape, name);
      assert.deepEqual(bytesOf(b.data), bytesOf(t.data), `${name}: bytes differ`);
    }
    // The data buffer starts 8-byte aligned, as other writers produce it.
    const bytes = readFileSync(path);
    assert.equal((8 + Number(bytes.readBigUInt64LE(0))) % 8, 0);
    // No temp files are left beside the output.
    assert.deepEqual(readdirSync(dir), ['a.safetensors']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('f16 conversion: every f16 value survives f16 -> f32 -> f16, and rounding picks the nearest (ties to even)', () => {
  for (let h = 0; h < 0x10000; h++) {
    const x = f16BitsToF32(h);
    if (Number.isNaN(x)) {
      assert.ok(Number.isNaN(f16BitsToF32(f32ToF16Bits(x))));
      continue;
    }
    assert.equal(f32ToF16Bits(x), h, `f16 bits 0x${h.toString(16)}`);
  }
  // For values between neighbouring f16 numbers the result must be the closer one.
  const rng = new Rng(2);
  for (let i = 0; i < 20000; i++) {
    const h = rng.nextU32() & 0x7bfe; // finite, below the largest finite value
    const lo = f16BitsToF32(h);
    const hi = f16BitsToF32(h + 1);
    const t = Math.fround(lo + (hi - lo) * (rng.nextU32() / 2 ** 32));
    const got = f16BitsToF32(f32ToF16Bits(t));
    const best = Math.abs(t - lo) < Math.abs(t - hi) ? lo : Math.abs(t - lo) > Math.abs(t - hi) ? hi : (h & 1 ? hi : lo);
    assert.equal(got, best, `rounding ${t} between ${lo} and ${hi}`);
  }
  assert.equal(f16BitsToF32(f32ToF16Bits(1e6)), Infinity);
  assert.equal(f16BitsToF32(f32ToF16Bits(-1e6)), -Infinity);
});

test('f16 output for chosen tensors: F16 in the header, values within half an f16 ulp', () => {
  const rng = new Rng(3);
  const w = randF32(64, rng);
  const b = randF32(8, rng);
  const bytes = concat(encodeSafetensors({ w: { dtype: 'f32', shape: [8, 8], data: w }, b: { dtype: 'f32', shape: [8], data: b } }, {}, { f16: (n) => n === 'w' }));
  const file = openSafetensors(bytes);
  assert.equal(file.entries.get('w')!.dtype, 'F16');
  assert.equal(file.entries.get('b')!.dtype, 'F32');
  const wBack = file.read('w').data;
  for (let i = 0; i < w.length; i++) {
    // Half an ulp of f16 at |x| is at most |x| * 2^-11 for normal values (all of these are >= 2^-14 or exactly representable).
    assert.ok(Math.abs(wBack[i] - w[i]) <= Math.abs(w[i]) * 2 ** -11 + 2 ** -25, `w[${i}] ${wBack[i]} vs ${w[i]}`);
  }
  assert.deepEqual(file.read('b').data, b);
  file.close();
});

test('reads F64, F16, BF16, I64, I16, I8, U8 and BOOL into f32 / i32', () => {
  const f64 = Float64Array.of(1.5, -2.25, 1e-3);
  const f16 = Uint16Array.of(f32ToF16Bits(0.5), f32ToF16Bits(-3));
  const bf16 = Uint16Array.of(0x3f80, 0xc040); // the top halves of f32 1.0 and -3.0
  const i64 = BigInt64Array.of(-5n, 2147483647n);
  const i16 = Int16Array.of(-300, 300);
  const i8 = Int8Array.of(-7, 7);
  const u8 = Uint8Array.of(200, 3);
  const bool = Uint8Array.of(1, 0);
  const parts = [f64, f16, bf16, i64, i16, i8, u8, bool].map(bytesOf);
  const names = ['F64', 'F16', 'BF16', 'I64', 'I16', 'I8', 'U8', 'BOOL'];
  const header: Record<string, unknown> = {};
  let at = 0;
  parts.forEach((p, i) => {
    header[names[i].toLowerCase()] = { dtype: names[i], shape: [p.byteLength / [8, 2, 2, 8, 2, 1, 1, 1][i]], data_offsets: [at, at + p.byteLength] };
    at += p.byteLength;
  });
  const { tensors } = readSafetensors(rawFile(header, concat(parts)));
  assert.deepEqual([...tensors.get('f64')!.data], [...f64].map(Math.fround));
  assert.deepEqual([...tensors.get('f16')!.data], [0.5, -3]);
  assert.deepEqual([...tensors.get('bf16')!.data], [1, -3]);
  assert.deepEqual([...tensors.get('i64')!.data], [-5, 2147483647]);
  assert.deepEqual([...tensors.get('i16')!.data], [-300, 300]);
  assert.deepEqual([...tensors.get('i8')!.data], [-7, 7]);
  assert.deepEqual([...tensors.get('u8')!.data], [200, 3]);
  assert.deepEqual([...tensors.get('bool')!.data], [1, 0]);
  for (const n of ['i64', 'i16', 'i8', 'u8', 'bool']) assert.equal(tensors.get(n)!.dtype, 'i32');
  for (const n of ['f64', 'f16', 'bf16']) assert.equal(tensors.get(n)!.dtype, 'f32');

  const big = bytesOf(BigInt64Array.of(2147483648n));
  throwsClear(() => readSafetensors(rawFile({ x: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, big)), /does not fit in int32/);
});

test('golden fbi_llama_tiny header: metadata, name prefixes, dtypes, shapes consistent with the config', () => {
  const path = golden('fbi_llama_tiny.safetensors');
  const file = openSafetensors(path);
  try {
    const meta = JSON.parse(file.metadata.meta);
    for (const k of ['source', 'config', 'notes']) assert.ok(k in meta, `metadata.meta lacks "${k}"`);
    assert.ok(file.entries.size > 0);
    for (const [name, e] of file.entries) {
      assert.match(name, /^(param|buffer|input|output|grad)\./, name);
      assert.ok(e.dtype === 'F32' || e.dtype === 'I32', `${name}: ${e.dtype}`);
    }
    const cfg = meta.config;
    assert.deepEqual(file.entries.get('param.model.embed_tokens.weight')!.shape, [cfg.vocab_size, cfg.hidden_size]);
    // A lazy read of one tensor equals the same tensor from a full read.
    const full = readSafetensors(path).tensors.get('param.model.norm.weight')!;
    assert.deepEqual(file.read('param.model.norm.weight'), full);
    assert.equal(full.data.length, cfg.hidden_size);
  } finally {
    file.close();
  }
});

test('truncated files fail with a clear error at every cut point', () => {
  const path = golden('fbi_llama_tiny.safetensors');
  const bytes = new Uint8Array(readFileSync(path));
  const headerEnd = 8 + Number(Buffer.from(bytes).readBigUInt64LE(0));
  const cuts = new Set<number>();
  for (let c = 0; c <= 64; c++) cuts.add(c);
  for (let c = headerEnd - 40; c <= headerEnd + 40; c++) cuts.add(c);
  for (let k = 1; k < 200; k++) cuts.add(Math.floor((bytes.byteLength * k) / 200));
  cuts.add(bytes.byteLength - 1);
  for (const c of cuts) {
    throwsClear(() => readSafetensors(bytes.subarray(0, c)), /is not a valid safetensors file/);
  }
});

test('random bytes fail with a clear error', () => {
  const rng = new Rng(4);
  for (let i = 0; i < 300; i++) {
    const n = rng.nextU32() % 200;
    const b = new Uint8Array(n);
    for (let j = 0; j < n; j++) b[j] = rng.nextU32() & 0xff;
    // Half the cases get a plausible header length so the JSON and field checks are reached too.
    if (i % 2 && n >= 8) Buffer.from(b.buffer).writeBigUInt64LE(BigInt(rng.nextU32() % (n - 7)));
    throwsClear(() => readSafetensors(b), /is not a valid safetensors file/);
  }
});

test('each header defect is reported clearly', () => {
  const data4 = new Uint8Array(4);
  const ok = { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } };
  assert.equal(readSafetensors(rawFile(ok, data4)).tensors.size, 1); // the base case is valid
  const cases: [string, Uint8Array, RegExp][] = [
    ['oversized header length', rawFile(ok, data4, 2n ** 63n), /header length field says \d+ bytes but only \d+ follow/],
    ['bad JSON', (() => { const b = Buffer.alloc(8 + 5); b.writeBigUInt64LE(5n); b.write('{"a":', 8); return new Uint8Array(b); })(), /not valid UTF-8 JSON/],
    ['JSON array header', rawFile([1, 2], data4), /not a JSON object/],
    ['unknown dtype', rawFile({ a: { dtype: 'F8_E4M3', shape: [4], data_offsets: [0, 4] } }, data4), /dtype "F8_E4M3", which cannot be read/],
    ['offsets past the end', rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, data4), /ends at byte 8 of the data buffer but the buffer has 4 bytes/],
    ['shape/offset mismatch', rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, data4), /\(8 bytes\) but data_offsets span 4 bytes/],
    ['begin after end', rawFile({ a: { dtype: 'F32', shape: [0], data_offsets: [4, 0] } }, data4), /begin after end/],
    ['negative shape', rawFile({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, data4), /expected a list of non-negative integers/],
    ['fractional offset', rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [0.5, 4] } }, data4), /expected \[begin, end\]/],
    ['overflowing shape', rawFile({ a: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 4] } }, data4), /too many elements/],
    ['overlap', rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'U8', shape: [2], data_offsets: [2, 4] } }, data4), /overlaps tensor/],
    ['gap', rawFile({ a: { dtype: 'U8', shape: [2], data_offsets: [2, 4] } }, data4), /gap of 2 unindexed bytes/],
    ['trailing bytes', rawFile({ a: { dtype: 'U8', shape: [2], data_offsets: [0, 2] } }, data4), /2 bytes after the last tensor/],
    ['non-string metadata', rawFile({ __metadata__: { step: 3 }, ...ok }, data4), /"__metadata__.step" is not a string/],
    ['tensor not an object', rawFile({ a: 3 }, data4), /tensor "a" is not an object/],
  ];
  // A huge header inside an equally huge (virtual) file is refused by size, without reading it.
  const hugeLen = new Uint8Array(8);
  Buffer.from(hugeLen.buffer).writeBigUInt64LE(200_000_000n);
  const virtual = { name: 'virtual.safetensors', size: 8 + 300_000_000, fresh: true, read: (o: number, n: number) => (o === 0 ? hugeLen : new Uint8Array(n)), close() {} };
  throwsClear(() => parseSafetensorsHeader(virtual), /virtual\.safetensors is not a valid safetensors file: the header is 200000000 bytes, more than the \d+ allowed/);
  for (const [what, bytes, pattern] of cases) {
    const e = throwsClear(() => readSafetensors(bytes), /is not a valid safetensors file/, pattern);
    assert.ok(!e.message.includes('\n'), `${what}: message should be one line`);
  }
});

test('errors name the file; a missing file says so', () => {
  const dir = tmp();
  try {
    const path = join(dir, 'broken.safetensors');
    writeFileSync(path, Uint8Array.of(1, 2, 3));
    throwsClear(() => readSafetensors(path), /broken\.safetensors is not a valid safetensors file: it is 3 bytes long/);
    throwsClear(() => readSafetensors(join(dir, 'nope.safetensors')), /nope\.safetensors: file not found/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bad tensors are refused before writing and an existing file is left unchanged', () => {
  const dir = tmp();
  try {
    const path = join(dir, 'keep.safetensors');
    const good = { a: { dtype: 'f32' as const, shape: [2], data: Float32Array.of(1, 2) } };
    writeSafetensors(path, good);
    const before = readFileSync(path);
    const mtime = statSync(path).mtimeMs;
    throwsClear(() => writeSafetensors(path, { a: { dtype: 'f32', shape: [3], data: Float32Array.of(1, 2) } }), /shape \[3\] needs 3 elements but data holds 2/);
    throwsClear(() => writeSafetensors(path, { a: { dtype: 'i32', shape: [2], data: Float32Array.of(1, 2) } as unknown as RawTensor }), /does not match its data/);
    throwsClear(() => writeSafetensors(path, good, { n: 5 } as unknown as Record<string, string>), /metadata "n" must be a string/);
    assert.deepEqual(readFileSync(path), before);
    assert.equal(statSync(path).mtimeMs, mtime);
    throwsClear(() => writeSafetensors(join(dir, 'missing', 'x.safetensors'), good), /directory .*missing does not exist/);
    assert.deepEqual(readdirSync(dir), ['keep.safetensors']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
