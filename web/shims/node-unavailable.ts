// Browser stand-in for the Node built-ins the engine imports for file access (node:fs, node:module,
// node:url, node:crypto, node:zlib). Importing stays possible so the pure parts of those modules
// (safetensors parsing from bytes, tokenizer.json parsing, config mapping) work; calling a file
// function fails with a message that says how the page loads files instead.
const unavailable = (name: string) => (..._args: unknown[]): never => {
  throw new Error(`${name} is not available in browsers: the playground reads files from the file picker or a URL`);
};

export const existsSync = unavailable('existsSync');
export const readFileSync = unavailable('readFileSync');
export const statSync = unavailable('statSync');
export const fstatSync = unavailable('fstatSync');
export const openSync = unavailable('openSync');
export const readSync = unavailable('readSync');
export const closeSync = unavailable('closeSync');
export const writeSync = unavailable('writeSync');
export const fsyncSync = unavailable('fsyncSync');
export const writeFileSync = unavailable('writeFileSync');
export const appendFileSync = unavailable('appendFileSync');
export const mkdirSync = unavailable('mkdirSync');
export const readdirSync = unavailable('readdirSync');
export const renameSync = unavailable('renameSync');
export const rmSync = unavailable('rmSync');
export const cpSync = unavailable('cpSync');
export const linkSync = unavailable('linkSync');
export const fileURLToPath = unavailable('fileURLToPath');
export const pathToFileURL = unavailable('pathToFileURL');
export const createHash = unavailable('createHash (tokenizer fingerprints)');
export const randomBytes = unavailable('randomBytes');
export const crc32 = unavailable('crc32 (PyTorch .bin checkpoints)');
export const inflateRawSync = unavailable('inflateRawSync (PyTorch .bin checkpoints)');
export const deflateSync = unavailable('deflateSync (PNG reports)');

/** corpus.ts builds its require() at import time; only calling it has to fail. */
export function createRequire(_from: string): (id: string) => never {
  return (id: string) => unavailable(`require('${id}')`)();
}
