import { test } from 'node:test';
import assert from 'node:assert/strict';
import { trainBpe } from '../../src/data/bpe-train.ts';
import { BatchIterator, PackedDataset, tokenizeDocuments, type Batch } from '../../src/data/packing.ts';
import { ByteTokenizer } from '../../src/data/tokenizer.ts';

const range = (n: number) => Int32Array.from({ length: n }, (_, i) => i);

test('tokenizeDocuments appends EOS after each document only when the tokenizer has one', () => {
  const docs = ['the cat sat', 'on the mat'];
  const bytes = tokenizeDocuments(docs, new ByteTokenizer());
  assert.deepEqual(Array.from(bytes), [...Buffer.from('the cat sat'), ...Buffer.from('on the mat')]);
  const bpe = trainBpe('the cat sat on the mat '.repeat(20), { vocabSize: 270 });
  const ids = Array.from(tokenizeDocuments(docs, bpe));
  assert.deepEqual(ids, [...bpe.encode(docs[0]), bpe.eosId, ...bpe.encode(docs[1]), bpe.eosId]);
});

test('PackedDataset: sequences of ctx + 1 tokens, targets shifted by one', () => {
  const ds = new PackedDataset(range(23), 5); // (23 - 1) / 5 -> 4 sequences
  assert.equal(ds.numSequences, 4);
  const inputs = new Int32Array(5);
  const targets = new Int32Array(5);
  ds.write(3, inputs, targets, 0);
  assert.deepEqual(Array.from(inputs), [15, 16, 17, 18, 19]);
  assert.deepEqual(Array.from(targets), [16, 17, 18, 19, 20]);
  assert.throws(() => new PackedDataset(range(5), 5), /has 5 tokens but one sequence needs ctx \+ 1 = 6/);
  assert.throws(() => new PackedDataset(range(5), 0), /positive integer/);
});

test('BatchIterator: each epoch is a seeded permutation of all sequences', () => {
  const ds = new PackedDataset(range(4 * 12 + 1), 4); // 12 sequences
  const seen = (it: BatchIterator) => {
    const firsts: number[] = [];
    for (let b = 0; b < 4; b++) {
      const batch = it.next();
      assert.equal(batch.inputs.length, 3 * 4);
      for (let r = 0; r < 3; r++) firsts.push(batch.inputs[r * 4] / 4);
      for (let i = 0; i < batch.inputs.length; i++) assert.equal(batch.targets[i], batch.inputs[i] + 1);
    }
    return firsts;
  };
  const it = new BatchIterator(ds, { batchSize: 3, seed: 1 });
  const e0 = seen(it);
  const e1 = seen(it);
  assert.deepEqual([...e0].sort((a, b) => a - b), Array.from(range(12)));
  assert.deepEqual([...e1].sort((a, b) => a - b), Array.from(range(12)));
  assert.notDeepEqual(e0, e1);
  assert.equal(it.state().epoch, 1);
  assert.deepEqual(seen(new BatchIterator(ds, { batchSize: 3, seed: 1 })), e0);
  assert.notDeepEqual(seen(new BatchIterator(ds, { batchSize: 3, seed: 2 })), e0);
  assert.deepEqual(seen(new BatchIterator(ds, { batchSize: 3, shuffle: false })), Array.from(range(12)));
});

test('BatchIterator resumes exactly, across epoch boundaries', () => {
  const ds = new PackedDataset(range(8 * 10 + 3), 8); // 10 sequences, batch 3: 3 batches per epoch, 1 left over
  const a = new BatchIterator(ds, { batchSize: 3, seed: 42 });
  assert.equal(a.batchesPerEpoch, 3);
  for (let i = 0; i < 5; i++) a.next();
  const saved = JSON.parse(JSON.stringify(a.state()));
  const rest: Batch[] = Array.from({ length: 7 }, () => a.next());
  const b = new BatchIterator(ds, { batchSize: 3, seed: 999 });
  b.next();
  b.restore(saved);
  for (const expected of rest) {
    const got = b.next();
    assert.deepEqual(got.inputs, expected.inputs);
    assert.deepEqual(got.targets, expected.targets);
  }
  assert.deepEqual(b.state(), a.state());
});

test('BatchIterator rejects impossible batches and malformed states', () => {
  const ds = new PackedDataset(range(17), 4); // 4 sequences
  assert.throws(() => new BatchIterator(ds, { batchSize: 5 }), /Batch size 5 exceeds the 4 sequences/);
  assert.throws(() => new BatchIterator(ds, { batchSize: 0 }), /positive integer/);
  const it = new BatchIterator(ds, { batchSize: 2 });
  assert.throws(() => it.restore({ epoch: 0, index: 99, rngState: [1, 2, 3, 4] }), /malformed or belongs to a different dataset/);
  assert.throws(() => it.restore({ epoch: 0, index: 0, rngState: [] }), /malformed/);
});
