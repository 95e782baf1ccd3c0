// Crash-safe writes: data goes to a temporary name in the same directory, is flushed to disk,
// then renamed over the target, so readers see either the old complete file or the new one.
import type * as NodeCrypto from 'node:crypto';
import type * as NodeFs from 'node:fs';
import type * as NodePath from 'node:path';
import { nodeBuiltin } from './node-builtins.ts';
const {
  closeSync, cpSync, existsSync, fsyncSync, linkSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync, writeSync,
} = nodeBuiltin<typeof NodeFs>('node:fs');
const { randomBytes } = nodeBuiltin<typeof NodeCrypto>('node:crypto');
const { basename, dirname, join, resolve } = nodeBuiltin<typeof NodePath>('node:path');

export type FileData = string | Uint8Array | readonly Uint8Array[];

function tmpSuffix(): string {
  return `${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** Flushes a directory entry table; some platforms cannot open directories, where this is best effort. */
function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Windows cannot fsync a directory; rename is still atomic there.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function writeAndSync(path: string, data: FileData): void {
  const fd = openSync(path, 'wx');
  try {
    const chunks = typeof data === 'string' ? [Buffer.from(data, 'utf8')] : data instanceof Uint8Array ? [data] : data;
    for (const chunk of chunks) {
      if (!(chunk instanceof Uint8Array)) throw new Error('data to write must be a string, bytes, or a list of byte chunks');
      let done = 0;
      while (done < chunk.byteLength) done += writeSync(fd, chunk, done, chunk.byteLength - done);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function requireDir(dir: string, target: string): void {
  let ok = false;
  try {
    ok = statSync(dir).isDirectory();
  } catch {
    ok = false;
  }
  if (!ok) throw new Error(`cannot write ${target}: directory ${dir} does not exist; create it first`);
}

/** Writes `data` (a string, bytes, or chunks written in order) to `path` atomically. */
export function writeFileAtomic(path: string, data: FileData): void {
  const target = resolve(path);
  requireDir(dirname(target), target);
  const tmp = join(dirname(target), `.${basename(target)}.tmp-${tmpSuffix()}`);
  try {
    writeAndSync(tmp, data);
    renameSync(tmp, target);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new Error(`failed to write ${target}: ${(e as Error).message}`);
  }
  fsyncDir(dirname(target));
}

export interface DirWriteOptions {
  /**
   * Files and folders of an existing `dir` to carry into the new one (e.g. tokenizer files);
   * default: none. Names that are also in `files` are always replaced by the new content.
   */
  keep?: (name: string) => boolean;
}

/**
 * Replaces the folder `dir` by one holding exactly `files` (plus kept entries of the old folder).
 * Everything is written and flushed into `dir.tmp-XXXX` first; only then is the old folder moved
 * aside to `dir.old-XXXX`, the new one renamed into place and the old one deleted. A crash before
 * the swap leaves the old folder untouched; a crash inside the two renames leaves it complete
 * under `dir.old-XXXX`.
 */
export function writeDirAtomic(dir: string, files: Record<string, FileData>, opts: DirWriteOptions = {}): void {
  const target = resolve(dir);
  requireDir(dirname(target), target);
  if (existsSync(target) && !statSync(target).isDirectory()) {
    throw new Error(`cannot write folder ${target}: a file with that name exists; remove it or choose another path`);
  }
  for (const name of Object.keys(files)) {
    if (name !== basename(name) || name === '.' || name === '..' || name === '') {
      throw new Error(`writeDirAtomic: "${name}" is not a plain file name`);
    }
  }
  const suffix = tmpSuffix();
  const tmp = `${target}.tmp-${suffix}`;
  const old = `${target}.old-${suffix}`;
  try {
    mkdirSync(tmp);
    for (const [name, data] of Object.entries(files)) writeAndSync(join(tmp, name), data);
    if (existsSync(target) && opts.keep) {
      for (const name of readdirSync(target)) {
        if (Object.prototype.hasOwnProperty.call(files, name) || !opts.keep(name)) continue;
        const from = join(target, name);
        // A hard link costs nothing and the old folder is about to be deleted; fall back to copying.
        try {
          if (statSync(from).isDirectory()) cpSync(from, join(tmp, name), { recursive: true });
          else linkSync(from, join(tmp, name));
        } catch {
          cpSync(from, join(tmp, name), { recursive: true });
        }
      }
    }
    fsyncDir(tmp);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw new Error(`failed to write folder ${target}: ${(e as Error).message}; the previous contents are unchanged`);
  }
  const hadOld = existsSync(target);
  try {
    if (hadOld) renameSync(target, old);
    renameSync(tmp, target);
  } catch (e) {
    if (hadOld && !existsSync(target) && existsSync(old)) renameSync(old, target);
    rmSync(tmp, { recursive: true, force: true });
    throw new Error(`failed to replace folder ${target}: ${(e as Error).message}; the previous contents are unchanged`);
  }
  fsyncDir(dirname(target));
  if (hadOld) rmSync(old, { recursive: true, force: true });
}

