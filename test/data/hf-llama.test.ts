// A hand-written LLaMA-2 style tokenizer.json: SentencePiece BPE with byte fallback and the "▁" space
// marker. Expected ids are derived by hand from the fixture's merge ranks (see comments).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HfTokenizer } from '../../src/data/hf-tokenizer.ts';
import { loadTokenizer, saveTokenizer } from '../../src/data/tokenizer-io.ts';

// ids: 0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF> (byte b has id 3 + b), then the pieces from 259.
const byteTokens = Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
const pieces = ['▁', 'h', 'e', 'l', 'o', 'w', 'r', 'd', '▁h', 'll', '▁he', '▁hell', '▁hello', '▁w', 'or', '▁wor', '▁worl', '▁world', 'ld'];
const ID = (piece: string) => 259 + pieces.indexOf(piece);
const BYTE = (b: number) => 3 + b;
// Ranks: "l d" (8) comes before "▁wor l" (9), so "▁world" is never reached from "world".
const merges = ['▁ h', 'l l', '▁h e', '▁he ll', '▁hell o', 'o r', '▁ w', '▁w or', 'l d', '▁wor l', '▁worl d'];

function llamaJson(style: 'normalizer' | 'metaspace') {
  const vocab: Record<string, number> = {};
  ['<unk>', '<s>', '</s>', ...byteTokens, ...pieces].forEach((t, i) => (vocab[t] = i));
  const added_tokens = ['<unk>', '<s>', '</s>'].map((content, id) => ({
    id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  }));
  const model = {
    type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null,
    fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges,
  };
  const post_processor = {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [], special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
  };
  if (style === 'normalizer') {
    // The original LLaMA-2 layout: the normalizer prepends "▁" and turns spaces into "▁".
    return {
      version: '1.0', truncation: null, padding: null, added_tokens,
      normalizer: { type: 'Sequence', normalizers: [
        { type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
      pre_tokenizer: null, post_processor,
      decoder: { type: 'Sequence', decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 }] },
      model,
    };
  }
  // The newer layout: a Metaspace pre-tokenizer/decoder does the same job.
  const metaspace = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false };
  return {
    version: '1.0', truncation: null, padding: null, added_tokens, normalizer: null,
    pre_tokenizer: metaspace, post_processor,
    decoder: { type: 'Sequence', decoders: [metaspace, { type: 'ByteFallback' }, { type: 'Fuse' }] },
    model,
  };
}

for (const style of ['normalizer', 'metaspace'] as const) {
  test(`LLaMA-style (${style}) encodes by merge rank with byte fallback`, () => {
    const tok = new HfTokenizer(llamaJson(style));
    // ▁ h e l l o -> ▁h (0), ll (1), ▁he (2), ▁hell (3), ▁hello (4)
    assert.deepEqual(tok.encode('hello'), [ID('▁hello')]);
    // ▁ w o r l d -> or (5), ▁w (6), ▁wor (7), ld (8); "▁wor l" (9) no longer applies
    assert.deepEqual(tok.encode('world'), [ID('▁wor'), ID('ld')]);
    // the space becomes "▁", which merges with the following "w"
    assert.deepEqual(tok.encode('hello world'), [ID('▁hello'), ID('▁wor'), ID('ld')]);
    // é = C3 A9 is not a piece: it falls back to its UTF-8 bytes
    assert.deepEqual(tok.encode('hé'), [ID('▁h'), BYTE(0xc3), BYTE(0xa9)]);
    // A leading space: the normalizer always prepends, giving "▁▁hello" whose first "▁" has no partner
    // (only "▁ h" merges); Metaspace prepends only when the text does not already start with "▁".
    const lead = style === 'normalizer' ? [ID('▁'), ID('▁hello')] : [ID('▁hello')];
    assert.deepEqual(tok.encode(' hello'), lead);
    // 😀 = F0 9F 98 80
    assert.deepEqual(tok.encode('😀'), [ID('▁'), BYTE(0xf0), BYTE(0x9f), BYTE(0x98), BYTE(0x80)]);
    for (const s of ['hello', 'hello world', 'hé', '😀', 'do, wow']) assert.equal(tok.decode(tok.encode(s)), s);
    assert.equal(tok.bosId, 1);
    assert.equal(tok.eosId, 2);
    assert.equal(tok.vocabSize, 3 + 256 + pieces.length);
  });
}

test('streaming decode joins byte-fallback pieces into whole characters', () => {
  const tok = new HfTokenizer(llamaJson('normalizer'));
  const ids = tok.encode('hello 😀 world');
  const stream = tok.decodeStream();
  const parts = ids.map((id) => stream.push(id));
  parts.push(stream.flush());
  assert.equal(parts.join(''), 'hello 😀 world');
  assert.ok(parts.every((p) => !p.includes('\uFFFD')));
});

test('loads from a folder with tokenizer_config.json, and saves back unchanged', () => {
  const dir = mkdtempSync(join(tmpdir(), 'frugal-llama-'));
  const json = llamaJson('normalizer');
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
  // The config can name a different EOS; the loader must honour it.
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: { content: '<s>' }, eos_token: '<unk>' }));
  const tok = loadTokenizer(dir);
  assert.ok(tok instanceof HfTokenizer);
  assert.equal(tok.bosId, 1);
  assert.equal(tok.eosId, 0);
  assert.deepEqual(tok.encode('hello world'), [ID('▁hello'), ID('▁wor'), ID('ld')]);
  const out = join(dir, 'copy', 'tokenizer.json');
  saveTokenizer(tok, out);
  const back = loadTokenizer(out);
  assert.deepEqual(back.toJSON(), json);
  assert.equal(back.id(), tok.id());
  assert.notEqual(back.id(), new HfTokenizer(llamaJson('metaspace')).id());
});

test('missing, corrupt and non-tokenizer files give clear errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'frugal-badtok-'));
  assert.throws(() => loadTokenizer(join(dir, 'nope.json')), /Tokenizer not found: .*nope\.json does not exist/);
  assert.throws(() => loadTokenizer(dir), /No tokenizer\.json in folder/);
  const truncated = join(dir, 'truncated.json');
  writeFileSync(truncated, JSON.stringify(llamaJson('normalizer')).slice(0, 500));
  assert.throws(() => loadTokenizer(truncated), /truncated\.json is not valid JSON .*corrupt or truncated/);
  const notTok = join(dir, 'config.json');
  writeFileSync(notTok, JSON.stringify({ hidden_size: 8 }));
  assert.throws(() => loadTokenizer(notTok), /has no "model" section/);
  const tok = new HfTokenizer(llamaJson('normalizer'));
  assert.throws(() => tok.decode([9999]), /outside this tokenizer's vocabulary/);
});
