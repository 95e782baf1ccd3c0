import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readTorchBin } from '../../src/io/torch-bin.ts';
import { readSafetensors } from '../../src/io/safetensors.ts';
import { f32ToF16Bits } from '../../src/io/raw.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { PickleWriter, assertMatchesGoldenParams, bytesOf, golden, stateDictPickle, throwsClear, torchArchive } from './fixtures.ts';

const f32Storage = (values: number[]) => bytesOf(Float32Array.from(values));

test('golden pytorch_model.bin holds exactly the param.* tensors of fbi_llama_tiny', () => {
  const ref = readSafetensors(golden('fbi_llama_tiny.safetensors')).tensors;
  assertMatchesGoldenParams(readTorchBin(golden('fbi_checkpoint', 'pytorch_model.bin')), ref);
});

test('golden .bin truncated at many cut points or with a damaged byte fails clearly', () => {
  const path = golden('fbi_checkpoint', 'pytorch_model.bin');
  const bytes = new Uint8Array(readFileSync(path));
  for (let k = 0; k < 120; k++) {
    const cut = Math.floor((bytes.byteLength * k) / 120);
    throwsClear(() => readTorchBin(bytes.subarray(0, cut)), /not a readable zip archive|not a PyTorch checkpoint/);
  }
  for (const cut of [bytes.byteLength - 1, bytes.byteLength - 22, bytes.byteLength - 23]) {
    throwsClear(() => readTorchBin(bytes.subarray(0, cut)), /not a readable zip archive/);
  }
  // Damage inside a storage: the CRC check reports it instead of loading wrong numbers.
  const damaged = bytes.slice();
  damaged[Math.floor(bytes.byteLength / 2)] ^= 0xff;
  throwsClear(() => readTorchBin(damaged), /CRC-32|not a readable zip archive/);
});

test('strided and offset views become contiguous copies; tensors sharing a storage get independent data', () => {
  // Storage 0 holds a 2x3 matrix; "t" is its transpose (3x2, strides [1, 3]); "row" is row 1 (offset 3).
  const m = [0, 1, 2, 10, 11, 12];
  const pkl = stateDictPickle([
    { name: 'm', storage: { type: 'FloatStorage', key: '0', numel: 6 }, offset: 0, size: [2, 3], stride: [3, 1] },
    { name: 't', storage: { type: 'FloatStorage', key: '0', numel: 6 }, offset: 0, size: [3, 2], stride: [1, 3] },
    { name: 'row', storage: { type: 'FloatStorage', key: '0', numel: 6 }, offset: 3, size: [3], stride: [1] },
    { name: 'col', storage: { type: 'FloatStorage', key: '0', numel: 6 }, offset: 1, size: [2, 1], stride: [3, 7] },
    { name: 'bcast', storage: { type: 'FloatStorage', key: '0', numel: 6 }, offset: 2, size: [2, 2], stride: [0, 3] },
    { name: 'scalar', storage: { type: 'FloatStorage', key: '0', numel: 6 }, offset: 5, size: [], stride: [] },
  ]);
  const t = readTorchBin(torchArchive(pkl, { 0: f32Storage(m) }, { prefix: 'some_model_name' }));
  assert.deepEqual([...t.keys()], ['m', 't', 'row', 'col', 'bcast', 'scalar']);
  assert.deepEqual(t.get('t')!.shape, [3, 2]);
  assert.deepEqual([...t.get('t')!.data], [0, 10, 1, 11, 2, 12]);
  assert.deepEqual([...t.get('row')!.data], [10, 11, 12]);
  assert.deepEqual([...t.get('col')!.data], [1, 11]);
  assert.deepEqual([...t.get('bcast')!.data], [2, 12, 2, 12]);
  assert.deepEqual(t.get('scalar')!, { dtype: 'f32', shape: [], data: Float32Array.of(12) });
  t.get('m')!.data[0] = 99; // copies, not views of one another
  assert.equal(t.get('t')!.data[0], 0);
});

