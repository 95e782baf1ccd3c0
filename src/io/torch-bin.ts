// PyTorch `torch.save` checkpoints (pytorch_model.bin): a zip archive whose `<folder>/data.pkl`
// pickles the state dict, with each storage's bytes in `<folder>/data/<key>`. The pickle is read
// by the restricted unpickler with an allow-list of exactly the names a state dict needs.
import { type ByteSource, type FileDType, type RawTensor, type TensorMap, ITEM_SIZE, bufferSource, decodeElements, fileSource } from './raw.ts';
import { PickleCallable, PickleTuple, describe, unpickle } from './pickle.ts';
import { ZipArchive, looksLikeZip } from './zip.ts';

/** Marker for a `torch.<X>Storage` class referenced by a persistent id. */
class StorageType {
  constructor(readonly torchName: string, readonly dtype: FileDType) {}
}

const STORAGE_TYPES: Record<string, FileDType> = {
  FloatStorage: 'F32', HalfStorage: 'F16', BFloat16Storage: 'BF16', DoubleStorage: 'F64',
  LongStorage: 'I64', IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8', ByteStorage: 'U8',
  BoolStorage: 'BOOL',
};

/** A storage named by the pickle; its bytes are read from the archive when a tensor first needs them. */
class StorageRef {
  private bytes?: Uint8Array;
  constructor(readonly type: StorageType, readonly key: string, readonly numel: number, private readonly load: () => Uint8Array) {}
  get data(): Uint8Array {
    this.bytes ??= this.load();
    return this.bytes;
  }
}

/** What `_rebuild_tensor_v2` returns while unpickling. */
class LoadedTensor {
  constructor(readonly tensor: RawTensor) {}
}

/** Largest tensor a view may materialize beyond its storage's own size (broadcast views). */
const MAX_EXPANDED_ELEMENTS = 1 << 22;

// Python pickles of legacy (pre-1.6) torch.save files start with this magic number.
const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;

function safeInts(v: unknown, what: string): number[] {
  if (!(v instanceof PickleTuple) || !v.items.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0)) {
    throw new Error(`${what} must be a tuple of non-negative integers, got ${describe(v)}`);
  }
  return v.items as number[];
}

/** Copies the (possibly strided, offset) view out of its storage into a dense row-major tensor. */
function rebuildTensor(storage: unknown, offset: unknown, sizeArg: unknown, strideArg: unknown): LoadedTensor {
  if (!(storage instanceof StorageRef)) throw new Error(`expected a storage, got ${describe(storage)}`);
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) throw new Error('storage offset must be a non-negative integer');
  const shape = safeInts(sizeArg, 'tensor size');
  const stride = safeInts(strideArg, 'tensor stride');
  if (shape.length !== stride.length) throw new Error(`size has ${shape.length} dims but stride has ${stride.length}`);
  const dtype = storage.type.dtype;
  const item = ITEM_SIZE[dtype];
  let count = 1;
  let last = offset; // highest storage element the view touches
  for (let d = 0; d < shape.length; d++) {
    count *= shape[d];
    if (shape[d] > 0) last += (shape[d] - 1) * stride[d];
    if (!Number.isSafeInteger(count) || !Number.isSafeInteger(last)) throw new Error(`size [${shape}] with stride [${stride}] overflows`);
  }
  if (count > storage.numel && count > MAX_EXPANDED_ELEMENTS) {
    // A zero (or overlapping) stride lets a tiny storage claim any number of elements; copying such a view out would
    // allocate far more than the file holds.
    throw new Error(`a [${shape}] view with stride [${stride}] would expand a ${storage.numel}-element storage to ${count} elements; views larger than their storage are refused above ${MAX_EXPANDED_ELEMENTS} elements`);
  }
  if (count > 0 && last >= storage.numel) {
    throw new Error(`a [${shape}] view at offset ${offset} with stride [${stride}] reaches element ${last} of a ${storage.numel}-element storage`);
  }
  const src = storage.data;
  let bytes: Uint8Array;
  let contiguous = true;
  for (let d = shape.length - 1, expect = 1; d >= 0; d--) {
    if (shape[d] !== 1 && stride[d] !== expect) contiguous = false;
    expect *= shape[d];
  }
  if (contiguous || count === 0) {
    bytes = src.subarray(offset * item, (offset + count) * item);
  } else {
    bytes = new Uint8Array(count * item);
    const idx = new Array<number>(shape.length).fill(0);
    let at = offset;
    for (let i = 0; i < count; i++) {
      bytes.set(src.subarray(at * item, at * item + item), i * item);
      // Advance the multi-index like an odometer, keeping the storage position in step.
      for (let d = shape.length - 1; d >= 0; d--) {
        if (++idx[d] < shape[d]) {
          at += stride[d];
          break;
        }
        at -= (shape[d] - 1) * stride[d];
        idx[d] = 0;
      }
    }
  }
  const data = decodeElements(bytes, dtype, `storage ${storage.key}`);
  return new LoadedTensor({ dtype: data instanceof Float32Array ? 'f32' : 'i32', shape: [...shape], data });
}

