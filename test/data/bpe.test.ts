import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer as HfRuntime } from '@huggingface/tokenizers';
import { trainBpe } from '../../src/data/bpe-train.ts';
import { ByteLevelBpeTokenizer } from '../../src/data/bpe.ts';
import { byteAlphabet, BYTE_TO_CHAR, preTokenize, utf8 } from '../../src/data/byte-level.ts';
import { loadTokenizer, saveTokenizer } from '../../src/data/tokenizer-io.ts';
import { ByteTokenizer } from '../../src/data/tokenizer.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { defaultCorpusDocuments } from '../../src/data/corpus.ts';

// English prose from the embedded corpus (public-domain State of the Union addresses and Moby Dick).
const prose = defaultCorpusDocuments().join('\n');
const trainText = prose.slice(0, 300_000);
const heldOut = prose.slice(900_000, 960_000);
const tok = trainBpe(trainText, { vocabSize: 800 });

// Lone surrogates cannot be UTF-8 encoded; they come back as U+FFFD, like TextEncoder does.
const wellFormed = (s: string) =>
  s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\uFFFD');

function randomUnicode(rng: Rng, n: number): string {
  const ranges: [number, number][] = [
    [0x20, 0x7e], [0x0, 0x1f], [0xa0, 0x2ff], [0x4e00, 0x9fff], [0x1f600, 0x1f64f], [0xd800, 0xdfff], [0x10000, 0x10ffff],
  ];
  let s = '';
  for (let i = 0; i < n; i++) {
    const [lo, hi] = ranges[rng.int(ranges.length)];
    s += String.fromCodePoint(lo + rng.int(hi - lo + 1));
  }
  return s;
}

// Reference trainer: recounts every pair from scratch each step (slow, obviously correct), with the
// same id assignment and tie-breaking (highest count, then smallest (left id, right id)).
function naiveMerges(text: string, vocabSize: number, specials: string[]): [string, string][] {
  const tokens = [...specials, ...byteAlphabet()];
  const idOf = new Map(tokens.map((t, i) => [t, i]));
  const counts = new Map<string, number>();
  for (const w of preTokenize(text)) counts.set(w, (counts.get(w) ?? 0) + 1);
  const words = [...counts].map(([w, f]) => ({ s: Array.from(utf8(w), (b) => idOf.get(BYTE_TO_CHAR[b])!), f }));
  const merges: [string, string][] = [];
  while (tokens.length < vocabSize) {
    const pc = new Map<string, number>();
    for (const { s, f } of words) for (let i = 0; i + 1 < s.length; i++) pc.set(`${s[i]},${s[i + 1]}`, (pc.get(`${s[i]},${s[i + 1]}`) ?? 0) + f);
    let best: [number, number] | null = null;
    let bestC = 0;
    for (const [k, c] of pc) {
      const [a, b] = k.split(',').map(Number);
      if (c > bestC || (c === bestC && best && (a < best[0] || (a === best[0] && b < best[1])))) {
        best = [a, b];
        bestC = c;
      }
    }
    if (!best || bestC < 2) break;
    const merged = tokens[best[0]] + tokens[best[1]];
    let id = idOf.get(merged);
    if (id === undefined) {
      id = tokens.length;
      tokens.push(merged);
      idOf.set(merged, id);
    }
    merges.push([tokens[best[0]], tokens[best[1]]]);
    for (const w of words) {
      const out: number[] = [];
      for (let i = 0; i < w.s.length; i++) {
        if (i + 1 < w.s.length && w.s[i] === best[0] && w.s[i + 1] === best[1]) {
          out.push(id);
          i++;
        } else out.push(w.s[i]);
      }
      w.s = out;
    }
  }
  return merges;
}

test('incremental trainer learns the same merges as a from-scratch recount', () => {
  const text = prose.slice(0, 20_000) + ' aaaa aaaaa aaaaaa abab ababab';
  const fast = trainBpe(text, { vocabSize: 420 });
  assert.deepEqual(fast.merges, naiveMerges(text, 420, ['<|endoftext|>']));
});

test('trained vocabulary size, special token ids and compression', () => {
  assert.equal(tok.vocabSize, 800);
  assert.equal(tok.eosId, 0);
  assert.deepEqual(tok.encode('a<|endoftext|>b'), [...tok.encode('a'), 0, ...tok.encode('b')]);
  const ids = tok.encode(heldOut);
  // 800 tokens on Shakespeare give well over 2 bytes per token; raw bytes would be 1.
  assert.ok(ids.length < 0.5 * utf8(heldOut).length, `${ids.length} tokens for ${heldOut.length} bytes`);
});

