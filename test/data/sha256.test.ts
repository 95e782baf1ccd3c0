import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { sha256Hex } from '../../src/data/sha256.ts';
import { Rng } from '../../src/tensor/rng.ts';

test('sha256Hex equals node:crypto on empty, block-boundary, multi-block and non-ASCII inputs', () => {
  const rng = new Rng(7);
  const cases = ['', 'abc', 'a'.repeat(55), 'a'.repeat(56), 'a'.repeat(64), 'a'.repeat(1000), 'héllo wörld ✓ 𝄞'];
  for (let i = 0; i < 50; i++) {
    const n = Math.floor(rng.uniform() * 300);
    cases.push(Array.from({ length: n }, () => String.fromCharCode(32 + Math.floor(rng.uniform() * 2000))).join(''));
  }
  for (const s of cases) assert.equal(sha256Hex(s), createHash('sha256').update(s).digest('hex'), `input of length ${s.length}`);
});
