import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openZip } from '../../src/io/zip.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { buildZip, throwsClear } from './fixtures.ts';

function randomBytes(n: number, rng: Rng): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = rng.nextU32() & 0xff;
  return b;
}

// Compressible content so deflate really changes the bytes.
function text(n: number): Uint8Array {
  return new Uint8Array(Buffer.from('state dict '.repeat(Math.ceil(n / 11)).slice(0, n)));
}

for (const zip64 of [false, true]) {
  test(`reads stored and deflated entries${zip64 ? ' (zip64 records)' : ''}`, () => {
    const rng = new Rng(5);
    const files = [
      { name: 'top/data.pkl', data: randomBytes(300, rng) },
      { name: 'top/data/0', data: text(5000), deflate: true },
      { name: 'top/empty', data: new Uint8Array(0) },
      { name: 'top/data/1', data: randomBytes(1000, rng), deflate: true },
    ];
    const bytes = buildZip(files, { zip64 });
    const zip = openZip(bytes);
    assert.deepEqual(zip.entries.map((e) => e.name), files.map((f) => f.name));
    assert.ok(zip.get('top/data/0')!.compressedSize < 5000, 'deflate should have shrunk the text entry');
    for (const f of files) assert.deepEqual(zip.read(f.name), f.data, f.name);
    throwsClear(() => zip.read('top/missing'), /has no entry named "top\/missing"/);
  });
}

test('truncation at every cut point fails clearly', () => {
  const rng = new Rng(6);
  const bytes = buildZip([
    { name: 'a/data.pkl', data: randomBytes(100, rng) },
    { name: 'a/data/0', data: text(400), deflate: true },
  ]);
  for (let cut = 0; cut < bytes.byteLength; cut++) {
    const part = bytes.subarray(0, cut);
    throwsClear(() => {
      const zip = openZip(part);
      for (const e of zip.entries) zip.read(e);
    }, /is not a readable zip archive/);
  }
});

test('a flipped byte in entry data is caught by the CRC or by inflate', () => {
  const rng = new Rng(7);
  const payload = text(2000);
  const clean = buildZip([{ name: 'x/stored', data: randomBytes(64, rng) }, { name: 'x/packed', data: payload, deflate: true }]);
  const zip = openZip(clean);
  const storedAt = 30 + 'x/stored'.length;
  const packedEntry = zip.get('x/packed')!;
  const packedAt = packedEntry.localHeaderOffset + 30 + 'x/packed'.length;
  for (const at of [storedAt, storedAt + 63, packedAt, packedAt + Math.floor(packedEntry.compressedSize / 2)]) {
    const bad = clean.slice();
    bad[at] ^= 0x5a;
    const z = openZip(bad);
    throwsClear(() => {
      for (const e of z.entries) z.read(e);
    }, /CRC-32|does not inflate|inflates to/);
  }
});

test('random bytes, unsupported methods, encryption and duplicate names are refused', () => {
  const rng = new Rng(8);
  for (let i = 0; i < 200; i++) throwsClear(() => openZip(randomBytes(rng.nextU32() % 300, rng)), /is not a readable zip archive/);

  const base = buildZip([{ name: 'f', data: text(10) }]);
  const cdAt = base.byteLength - 22 - 46 - 1;
  const method = base.slice();
  Buffer.from(method.buffer).writeUInt16LE(12, cdAt + 10); // bzip2 in the central directory
  Buffer.from(method.buffer).writeUInt16LE(12, 8); // and in the local header
  throwsClear(() => openZip(method).read('f'), /compression method 12; only stored \(0\) and deflate \(8\)/);

  const enc = base.slice();
  Buffer.from(enc.buffer).writeUInt16LE(1, cdAt + 8);
  throwsClear(() => openZip(enc), /entry "f" is encrypted/);

  throwsClear(() => openZip(buildZip([{ name: 'f', data: text(3) }, { name: 'f', data: text(4) }])), /two entries named "f"/);
});
