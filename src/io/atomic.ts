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

/** Whether the process that made a temp name (its pid is the suffix's first part) may still be writing it. */
function ownerAlive(suffix: string): boolean {
  const pid = Number(suffix.split('-')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Creates `dir` and its missing parents one level at a time, so a path the system refuses (a file
 * in the way, /proc, a read-only mount) fails with one line instead of retrying.
 */
export function ensureDir(dir: string): void {
  const abs = resolve(dir);
  const missing: string[] = [];
  let at = abs;
  for (;;) {
    let st;
    try {
      st = statSync(at);
    } catch {
      st = undefined;
    }
    if (st) {
      if (!st.isDirectory()) throw new Error(`cannot create folder ${abs}: ${at} is a file, not a folder`);
      break;
    }
    const up = dirname(at);
    if (up === at) break;
    missing.push(at);
    at = up;
  }
  for (const d of missing.reverse()) {
    try {
      mkdirSync(d);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST' && statSync(d).isDirectory()) continue;
      throw new Error(`cannot create folder ${d}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}; choose a writable location`);
    }
  }
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
  removeStaleFileTemps(target);
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

/** Temp files of `target` left by writers that were killed (their process is gone). */
function removeStaleFileTemps(target: string): void {
  const prefix = `.${basename(target)}.tmp-`;
  let names: string[];
  try {
    names = readdirSync(dirname(target));
  } catch {
    return;
  }
  for (const n of names) {
    if (n.startsWith(prefix) && !ownerAlive(n.slice(prefix.length))) rmSync(join(dirname(target), n), { force: true });
  }
}

/** Leftovers of interrupted folder replacements of `target`: `.tmp-S` (new) and `.old-S` (previous). */
function folderLeftovers(target: string): { tmp: Map<string, string>; old: Map<string, string> } {
  const tmp = new Map<string, string>();
  const old = new Map<string, string>();
  let names: string[];
  try {
    names = readdirSync(dirname(target));
  } catch {
    return { tmp, old };
  }
  const base = basename(target);
  for (const n of names) {
    for (const [kind, map] of [['tmp', tmp], ['old', old]] as const) {
      const prefix = `${base}.${kind}-`;
      if (!n.startsWith(prefix)) continue;
      const suffix = n.slice(prefix.length);
      if (!ownerAlive(suffix)) map.set(suffix, join(dirname(target), n));
    }
  }
  return { tmp, old };
}

/**
 * Repairs what a killed writeDirAtomic (or run-folder replacement) left next to `dir`:
 * - `dir` missing with `dir.old-S` and `dir.tmp-S` present: the kill fell between the two renames;
 *   the new folder was complete (it is only moved after being flushed), so it becomes `dir`;
 * - `dir` missing with only `dir.old-S`: the previous folder is moved back;
 * - everything else (`dir.tmp-S` of a writer killed mid-write, `dir.old-S` whose deletion was cut
 *   short) is deleted.
 * Leftovers of a process that is still running are not touched. Returns true when `dir` exists after.
 */
export function recoverDir(dir: string): boolean {
  const target = resolve(dir);
  const { tmp, old } = folderLeftovers(target);
  if (!existsSync(target)) {
    // The newest complete candidate: a tmp whose twin old exists (the swap had begun).
    const swapped = [...old.keys()].find((s) => tmp.has(s));
    if (swapped !== undefined) {
      renameSync(tmp.get(swapped)!, target);
      tmp.delete(swapped);
    } else if (old.size) {
      const [s, path] = [...old][0];
      renameSync(path, target);
      old.delete(s);
    }
    if (existsSync(target)) fsyncDir(dirname(target));
  }
  for (const path of [...tmp.values(), ...old.values()]) rmSync(path, { recursive: true, force: true });
  return existsSync(target);
}

/** A fresh sibling name for building a replacement of `dir` (recoverDir knows how to finish or drop it). */
export function stagingPath(dir: string): string {
  return `${resolve(dir)}.tmp-${tmpSuffix()}`;
}

/**
 * Puts the complete folder `staged` (from stagingPath(dir)) in place of `dir`: the old folder is
 * moved aside, the new one renamed in, the old one deleted. A kill between the renames is finished
 * by recoverDir on the next use.
 */
export function promoteDir(staged: string, dir: string): void {
  const target = resolve(dir);
  const prefix = `${target}.tmp-`;
  if (!staged.startsWith(prefix)) throw new Error(`promoteDir: ${staged} is not a staging folder of ${target}`);
  const old = `${target}.old-${staged.slice(prefix.length)}`;
  fsyncDir(staged);
  const hadOld = existsSync(target);
  if (hadOld) renameSync(target, old);
  renameSync(staged, target);
  fsyncDir(dirname(target));
  if (hadOld) rmSync(old, { recursive: true, force: true });
}

export interface DirWriteOptions {
  /**
   * Files and folders of an existing `dir` to carry into the new one (e.g. tokenizer files);
   * default: none. Names that are also in `files` are always replaced by the new content.
   */
  keep?: (name: string) => boolean;
  /** Where the replaced folder goes instead of being deleted (kept older checkpoints). */
  retireTo?: string;
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
  recoverDir(target);
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
  if (hadOld && opts.retireTo && !existsSync(opts.retireTo)) {
    renameSync(old, resolve(opts.retireTo));
    fsyncDir(dirname(target));
  } else if (hadOld) {
    rmSync(old, { recursive: true, force: true });
  }
}

