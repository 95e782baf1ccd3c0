import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeDirAtomic, writeFileAtomic } from '../../src/io/atomic.ts';
import { throwsClear } from './fixtures.ts';

test('writeFileAtomic replaces a file whole, and a failed write leaves the old file and no temp file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'frugal-atomic-'));
  try {
    const path = join(dir, 'f.bin');
    writeFileSync(path, 'old contents');
    writeFileAtomic(path, [Uint8Array.of(1, 2), Uint8Array.of(3)]);
    assert.deepEqual([...readFileSync(path)], [1, 2, 3]);
    writeFileAtomic(path, 'text');
    assert.equal(readFileSync(path, 'utf8'), 'text');
    // The second chunk fails after the first was written to the temp file.
    throwsClear(() => writeFileAtomic(path, [Uint8Array.of(9), 'oops' as unknown as Uint8Array]), /failed to write .*f\.bin: data to write must be/);
    assert.equal(readFileSync(path, 'utf8'), 'text');
    assert.deepEqual(readdirSync(dir), ['f.bin']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('writeDirAtomic creates or replaces a folder, keeping only the entries asked for', () => {
  const root = mkdtempSync(join(tmpdir(), 'frugal-atomic-'));
  try {
    const dir = join(root, 'out');
    writeDirAtomic(dir, { 'a.txt': 'A', 'b.txt': 'B' });
    assert.deepEqual(readdirSync(dir).sort(), ['a.txt', 'b.txt']);
    writeDirAtomic(dir, { 'a.txt': 'A2' }, { keep: (n) => n === 'b.txt' });
    assert.deepEqual(readdirSync(dir).sort(), ['a.txt', 'b.txt']);
    assert.equal(readFileSync(join(dir, 'a.txt'), 'utf8'), 'A2');
    writeDirAtomic(dir, { 'c.txt': 'C' });
    assert.deepEqual(readdirSync(dir), ['c.txt']);
    assert.deepEqual(readdirSync(root), ['out']);
    throwsClear(() => writeDirAtomic(dir, { '../escape.txt': 'x' }), /"..\/escape.txt" is not a plain file name/);
    writeFileSync(join(root, 'plain'), 'x');
    throwsClear(() => writeDirAtomic(join(root, 'plain'), { 'a.txt': 'A' }), /a file with that name exists/);
    throwsClear(() => writeDirAtomic(join(root, 'no', 'such'), { 'a.txt': 'A' }), /directory .*no does not exist/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