test('encode/decode round trip on held-out text and arbitrary unicode', () => {
  assert.equal(tok.decode(tok.encode(heldOut)), heldOut);
  const fixed = 'emoji 😀👍🏽 family 👨‍👩‍👧 CJK 世界你好 Zalgo e\u0301\u0302 tab\tnul\u0000 lone \ud800 and \udfff end';
  assert.equal(tok.decode(tok.encode(fixed)), wellFormed(fixed));
  const rng = new Rng(7);
  for (let i = 0; i < 30; i++) {
    const s = randomUnicode(rng, 1 + rng.int(200));
    assert.equal(tok.decode(tok.encode(s)), wellFormed(s));
  }
  // Words longer than the scan limit go through the heap merge path.
  const long = 'the'.repeat(200) + ' ' + ' '.repeat(300) + 'x' + '1234567890'.repeat(30);
  assert.equal(tok.decode(tok.encode(long)), long);
});

test('streaming decode emits only complete characters and matches decode', () => {
  const s = 'Héllo 😀 世界!';
  const ids = tok.encode(s);
  const stream = tok.decodeStream();
  const pieces = ids.map((id) => stream.push(id));
  pieces.push(stream.flush());
  assert.equal(pieces.join(''), s);
  assert.ok(pieces.every((p) => !p.includes('\uFFFD')));
});

test('training is deterministic and independent of document order', () => {
  const a = prose.slice(0, 50_000);
  const b = prose.slice(50_000, 100_000);
  const t1 = trainBpe([a, b], { vocabSize: 500 });
  const t2 = trainBpe([b, a], { vocabSize: 500 });
  assert.equal(t1.id(), t2.id());
  assert.deepEqual(t1.toJSON(), t2.toJSON());
  assert.notEqual(t1.id(), trainBpe([a, b], { vocabSize: 501 }).id());
});

test('tokenizer.json round trip is exact', () => {
  const dir = mkdtempSync(join(tmpdir(), 'frugal-bpe-'));
  const file = join(dir, 'tokenizer.json');
  saveTokenizer(tok, file);
  const loaded = loadTokenizer(dir);
  assert.ok(loaded instanceof ByteLevelBpeTokenizer);
  assert.deepEqual(loaded.toJSON(), tok.toJSON());
  assert.equal(loaded.id(), tok.id());
  assert.equal(loaded.vocabSize, tok.vocabSize);
  assert.equal(loaded.eosId, tok.eosId);
  assert.deepEqual(loaded.encode(heldOut), tok.encode(heldOut));
  const again = join(dir, 'again.json');
  saveTokenizer(loaded, again);
  assert.equal(readFileSync(again, 'utf8'), readFileSync(file, 'utf8'));
});

test('same ids and text as @huggingface/tokenizers on our tokenizer.json', () => {
  const hf = new HfRuntime(tok.toJSON(), {});
  const samples = [
    heldOut.slice(0, 20_000),
    'Hello 😀 世界 <|endoftext|>  \n\n  x' + ' '.repeat(70) + 'the'.repeat(100) + "we'll don't 12345678",
  ];
  for (const s of samples) {
    const ids = tok.encode(s);
    assert.deepEqual(ids, hf.encode(s, { add_special_tokens: false }).ids);
    assert.equal(hf.decode(ids, { clean_up_tokenization_spaces: false }), tok.decode(ids));
  }
});

test('ByteTokenizer: raw bytes, and its tokenizer.json loads back as an equivalent tokenizer', () => {
  const bt = new ByteTokenizer();
  const s = 'hé 😀';
  assert.deepEqual(bt.encode(s), Array.from(Buffer.from(s, 'utf8')));
  assert.equal(bt.decode(bt.encode(s)), s);
  const dir = mkdtempSync(join(tmpdir(), 'frugal-bytes-'));
  saveTokenizer(bt, join(dir, 'tokenizer.json'));
  const loaded = loadTokenizer(join(dir, 'tokenizer.json'));
  assert.equal(loaded.vocabSize, 256);
  assert.equal(loaded.id(), bt.id());
  assert.deepEqual(loaded.encode(s + ' the end'), bt.encode(s + ' the end'));
  assert.throws(() => bt.decode([256]), /not a byte/);
});

test('bad inputs give clear errors', () => {
  assert.throws(() => trainBpe('abc', { vocabSize: 100 }), /vocabSize must be an integer from 257/);
  assert.throws(() => trainBpe('', { vocabSize: 300 }), /training text is empty/);
  assert.throws(() => trainBpe('abc', { vocabSize: 300, specialTokens: ['x', 'x'] }), /distinct/);
  assert.throws(() => tok.decode([tok.vocabSize]), /outside this tokenizer's vocabulary/);
});
