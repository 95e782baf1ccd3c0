import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PickleCallable, PickleTuple, unpickle } from '../../src/io/pickle.ts';
import { Rng } from '../../src/tensor/rng.ts';
import { PickleWriter, throwsClear } from './fixtures.ts';

const none = new Map<string, unknown>();
const load = (bytes: Uint8Array, globals: ReadonlyMap<string, unknown> = none) => unpickle(bytes, { source: 'test.pkl', globals });

test('decodes the data opcodes: dicts, lists, tuples, ints of every width, floats, bools, None, memo', () => {
  const w = new PickleWriter().proto(2).emptyDict().put().mark();
  w.str('ints').emptyList().put().mark().int(7).int(300).int(-5).int(70000).long(2n ** 40n).long(-(2n ** 40n)).long(2n ** 70n).appends();
  w.str('tuple').str('a').str('é').tuple2();
  w.str('float').float(-1.25);
  w.str('flags').mark().bool(true).bool(false).none().tuple();
  w.str('again').get(1); // the memoised list
  w.setitems().stop();
  const v = load(w.toBytes()) as Map<string, unknown>;
  assert.ok(v instanceof Map);
  assert.deepEqual(v.get('ints'), [7, 300, -5, 70000, 2 ** 40, -(2 ** 40), 2n ** 70n]);
  assert.deepEqual(v.get('tuple'), new PickleTuple(['a', 'é']));
  assert.equal(v.get('float'), -1.25);
  assert.deepEqual(v.get('flags'), new PickleTuple([true, false, null]));
  assert.equal(v.get('again'), v.get('ints'), 'BINGET returns the same object');
});

test('allowed globals are called through REDUCE; the result is what the TypeScript function returns', () => {
  const globals = new Map<string, unknown>([['collections.OrderedDict', new PickleCallable('collections.OrderedDict', (a) => ({ made: a.length }))]]);
  const viaGlobal = new PickleWriter().proto(2).global('collections', 'OrderedDict').emptyTuple().reduce().stop();
  assert.deepEqual(load(viaGlobal.toBytes(), globals), { made: 0 });
  const viaStack = new PickleWriter().proto(4).stackGlobal('collections', 'OrderedDict').emptyTuple().reduce().stop();
  assert.deepEqual(load(viaStack.toBytes(), globals), { made: 0 });
});

test('any global outside the allow-list is refused by name before anything runs', () => {
  let called = false;
  const globals = new Map<string, unknown>([['collections.OrderedDict', new PickleCallable('collections.OrderedDict', () => (called = true))]]);
  const cases: [PickleWriter, string][] = [
    [new PickleWriter().proto(2).global('os', 'system').str('echo pwned').bytes(0x85).reduce().stop(), 'os.system'],
    [new PickleWriter().proto(2).global('posix', 'system').str('id').bytes(0x85).reduce().stop(), 'posix.system'],
    [new PickleWriter().proto(4).stackGlobal('builtins', 'eval').str('1+1').bytes(0x85).reduce().stop(), 'builtins.eval'],
    [new PickleWriter().proto(2).global('torch._tensor', '_rebuild_from_type_v2').stop(), 'torch._tensor._rebuild_from_type_v2'],
    // The refusal happens at the GLOBAL opcode even when an allowed call comes first.
    [new PickleWriter().proto(2).global('collections', 'OrderedDict').global('subprocess', 'Popen').stop(), 'subprocess.Popen'],
  ];
  for (const [w, name] of cases) {
    const e = throwsClear(() => load(w.toBytes(), globals), /^refusing to load test\.pkl: pickle references /);
    assert.equal(e.message, `refusing to load test.pkl: pickle references ${name}; only tensor state dicts are accepted`);
  }
  assert.equal(called, false);
});

test('unknown and refused opcodes, malformed streams and misuse fail clearly', () => {
  const cases: [Uint8Array, RegExp][] = [
    [Uint8Array.of(0x80, 2, 0xff), /unknown pickle opcode 0xff at byte 2/],
    [Uint8Array.of(0x80, 2, 0x81), /opcode NEWOBJ \(0x81\) at byte 2 is not accepted/],
    [Uint8Array.of(0x80, 2, 0x69), /opcode INST \(0x69\)/],
    [Uint8Array.of(0x80, 2, 0x7d), /the pickle is truncated/],
    [Uint8Array.of(0x80, 2, 0x58, 0xff, 0xff, 0xff, 0x7f), /the pickle is truncated/],
    [Uint8Array.of(0x80, 2, 0x2e), /pops from an empty stack/],
    [Uint8Array.of(0x80, 2, 0x74), /needs a MARK/],
    [Uint8Array.of(0x80, 2, 0x68, 9, 0x2e), /memo slot 9 is read before it is written/],
    [Uint8Array.of(0x80, 2, 0x4e, 0x29, 0x52, 0x2e), /REDUCE at byte 4 calls a None, which is not callable/],
    [Uint8Array.of(0x80, 2, 0x5d, 0x4e, 0x4e, 0x73, 0x2e), /SETITEM\(S\) at byte 5 targets a list/],
    [Uint8Array.of(0x80, 2, 0x7d, 0x4e, 0x62, 0x2e), /BUILD at byte 4 sets state on a dict, which is not allowed/],
    [Uint8Array.of(0x80, 2, 0x4e, 0x51, 0x2e), /BINPERSID at byte 3 but this pickle may not reference external data/],
    [Uint8Array.of(0x80, 2, 0x8c, 2, 0xc3, 0x28, 0x2e), /not valid UTF-8/],
    [Uint8Array.of(0x80, 2, 0x8a, 200, ...new Array(200).fill(1), 0x2e), /an integer of 200 bytes is too large/],
    [Uint8Array.of(0x80, 2, 0x63, 0x6f, 0x73), /truncated inside a text field/],
  ];
  for (const [bytes, pattern] of cases) throwsClear(() => load(bytes), /^cannot load test\.pkl: /, pattern);
});

test('random byte streams end in a value or a clear error, never a hang or a crash', () => {
  const rng = new Rng(9);
  const globals = new Map<string, unknown>([['collections.OrderedDict', new PickleCallable('collections.OrderedDict', () => new Map())]]);
  let errors = 0;
  for (let i = 0; i < 3000; i++) {
    const n = 1 + (rng.nextU32() % 64);
    const b = new Uint8Array(n);
    for (let j = 0; j < n; j++) b[j] = rng.nextU32() & 0xff;
    try {
      load(b, globals);
    } catch (e) {
      errors++;
      assert.ok(e instanceof Error && e.constructor === Error, `non-Error thrown: ${String(e)}`);
      assert.match(e.message, /^(cannot load|refusing to load) test\.pkl: /);
    }
  }
  assert.ok(errors > 2900, `random bytes should almost always be rejected (${errors} of 3000)`);
});
