import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  defaultCorpus, defaultCorpusDocuments, loadTextDataset, splitDocuments, splitTail, VALIDATION_EVERY,
} from '../../src/data/corpus.ts';

test('default corpus: fixed, disjoint split of State of the Union addresses and Moby Dick', () => {
  const docs = defaultCorpusDocuments();
  const c = defaultCorpus();
  assert.equal(c.trainDocs.length + c.validationDocs.length, docs.length);
  assert.equal(c.validationDocs.length, Math.floor(docs.length / VALIDATION_EVERY));
  // Deterministic: a fresh read splits identically.
  const again = splitDocuments(defaultCorpusDocuments(), 'again');
  assert.deepEqual(again.validationDocs, c.validationDocs);
  assert.equal(again.train, c.train);
  // Disjoint: no held-out document appears among the training documents.
  const trainSet = new Set(c.trainDocs);
  assert.ok(c.validationDocs.every((d) => !trainSet.has(d)));
  assert.equal(c.validationDocs[0], docs[VALIDATION_EVERY - 1]);
  // Both sources are present: the 1790 address opens the corpus, Moby Dick's first chapter follows later.
  assert.match(docs[0], /^Fellow-Citizens of the Senate and House of Representatives/);
  assert.ok(c.train.includes('Call me Ishmael.'));
  assert.ok(c.train.length > 5_000_000, `train has ${c.train.length} characters`);
});

test('split helpers', () => {
  const docs = Array.from({ length: 45 }, (_, i) => `doc ${i}`);
  const s = splitDocuments(docs, 'x');
  assert.deepEqual(s.validationDocs, ['doc 19', 'doc 39']);
  assert.equal(s.trainDocs.length, 43);
  // Fewer than 20 documents: the last one is held out.
  assert.deepEqual(splitDocuments(['a', 'b', 'c'], 'y').validationDocs, ['c']);
  assert.throws(() => splitDocuments(['only'], 'z'), /needs at least 2/);
  const text = Array.from({ length: 100 }, (_, i) => `line ${i}`).join('\n') + '\n';
  const t = splitTail(text, 'lines');
  assert.equal(t.train + t.validation, text);
  assert.ok(t.validation.startsWith('line 9'), t.validation.slice(0, 10));
  assert.ok(t.validation.length < 0.06 * text.length);
});

test('loadTextDataset reads .txt, .jsonl with a chosen field, and folders', () => {
  const dir = mkdtempSync(join(tmpdir(), 'frugal-text-'));
  writeFileSync(join(dir, 'a.txt'), 'first file');
  writeFileSync(join(dir, 'b.jsonl'), '{"text":"one"}\n\n{"text":"two","id":2}\n');
  writeFileSync(join(dir, 'ignored.csv'), 'x,y');
  mkdirSync(join(dir, 'sub'));
  writeFileSync(join(dir, 'sub', 'c.jsonl'), '{"body":"three","text":"3"}\n');
  assert.deepEqual(loadTextDataset(join(dir, 'a.txt')).documents, ['first file']);
  assert.deepEqual(loadTextDataset(join(dir, 'sub', 'c.jsonl'), { field: 'body' }).documents, ['three']);
  assert.deepEqual(loadTextDataset(dir).documents, ['first file', 'one', 'two', '3']);
});

test('loadTextDataset errors name the problem and the line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'frugal-badtext-'));
  assert.throws(() => loadTextDataset(join(dir, 'missing.txt')), /missing\.txt does not exist/);
  assert.throws(() => loadTextDataset(dir), /contains no \.txt or \.jsonl files/);
  writeFileSync(join(dir, 'empty.txt'), '  \n');
  assert.throws(() => loadTextDataset(join(dir, 'empty.txt')), /contains no text/);
  writeFileSync(join(dir, 'bad.jsonl'), '{"text":"ok"}\n{"text": oops}\n');
  assert.throws(() => loadTextDataset(join(dir, 'bad.jsonl')), /bad\.jsonl:2: invalid JSON/);
  writeFileSync(join(dir, 'field.jsonl'), '{"text":"ok"}\n\n{"content":"x"}\n');
  assert.throws(() => loadTextDataset(join(dir, 'field.jsonl')), /field\.jsonl:3: no string field "text"/);
});
