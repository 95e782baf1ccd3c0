// A restricted unpickler: it interprets the data-only subset of the pickle protocol (0-5 binary
// opcodes) that `torch.save` emits for state dicts. Nothing is ever executed: GLOBAL only looks a
// name up in the caller's allow-list, REDUCE only calls the TypeScript function found there, and
// any other name or opcode stops the load with an error before it has any effect.

/** A Python tuple (lists are plain arrays, dicts are Maps). */
export class PickleTuple {
  constructor(readonly items: unknown[]) {}
}

/** An allowed global that REDUCE may call; `call` receives the argument tuple's items. */
export class PickleCallable {
  constructor(readonly qualname: string, readonly call: (args: unknown[]) => unknown) {}
}

export interface UnpickleOptions {
  /** File or entry name used in error messages. */
  source: string;
  /** Allowed globals by "module.name": a PickleCallable for REDUCE targets, or any marker value. */
  globals: ReadonlyMap<string, unknown>;
  /** Resolves BINPERSID ids (torch: storage references). */
  persistentLoad?: (pid: unknown) => unknown;
  /** Applies BUILD state to an object; return false (or leave unset) to refuse. */
  build?: (obj: unknown, state: unknown) => boolean;
}

// Opcode names used in messages, including ones that are recognised but refused.
const OPCODE_NAMES: Record<number, string> = {
  0x80: 'PROTO', 0x95: 'FRAME', 0x2e: 'STOP', 0x7d: 'EMPTY_DICT', 0x5d: 'EMPTY_LIST', 0x29: 'EMPTY_TUPLE',
  0x28: 'MARK', 0x30: 'POP', 0x31: 'POP_MARK', 0x32: 'DUP', 0x58: 'BINUNICODE', 0x8c: 'SHORT_BINUNICODE',
  0x8d: 'BINUNICODE8', 0x54: 'BINSTRING', 0x55: 'SHORT_BINSTRING', 0x42: 'BINBYTES', 0x43: 'SHORT_BINBYTES',
  0x8e: 'BINBYTES8', 0x71: 'BINPUT', 0x72: 'LONG_BINPUT', 0x94: 'MEMOIZE', 0x68: 'BINGET', 0x6a: 'LONG_BINGET',
  0x4a: 'BININT', 0x4b: 'BININT1', 0x4d: 'BININT2', 0x8a: 'LONG1', 0x8b: 'LONG4', 0x88: 'NEWTRUE',
  0x89: 'NEWFALSE', 0x4e: 'NONE', 0x47: 'BINFLOAT', 0x74: 'TUPLE', 0x85: 'TUPLE1', 0x86: 'TUPLE2',
  0x87: 'TUPLE3', 0x6c: 'LIST', 0x64: 'DICT', 0x73: 'SETITEM', 0x75: 'SETITEMS', 0x61: 'APPEND',
  0x65: 'APPENDS', 0x63: 'GLOBAL', 0x93: 'STACK_GLOBAL', 0x52: 'REDUCE', 0x62: 'BUILD', 0x51: 'BINPERSID',
  // Recognised but refused: they construct or call arbitrary objects, or are text-protocol forms torch never writes.
  0x81: 'NEWOBJ', 0x92: 'NEWOBJ_EX', 0x69: 'INST', 0x6f: 'OBJ', 0x50: 'PERSID', 0x70: 'PUT', 0x67: 'GET',
  0x49: 'INT', 0x4c: 'LONG', 0x46: 'FLOAT', 0x53: 'STRING', 0x56: 'UNICODE', 0x82: 'EXT1', 0x83: 'EXT2',
  0x84: 'EXT4', 0x8f: 'EMPTY_SET', 0x90: 'ADDITEMS', 0x91: 'FROZENSET', 0x96: 'BYTEARRAY8',
  0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER',
};

/** Integers wider than this many bytes are refused; state dicts only hold sizes and offsets. */
const MAX_LONG_BYTES = 64;

const MARK = Symbol('mark');

