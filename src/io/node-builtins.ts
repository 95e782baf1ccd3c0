// Node built-ins taken at run time instead of imported, for the modules that both browsers and Node
// load (checkpoint parsing lives next to checkpoint file access). In Node this is the real module
// (process.getBuiltinModule, Node >= 20.16); elsewhere every function of it throws one clear error
// when called, so importing stays possible and only file access is refused.
type AnyFn = (...args: unknown[]) => unknown;

export function nodeBuiltin<T extends object>(id: string): T {
  const get = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process?.getBuiltinModule;
  const mod = get?.(id) as T | undefined;
  if (mod) return mod;
  const refuse: AnyFn = () => {
    throw new Error(`${id} is not available here (file access needs Node >= 20.16); in a browser load models from bytes (fetch or a file picker)`);
  };
  return new Proxy({} as T, { get: () => refuse });
}

/** True on little-endian hosts (all checkpoint I/O assumes it). */
export const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