function stateDictGlobals(): Map<string, unknown> {
  const g = new Map<string, unknown>();
  g.set('collections.OrderedDict', new PickleCallable('collections.OrderedDict', (args) => {
    const m = new Map<unknown, unknown>();
    if (args.length === 0) return m;
    if (args.length === 1 && Array.isArray(args[0])) {
      for (const pair of args[0]) {
        if (!(pair instanceof PickleTuple) || pair.items.length !== 2) throw new Error('OrderedDict items must be (key, value) pairs');
        m.set(pair.items[0], pair.items[1]);
      }
      return m;
    }
    throw new Error('unexpected OrderedDict arguments');
  }));
  g.set('torch._utils._rebuild_tensor_v2', new PickleCallable('torch._utils._rebuild_tensor_v2', (a) => {
    // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    if (a.length < 4 || a.length > 7) throw new Error(`expected 6 or 7 arguments, got ${a.length}`);
    return rebuildTensor(a[0], a[1], a[2], a[3]);
  }));
  const parameter = (a: unknown[]) => {
    // (data, requires_grad, backward_hooks[, state]): a Parameter is saved as its data.
    if (!(a[0] instanceof LoadedTensor)) throw new Error(`expected a tensor, got ${describe(a[0])}`);
    return a[0];
  };
  g.set('torch._utils._rebuild_parameter', new PickleCallable('torch._utils._rebuild_parameter', parameter));
  g.set('torch._utils._rebuild_parameter_with_state', new PickleCallable('torch._utils._rebuild_parameter_with_state', parameter));
  for (const [name, dtype] of Object.entries(STORAGE_TYPES)) g.set(`torch.${name}`, new StorageType(name, dtype));
  return g;
}

function readArchive(zip: ZipArchive): TensorMap {
  const pkls = zip.entries.filter((e) => /^[^/]+\/data\.pkl$/.test(e.name));
  if (pkls.length !== 1) {
    throw new Error(`${zip.name} is not a torch.save archive: expected one "<folder>/data.pkl" entry, found ${pkls.length}`);
  }
  const prefix = pkls[0].name.slice(0, -'data.pkl'.length);
  const order = zip.get(`${prefix}byteorder`);
  if (order) {
    const bo = new TextDecoder().decode(zip.read(order));
    if (bo !== 'little') throw new Error(`${zip.name} was saved on a ${bo}-endian machine; only little-endian checkpoints are supported`);
  }
  const storages = new Map<string, StorageRef>();
  const persistentLoad = (pid: unknown): unknown => {
    const it = pid instanceof PickleTuple ? pid.items : [];
    const [kind, type, key, , count] = it;
    if (it.length !== 5 || kind !== 'storage' || typeof key !== 'string' || typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0) {
      throw new Error(`${zip.name}: unexpected persistent id ${describe(pid)}; only ('storage', type, key, location, numel) is understood`);
    }
    if (!(type instanceof StorageType)) throw new Error(`${zip.name}: storage "${key}" has type ${describe(type)}, not a known torch storage`);
    const known = storages.get(key);
    if (known) {
      if (known.type !== type || known.numel !== count) throw new Error(`${zip.name}: storage "${key}" is described twice with different types or sizes`);
      return known;
    }
    const ref = new StorageRef(type, key, count, () => {
      const entryName = `${prefix}data/${key}`;
      if (!zip.get(entryName)) throw new Error(`${zip.name}: storage "${key}" is missing (no "${entryName}" entry)`);
      const data = zip.read(entryName);
      if (data.byteLength !== count * ITEM_SIZE[type.dtype]) {
        throw new Error(`${zip.name}: storage "${key}" holds ${data.byteLength} bytes, expected ${count} x ${type.torchName} = ${count * ITEM_SIZE[type.dtype]}`);
      }
      return data;
    });
    storages.set(key, ref);
    return ref;
  };
  const result = unpickle(zip.read(pkls[0]), {
    source: zip.name,
    globals: stateDictGlobals(),
    persistentLoad,
    // A module's state_dict() is an OrderedDict carrying a `_metadata` attribute (version info
    // for PyTorch's own loader); it is not needed here, so the dict's BUILD state is accepted and dropped.
    build: (obj, state) => obj instanceof Map && (state === null || state instanceof Map),
  });
  if (!(result instanceof Map)) throw new Error(`${zip.name} holds a pickled ${describe(result)}, not a state dict (name -> tensor)`);
  const tensors: TensorMap = new Map();
  for (const [k, v] of result) {
    if (typeof k !== 'string') throw new Error(`${zip.name}: state dict key ${describe(k)} is not a string`);
    if (!(v instanceof LoadedTensor)) {
      throw new Error(`${zip.name}: entry "${k}" holds a ${describe(v)}, not a tensor; only flat state dicts can be loaded (save model.state_dict() itself)`);
    }
    tensors.set(k, v.tensor);
  }
  return tensors;
}

function legacyOrUnknown(src: ByteSource): Error {
  const head = src.read(0, Math.min(src.size, 16));
  // Legacy files begin with PROTO 2 and LONG1 holding a fixed magic number.
  if (head[0] === 0x80 && head[2] === 0x8a) {
    const n = head[3];
    let v = 0n;
    for (let i = n - 1; i >= 0 && 4 + i < head.length; i--) v = (v << 8n) | BigInt(head[4 + i]);
    if (v === LEGACY_MAGIC) {
      return new Error(`${src.name} uses the legacy (pre-1.6, non-zip) torch.save format, which is not supported; re-save it with torch.save(state_dict, path) in PyTorch >= 1.6 or convert it to safetensors`);
    }
  }
  return new Error(`${src.name} is not a PyTorch checkpoint (a torch.save zip archive); check the path, or re-download the file if it is damaged`);
}

/** Reads a `torch.save` state dict (pytorch_model.bin) into tensors; floats become f32, integers i32. */
export function readTorchBin(input: string | Uint8Array): TensorMap {
  const src = typeof input === 'string' ? fileSource(input) : bufferSource(input);
  try {
    if (!looksLikeZip(src)) throw legacyOrUnknown(src);
    return readArchive(new ZipArchive(src));
  } finally {
    src.close();
  }
}