export function unpickle(bytes: Uint8Array, opts: UnpickleOptions): unknown {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const latin1 = new TextDecoder('latin1');
  const memo = new Map<number, unknown>();
  let stack: unknown[] = [];
  const metastack: unknown[][] = [];
  let pos = 0;
  let opStart = 0;

  const fail = (problem: string) => new Error(`cannot load ${opts.source}: ${problem}`);
  const need = (n: number) => {
    if (n < 0 || pos + n > bytes.byteLength) throw fail(`the pickle is truncated (needs ${n} more bytes at byte ${pos} of ${bytes.byteLength})`);
  };
  const u8 = () => (need(1), bytes[pos++]);
  const take = (n: number) => {
    need(n);
    const out = bytes.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  const u32 = () => (need(4), (pos += 4), dv.getUint32(pos - 4, true));
  const u64 = () => {
    need(8);
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(bytes.byteLength)) throw fail(`a length field (${v}) exceeds the pickle size`);
    return Number(v);
  };
  const pop = () => {
    if (stack.length === 0) throw fail(`opcode at byte ${opStart} pops from an empty stack; the pickle is malformed`);
    return stack.pop();
  };
  const top = () => {
    if (stack.length === 0) throw fail(`opcode at byte ${opStart} reads an empty stack; the pickle is malformed`);
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = metastack.pop();
    if (!prev) throw fail(`opcode at byte ${opStart} needs a MARK that was never pushed; the pickle is malformed`);
    stack = prev;
    return items;
  };
  const text = (b: Uint8Array) => {
    try {
      return utf8.decode(b);
    } catch {
      throw fail(`a string at byte ${opStart} is not valid UTF-8`);
    }
  };
  const line = () => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) throw fail(`the pickle is truncated inside a text field at byte ${pos}`);
    const s = latin1.decode(bytes.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const memoGet = (i: number) => {
    if (!memo.has(i)) throw fail(`memo slot ${i} is read before it is written; the pickle is malformed`);
    return memo.get(i);
  };
  const signedLE = (b: Uint8Array): number | bigint => {
    if (b.byteLength > MAX_LONG_BYTES) throw fail(`an integer of ${b.byteLength} bytes is too large for a state dict`);
    let v = 0n;
    for (let i = b.byteLength - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b.byteLength && b[b.byteLength - 1] & 0x80) v -= 1n << BigInt(8 * b.byteLength);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const lookupGlobal = (module: string, name: string) => {
    const key = `${module}.${name}`;
    if (!opts.globals.has(key)) {
      throw new Error(`refusing to load ${opts.source}: pickle references ${key}; only tensor state dicts are accepted`);
    }
    return opts.globals.get(key);
  };
  const setItems = (target: unknown, items: unknown[]) => {
    if (!(target instanceof Map)) throw fail(`SETITEM(S) at byte ${opStart} targets a ${describe(target)}, not a dict`);
    if (items.length % 2) throw fail(`SETITEMS at byte ${opStart} has an odd number of items`);
    for (let i = 0; i < items.length; i += 2) target.set(items[i], items[i + 1]);
  };
  const appendItems = (target: unknown, items: unknown[]) => {
    if (!Array.isArray(target)) throw fail(`APPEND(S) at byte ${opStart} targets a ${describe(target)}, not a list`);
    for (const it of items) target.push(it);
  };

  // Note: popMark() replaces `stack`, so its result is always taken before `stack.push` is evaluated.
  for (;;) {
    opStart = pos;
    const op = u8();
    switch (op) {
      case 0x80: u8(); break; // PROTO: any version; unsupported opcodes are caught individually
      case 0x95: u64(); break; // FRAME: framing is only a buffering hint
      case 0x2e: { // STOP
        const result = pop();
        return result;
      }
      case 0x7d: stack.push(new Map()); break;
      case 0x5d: stack.push([]); break;
      case 0x29: stack.push(new PickleTuple([])); break;
      case 0x28: metastack.push(stack); stack = []; break;
      case 0x30: pop(); break;
      case 0x31: popMark(); break;
      case 0x32: stack.push(top()); break;
      case 0x58: stack.push(text(take(u32()))); break;
      case 0x8c: stack.push(text(take(u8()))); break;
      case 0x8d: stack.push(text(take(u64()))); break;
      case 0x54: stack.push(latin1.decode(take(u32()))); break;
      case 0x55: stack.push(latin1.decode(take(u8()))); break;
      case 0x42: stack.push(take(u32()).slice()); break;
      case 0x43: stack.push(take(u8()).slice()); break;
      case 0x8e: stack.push(take(u64()).slice()); break;
      case 0x71: memo.set(u8(), top()); break;
      case 0x72: memo.set(u32(), top()); break;
      case 0x94: memo.set(memo.size, top()); break;
      case 0x68: stack.push(memoGet(u8())); break;
      case 0x6a: stack.push(memoGet(u32())); break;
      case 0x4a: need(4); stack.push(dv.getInt32(pos, true)); pos += 4; break;
      case 0x4b: stack.push(u8()); break;
      case 0x4d: need(2); stack.push(dv.getUint16(pos, true)); pos += 2; break;
      case 0x8a: stack.push(signedLE(take(u8()))); break;
      case 0x8b: {
        need(4);
        const n = dv.getInt32(pos, true);
        pos += 4;
        if (n < 0) throw fail(`LONG4 at byte ${opStart} has a negative length`);
        if (n > MAX_LONG_BYTES) throw fail(`an integer of ${n} bytes is too large for a state dict`);
        stack.push(signedLE(take(n)));
        break;
      }
      case 0x88: stack.push(true); break;
      case 0x89: stack.push(false); break;
      case 0x4e: stack.push(null); break;
      case 0x47: need(8); stack.push(dv.getFloat64(pos, false)); pos += 8; break;
      case 0x74: { const items = popMark(); stack.push(new PickleTuple(items)); break; }
      case 0x85: { const a = pop(); stack.push(new PickleTuple([a])); break; }
      case 0x86: { const b = pop(); const a = pop(); stack.push(new PickleTuple([a, b])); break; }
      case 0x87: { const c = pop(); const b = pop(); const a = pop(); stack.push(new PickleTuple([a, b, c])); break; }
      case 0x6c: { const items = popMark(); stack.push(items); break; }
      case 0x64: { const items = popMark(); const d = new Map(); setItems(d, items); stack.push(d); break; }
      case 0x73: { const v = pop(); const k = pop(); setItems(top(), [k, v]); break; }
      case 0x75: { const items = popMark(); setItems(top(), items); break; }
      case 0x61: { const v = pop(); appendItems(top(), [v]); break; }
      case 0x65: { const items = popMark(); appendItems(top(), items); break; }
      case 0x63: { const module = line(); const name = line(); stack.push(lookupGlobal(module, name)); break; }
      case 0x93: {
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') throw fail(`STACK_GLOBAL at byte ${opStart} needs two strings`);
        stack.push(lookupGlobal(module, name));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop();
        const fn = pop();
        if (!(fn instanceof PickleCallable)) throw fail(`REDUCE at byte ${opStart} calls a ${describe(fn)}, which is not callable`);
        if (!(args instanceof PickleTuple)) throw fail(`REDUCE at byte ${opStart} passes a ${describe(args)} instead of an argument tuple`);
        try {
          stack.push(fn.call(args.items));
        } catch (e) {
          throw fail(`${fn.qualname}(...) at byte ${opStart}: ${(e as Error).message}`);
        }
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        const obj = top();
        if (!opts.build?.(obj, state)) throw fail(`BUILD at byte ${opStart} sets state on a ${describe(obj)}, which is not allowed`);
        break;
      }
      case 0x51: { // BINPERSID
        const pid = pop();
        if (!opts.persistentLoad) throw fail(`BINPERSID at byte ${opStart} but this pickle may not reference external data`);
        stack.push(opts.persistentLoad(pid));
        break;
      }
      default: {
        const hex = `0x${op.toString(16).padStart(2, '0')}`;
        const known = OPCODE_NAMES[op];
        throw fail(known
          ? `pickle opcode ${known} (${hex}) at byte ${opStart} is not accepted in a tensor state dict`
          : `unknown pickle opcode ${hex} at byte ${opStart}; the file is corrupt or not a PyTorch checkpoint`);
      }
    }
  }
}

/** Short type description for error messages. */
export function describe(v: unknown): string {
  if (v === null) return 'None';
  if (v instanceof Map) return 'dict';
  if (Array.isArray(v)) return 'list';
  if (v instanceof PickleTuple) return 'tuple';
  if (v instanceof PickleCallable) return v.qualname;
  if (v instanceof Uint8Array) return 'bytes';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}
