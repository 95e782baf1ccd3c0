// GGUF reader/writer: block codecs, metadata and tensor round trips, and refusal of corrupt files
// (truncation, offsets past the end, unknown types, hostile counts, seeded random mutations).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dequantize, encodeGguf, GGML_TYPES, type GgmlType, parseGguf, quantize } from '../../src/io/gguf.ts';
import { bf16BitsToF32, f16BitsToF32, f32ToF16Bits } from '../../src/io/raw.ts';
import { Rng } from '../../src/tensor/index.ts';
import { randArray } from '../helpers.ts';

const f16 = (x: number) => f16BitsToF32(f32ToF16Bits(x));

test('F32 / F16 / BF16 round trips: exact, or the nearest half / bfloat16', () => {
  const x = randArray(256, new Rng(1), 3);
  assert.deepEqual(dequantize('F32', quantize('F32', x), x.length), x);
  const h = dequantize('F16', quantize('F16', x), x.length);
  x.forEach((v, i) => assert.equal(h[i], Math.fround(f16(v))));
  const b = dequantize('BF16', quantize('BF16', x), x.length);
  x.forEach((v, i) => {
    assert.ok(Math.abs(b[i] - v) <= Math.abs(v) * 2 ** -8, `bf16 ${v} -> ${b[i]}`);
    assert.equal(bf16BitsToF32(quantize('BF16', Float32Array.of(b[i]))[0] | (quantize('BF16', Float32Array.of(b[i]))[1] << 8)), b[i]);
  });
});

test('Q8_0 / Q4_0 round trips stay within half a quantization step (Q4_0: one step on the clipped side)', () => {
  const x = randArray(32 * 40, new Rng(2), 2);
  for (const [type, levels] of [['Q8_0', 127], ['Q4_0', 8]] as const) {
    const q = quantize(type, x);
    assert.equal(q.byteLength, 40 * GGML_TYPES[type].bytes);
    const y = dequantize(type, q, x.length);
    for (let b = 0; b < 40; b++) {
      let amax = 0;
      for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[b * 32 + i]));
      const step = amax / levels;
      // Q4_0 maps the block's extreme to -8 steps, so the other sign reaches only 7 steps (clipped).
      const bound = type === 'Q4_0' ? step : step * 0.5;
      for (let i = 0; i < 32; i++) {
        const e = Math.abs(y[b * 32 + i] - x[b * 32 + i]);
        // f16 rounding of the scale adds at most 2^-11 relative per level.
        assert.ok(e <= bound + amax * 2 ** -10 + 1e-7, `${type} block ${b} element ${i}: error ${e} > ${bound}`);
      }
    }
    // Decoded values are fixed points of the codec.
    assert.deepEqual(quantize(type, y), q, `${type} re-encodes its own output identically`);
  }
});

test('Q1_0: sign bits with the f16 mean |w| of each 128-block as the scale', () => {
  const x = randArray(128 * 6, new Rng(3));
  const q = quantize('Q1_0', x);
  assert.equal(q.byteLength, 6 * 18);
  const y = dequantize('Q1_0', q, x.length);
  for (let b = 0; b < 6; b++) {
    let s = 0;
    for (let i = 0; i < 128; i++) s += Math.abs(x[b * 128 + i]);
    const d = f16(s / 128);
    for (let i = 0; i < 128; i++) assert.equal(y[b * 128 + i], Math.fround(x[b * 128 + i] >= 0 ? d : -d));
  }
  assert.deepEqual(quantize('Q1_0', y), q);
  // Rows are decoded from any block boundary.
  assert.deepEqual(dequantize('Q1_0', q, 256, 384), y.subarray(384, 640));
});

test('a written GGUF reads back: every metadata type, tensor bytes, alignment', () => {
  const t1 = quantize('Q4_0', randArray(64 * 3, new Rng(4)));
  const t2 = quantize('F32', randArray(5, new Rng(5)));
  const bytes = encodeGguf({
    'general.architecture': 'llama', 'x.u32': 7, 'x.neg': -3, 'x.f32': 0.5, 'x.bool': true,
    'x.u8': { type: 'u8', value: 200 }, 'x.i16': { type: 'i16', value: -300 }, 'x.u64': { type: 'u64', value: 2n ** 40n },
    'x.f64': { type: 'f64', value: Math.PI }, 'x.strs': ['a', 'ß', ''], 'x.f32s': Float32Array.of(1.5, -2), 'x.i32s': Int32Array.of(1, -1),
  }, [{ name: 'a', type: 'Q4_0', dims: [64, 3], data: t1 }, { name: 'b', type: 'F32', dims: [5], data: t2 }], 64);
  const f = parseGguf(bytes);
  assert.equal(f.version, 3);
  assert.equal(f.alignment, 64);
  const m = f.metadata;
  assert.equal(m.get('x.u32'), 7);
  assert.equal(m.get('x.neg'), -3);
  assert.equal(m.get('x.f32'), 0.5);
  assert.equal(m.get('x.bool'), true);
  assert.equal(m.get('x.u8'), 200);
  assert.equal(m.get('x.i16'), -300);
  assert.equal(m.get('x.u64'), 2 ** 40);
  assert.equal(m.get('x.f64'), Math.PI);
  assert.deepEqual(m.get('x.strs'), ['a', 'ß', '']);
  assert.deepEqual(m.get('x.f32s'), Float32Array.of(1.5, -2));
  assert.deepEqual(m.get('x.i32s'), Int32Array.of(1, -1));
  const a = f.tensors.get('a')!, b = f.tensors.get('b')!;
  assert.deepEqual([a.type, a.dims, a.elements], ['Q4_0', [64, 3], 192]);
  assert.deepEqual(Buffer.from(a.data), Buffer.from(t1));
  assert.deepEqual(Buffer.from(b.data), Buffer.from(t2));
  assert.equal((a.data.byteOffset) % 64, 0);
});