test('state_dict() form (OrderedDict + _metadata BUILD), Parameters, deflated entries and every storage dtype', () => {
  const specs = [
    { name: 'h', type: 'HalfStorage', bytes: bytesOf(Uint16Array.of(f32ToF16Bits(1.5), f32ToF16Bits(-0.25))), want: [1.5, -0.25] },
    { name: 'bf', type: 'BFloat16Storage', bytes: bytesOf(Uint16Array.of(0x4000, 0xbf80)), want: [2, -1] },
    { name: 'd', type: 'DoubleStorage', bytes: bytesOf(Float64Array.of(0.1, 3)), want: [Math.fround(0.1), 3] },
    { name: 'l', type: 'LongStorage', bytes: bytesOf(BigInt64Array.of(-2n, 2n ** 31n - 1n)), want: [-2, 2 ** 31 - 1] },
    { name: 'i', type: 'IntStorage', bytes: bytesOf(Int32Array.of(-7, 8)), want: [-7, 8] },
    { name: 's', type: 'ShortStorage', bytes: bytesOf(Int16Array.of(-300, 2)), want: [-300, 2] },
    { name: 'c', type: 'CharStorage', bytes: bytesOf(Int8Array.of(-1, 1)), want: [-1, 1] },
    { name: 'u', type: 'ByteStorage', bytes: Uint8Array.of(255, 0), want: [255, 0] },
    { name: 'b', type: 'BoolStorage', bytes: Uint8Array.of(1, 0), want: [1, 0] },
  ];
  const pkl = stateDictPickle(
    specs.map((s, k) => ({ name: s.name, storage: { type: s.type, key: String(k), numel: 2 }, offset: 0, size: [2], stride: [1], parameter: k % 2 === 0 })),
    { withMetadata: true },
  );
  const storages = Object.fromEntries(specs.map((s, k) => [String(k), s.bytes]));
  const t = readTorchBin(torchArchive(pkl, storages, { deflate: true }));
  for (const s of specs) {
    const got = t.get(s.name)!;
    assert.deepEqual([...got.data], s.want, s.name);
    assert.equal(got.dtype, /Half|BFloat|Double|Float/.test(s.type) ? 'f32' : 'i32', s.name);
  }
});

test('bad archives: hostile globals, out-of-range views, missing or short storages, int64 overflow', () => {
  const one = (over: Partial<Parameters<typeof stateDictPickle>[0][0]>, storage = f32Storage([1, 2, 3, 4])) =>
    torchArchive(stateDictPickle([{ name: 'w', storage: { type: 'FloatStorage', key: '0', numel: 4 }, offset: 0, size: [4], stride: [1], ...over }]), { 0: storage });

  const evil = new PickleWriter().proto(2).global('os', 'system').str('rm -rf ~').bytes(0x85).reduce().stop().toBytes();
  const e = throwsClear(() => readTorchBin(torchArchive(evil, {})), /refusing to load .*: pickle references os\.system; only tensor state dicts are accepted/);
  assert.ok(!e.message.includes('\n'));

  throwsClear(() => readTorchBin(one({ size: [5] })), /reaches element 4 of a 4-element storage/);
  throwsClear(() => readTorchBin(one({ offset: 2, size: [2, 2], stride: [2, 1] })), /reaches element 5 of a 4-element storage/);
  throwsClear(() => readTorchBin(one({ size: [2, 2], stride: [1] })), /size has 2 dims but stride has 1/);
  throwsClear(() => readTorchBin(one({ storage: { type: 'ComplexFloatStorage', key: '0', numel: 4 } })), /pickle references torch\.ComplexFloatStorage/);
  throwsClear(() => readTorchBin(one({}, f32Storage([1, 2, 3]))), /storage "0" holds 12 bytes, expected 4 x FloatStorage = 16/);
  throwsClear(() => readTorchBin(one({ storage: { type: 'FloatStorage', key: '9', numel: 4 } })), /storage "9" is missing/);
  throwsClear(
    () => readTorchBin(one({ storage: { type: 'LongStorage', key: '0', numel: 2 }, size: [2] }, bytesOf(BigInt64Array.of(1n, 2n ** 40n)))),
    /int64 value 1099511627776 .* does not fit in int32/,
  );
  // A nested checkpoint ({'model': state_dict}) is explained rather than half-loaded.
  const nested = new PickleWriter().proto(2).emptyDict().str('model').emptyDict().setitem().stop().toBytes();
  throwsClear(() => readTorchBin(torchArchive(nested, {})), /entry "model" holds a dict, not a tensor; only flat state dicts/);
  // A zip that is not a torch archive.
  throwsClear(() => readTorchBin(torchArchive(evil, {}, { prefix: 'a/b' })), /expected one "<folder>\/data\.pkl" entry, found 0/);
});

test('legacy (non-zip) torch.save files and other formats get a clear error', () => {
  // Legacy files start with PROTO 2 and LONG1 holding the magic number 0x1950a86a20f9469cfc6c.
  const legacy = new PickleWriter().proto(2).long(0x1950a86a20f9469cfc6cn).toBytes();
  throwsClear(() => readTorchBin(legacy), /legacy \(pre-1\.6, non-zip\) torch\.save format, which is not supported/);
  const rng = new Rng(10);
  for (let i = 0; i < 100; i++) {
    const b = new Uint8Array(rng.nextU32() % 100);
    for (let j = 0; j < b.length; j++) b[j] = rng.nextU32() & 0xff;
    throwsClear(() => readTorchBin(b), /is not a PyTorch checkpoint|not a readable zip archive|legacy/);
  }
  throwsClear(() => readTorchBin('/nonexistent/pytorch_model.bin'), /cannot open \/nonexistent\/pytorch_model\.bin: file not found/);
  throwsClear(() => readTorchBin(golden('fbi_checkpoint')), /fbi_checkpoint is a folder, not a file/);
});
