// Opening files a user (or a downloaded checkpoint) points at without trusting them: only regular
// files are read (a FIFO or device would block or never end), a symbolic link inside a checkpoint
// folder may not lead outside it, and whole-file reads have a size bound.
import type * as NodeFs from 'node:fs';
import type * as NodePath from 'node:path';
import { nodeBuiltin } from './node-builtins.ts';
const { closeSync, constants, fstatSync, lstatSync, openSync, readSync, realpathSync } = nodeBuiltin<typeof NodeFs>('node:fs');
const { isAbsolute, relative, resolve, sep } = nodeBuiltin<typeof NodePath>('node:path');

/** Largest JSON file (config, index, tokenizer) read whole. */
const MAX_JSON_BYTES = 1 << 30;

function inside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

/**
 * Throws one clear line unless `path` is a regular file; with `root`, a symbolic link (or a path
 * through one) must resolve to a place inside `root`.
 */
export function checkRegularFile(path: string, root?: string): void {
  const abs = resolve(path);
  try {
    lstatSync(abs);
  } catch {
    return; // missing files are reported by the caller with its own words
  }
  if (root !== undefined) {
    let real: string;
    let realRoot: string;
    try {
      real = realpathSync(abs);
      realRoot = realpathSync(resolve(root));
    } catch {
      throw new Error(`${abs} is a symbolic link to a missing file; replace it by the file itself`);
    }
    if (!inside(realRoot, real)) {
      throw new Error(`${abs} is a symbolic link that leads outside the folder ${resolve(root)}; links out of a checkpoint folder are not followed (copy the file in instead)`);
    }
  }
}

/** Opens `path` for reading without blocking on FIFOs; refuses anything but a regular file. */
export function openRegularFile(path: string, root?: string): { fd: number; size: number } {
  checkRegularFile(path, root);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(`cannot open ${path}: ${code === 'ENOENT' ? 'file not found' : code === 'EISDIR' ? 'it is a folder' : (e as Error).message}`);
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    const kind = st.isDirectory() ? 'a folder' : st.isFIFO() ? 'a named pipe (FIFO)' : st.isSocket() ? 'a socket' : 'a device';
    throw new Error(`${path} is ${kind}, not a file; pass the file itself${st.isDirectory() ? ' (or load the folder as a checkpoint)' : ''}`);
  }
  return { fd, size: st.size };
}

/** Reads a whole regular file of at most `maxBytes` as UTF-8 text. */
export function readTextFile(path: string, opts: { root?: string; maxBytes?: number; what?: string } = {}): string {
  const max = opts.maxBytes ?? MAX_JSON_BYTES;
  const { fd, size } = openRegularFile(path, opts.root);
  try {
    if (size > max) throw new Error(`${opts.what ?? 'file'} ${path} is ${size} bytes, more than the ${max} allowed for it`);
    const buf = Buffer.alloc(size);
    let done = 0;
    while (done < size) {
      const got = readSync(fd, buf, done, size - done, done);
      if (got === 0) break;
      done += got;
    }
    return buf.subarray(0, done).toString('utf8');
  } finally {
    closeSync(fd);
  }
}