// A small valid file and the byte offsets of its fields, to corrupt them on purpose.
function sample(type: GgmlType = 'Q8_0'): Uint8Array {
  return encodeGguf({ 'general.architecture': 'llama', 'general.name': 'fuzz', 'tokenizer.ggml.tokens': ['a', 'b', 'c'] }, [
    { name: 'w', type, dims: [128, 2], data: quantize(type, randArray(256, new Rng(6))) },
    { name: 'n', type: 'F32', dims: [4], data: quantize('F32', randArray(4, new Rng(7))) },
  ]);
}
const u64At = (b: Uint8Array, at: number, v: bigint) => new DataView(b.buffer, b.byteOffset).setBigUint64(at, v, true);
const u32At = (b: Uint8Array, at: number, v: number) => new DataView(b.buffer, b.byteOffset).setUint32(at, v, true);
/** Offset of a tensor descriptor's type field (just after its name and dims). */
function descriptorOffset(bytes: Uint8Array, name: string): number {
  const needle = Buffer.from(name);
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // name is preceded by its u64 length; search for length + name.
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(needle.length));
  const at = buf.indexOf(Buffer.concat([len, needle]));
  assert.ok(at > 0);
  return at + 8 + needle.length;
}

test('corrupt headers give one clear error', () => {
  const ok = sample();
  const bad = (mutate: (b: Uint8Array) => void, pattern: RegExp) => {
    const b = ok.slice();
    mutate(b);
    assert.throws(() => parseGguf(b, 'x.gguf'), (e: Error) => pattern.test(e.message) && !e.message.includes('\n') && e.message.startsWith('x.gguf: '));
  };
  bad((b) => (b[0] = 0x47 + 1), /not a GGUF file/);
  bad((b) => u32At(b, 4, 9), /version 9 is not supported/);
  bad((b) => u64At(b, 8, 2n ** 40n), /claims \d+ tensors/);
  bad((b) => u64At(b, 16, 2n ** 62n), /out of range|claims/);
  bad((b) => u64At(b, 24, 2n ** 50n), /truncated/); // first key's length
  const w = descriptorOffset(ok, 'w');
  bad((b) => u32At(b, w, 5), /has 5 dimensions/);
  bad((b) => u32At(b, w + 4 + 16, 77), /ggml type 77, which this build does not read/);
  bad((b) => u64At(b, w + 4, 100n), /rows of 100 are not a whole number of Q8_0 blocks of 32/);
  bad((b) => u64At(b, w + 4 + 16 + 4, 3n), /not a multiple of the alignment/);
  bad((b) => u64At(b, w + 4 + 16 + 4, 1n << 20n), /ends past the end of the file/);
  bad((b) => u64At(b, w + 4, 2n ** 45n), /more elements than the file can hold|ends past/);
  bad((b) => u64At(b, w + 4, 0n), /empty dimension/);
});

test('every truncation of a GGUF is refused with one line', () => {
  const ok = sample('Q4_0');
  const full = parseGguf(ok);
  // The file may end in alignment padding after the last tensor; every shorter prefix than the data's end fails.
  const end = Math.max(...[...full.tensors.values()].map((t) => t.data.byteOffset - ok.byteOffset + t.data.byteLength));
  assert.ok(end > ok.byteLength - 32);
  for (let n = 0; n < end; n++) {
    assert.throws(() => parseGguf(ok.subarray(0, n), 't.gguf'), (e: Error) => e.constructor === Error && /^t\.gguf: /.test(e.message) && !e.message.includes('\n'), `prefix of ${n} bytes`);
  }
  assert.doesNotThrow(() => parseGguf(ok));
});

test('fuzz: 4000 seeded random mutations are each loaded or refused with a plain one-line Error', () => {
  const rng = new Rng(13);
  const base = sample();
  let refused = 0;
  const t0 = Date.now();
  for (let c = 0; c < 4000; c++) {
    const b = base.slice();
    const edits = 1 + Math.floor(rng.uniform() * 4);
    for (let e = 0; e < edits; e++) {
      const at = Math.floor(rng.uniform() * b.byteLength);
      const kind = rng.uniform();
      if (kind < 0.5) b[at] = Math.floor(rng.uniform() * 256);
      else if (kind < 0.75 && at + 8 <= b.byteLength) u64At(b, at, BigInt(Math.floor(rng.uniform() * 2 ** 53)) << BigInt(Math.floor(rng.uniform() * 11)));
      else if (at + 4 <= b.byteLength) u32At(b, at, Math.floor(rng.uniform() * 2 ** 32));
    }
    const cut = rng.uniform() < 0.2 ? Math.floor(rng.uniform() * b.byteLength) : b.byteLength;
    try {
      const f = parseGguf(b.subarray(0, cut), 'f');
      for (const t of f.tensors.values()) dequantize(t.type, t.data, t.elements);
    } catch (e) {
      refused++;
      assert.equal((e as Error).constructor, Error, `case ${c}: ${(e as Error).constructor.name}: ${(e as Error).message}`);
      assert.ok(!(e as Error).message.includes('\n'), `case ${c}: multi-line message`);
    }
  }
  assert.ok(refused > 1000 && refused < 4000, `refused ${refused} of 4000 (both outcomes occur)`);
  assert.ok(Date.now() - t0 < 20000, 'fuzzing stays fast');
});
