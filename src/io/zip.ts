// A read-only zip reader for PyTorch checkpoints: it walks the central directory (zip64 when the
// archive needs it) and reads entries on demand, stored or deflated, checking sizes and CRC-32.
import type * as NodeZlib from 'node:zlib';
import { nodeBuiltin } from './node-builtins.ts';
const { crc32, inflateRawSync } = nodeBuiltin<typeof NodeZlib>('node:zlib');
import { type ByteSource, bufferSource, fileSource } from './raw.ts';

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const EOCD_SIZE = 22;
const CENTRAL_SIZE = 46;
const LOCAL_SIZE = 30;
const MAX_COMMENT = 0xffff;
const MAX_DEFLATE_RATIO = 1032;

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflate. */
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  localHeaderOffset: number;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function u64(dv: DataView, at: number, fail: (p: string) => Error, what: string): number {
  const v = dv.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw fail(`${what} ${v} is too large`);
  return Number(v);
}

export class ZipArchive {
  readonly entries: ZipEntry[];
  private readonly byName = new Map<string, ZipEntry>();

  constructor(private readonly src: ByteSource) {
    this.entries = readCentralDirectory(src);
    for (const e of this.entries) {
      if (this.byName.has(e.name)) throw this.error(`it holds two entries named "${e.name}"`);
      this.byName.set(e.name, e);
    }
    // Entries sharing bytes are the "overlapping" zip bomb (one compressed run read as many huge
    // files); a real archive never overlaps, so it is refused before anything is inflated.
    const spans = this.entries.map((e) => ({ e, from: e.localHeaderOffset, to: e.localHeaderOffset + LOCAL_SIZE + e.compressedSize }))
      .sort((a, b) => a.from - b.from);
    for (let i = 1; i < spans.length; i++) {
      if (spans[i].from < spans[i - 1].to) throw this.error(`entries "${spans[i - 1].e.name}" and "${spans[i].e.name}" overlap (a zip bomb or a damaged archive)`);
    }
    for (const e of this.entries) {
      // Deflate cannot compress better than about 1032:1; a larger claimed ratio is a lie.
      if (e.method === 8 && e.size > e.compressedSize * MAX_DEFLATE_RATIO + 1024) {
        throw this.error(`entry "${e.name}" claims ${e.size} bytes from ${e.compressedSize} compressed, more than deflate can expand`);
      }
    }
  }

  get name(): string {
    return this.src.name;
  }

  get(name: string): ZipEntry | undefined {
    return this.byName.get(name);
  }

  /** The entry's uncompressed bytes, verified against the recorded size and CRC-32. */
  read(entryOrName: ZipEntry | string): Uint8Array {
    const e = typeof entryOrName === 'string' ? this.byName.get(entryOrName) : entryOrName;
    if (!e) throw this.error(`it has no entry named "${String(entryOrName)}"`);
    const src = this.src;
    if (e.localHeaderOffset + LOCAL_SIZE > src.size) throw this.error(`the local header of "${e.name}" lies past the end of the file`);
    const local = view(src.read(e.localHeaderOffset, LOCAL_SIZE));
    if (local.getUint32(0, true) !== SIG_LOCAL) throw this.error(`the local header of "${e.name}" is missing or damaged`);
    const dataStart = e.localHeaderOffset + LOCAL_SIZE + local.getUint16(26, true) + local.getUint16(28, true);
    if (dataStart + e.compressedSize > src.size) {
      throw this.error(`entry "${e.name}" needs ${e.compressedSize} bytes at offset ${dataStart} but the file ends at ${src.size}; it is truncated`);
    }
    const packed = src.read(dataStart, e.compressedSize);
    let data: Uint8Array;
    if (e.method === 0) {
      if (e.compressedSize !== e.size) throw this.error(`stored entry "${e.name}" has different compressed and uncompressed sizes`);
      data = packed;
    } else if (e.method === 8) {
      try {
        // maxOutputLength bounds the work a hostile entry can cause to its declared size.
        const out = inflateRawSync(packed, { maxOutputLength: Math.max(1, e.size) });
        data = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
      } catch (err) {
        throw this.error(`entry "${e.name}" does not inflate (${(err as Error).message})`);
      }
      if (data.byteLength !== e.size) throw this.error(`entry "${e.name}" inflates to ${data.byteLength} bytes, not the recorded ${e.size}`);
    } else {
      throw this.error(`entry "${e.name}" uses compression method ${e.method}; only stored (0) and deflate (8) are supported`);
    }
    if ((crc32(data) >>> 0) !== e.crc32) throw this.error(`entry "${e.name}" fails its CRC-32 check; the file is corrupt`);
    return data;
  }

  close(): void {
    this.src.close();
  }

  private error(problem: string): Error {
    return new Error(`${this.src.name} is not a readable zip archive: ${problem}`);
  }
}

export function openZip(input: string | Uint8Array): ZipArchive {
  const src = typeof input === 'string' ? fileSource(input) : bufferSource(input);
  try {
    return new ZipArchive(src);
  } catch (e) {
    src.close();
    throw e;
  }
}

/** True when the source starts like a zip archive (a local header or an empty archive's end record). */
export function looksLikeZip(src: ByteSource): boolean {
  if (src.size < 4) return false;
  const sig = view(src.read(0, 4)).getUint32(0, true);
  return sig === SIG_LOCAL || sig === SIG_EOCD;
}

function readCentralDirectory(src: ByteSource): ZipEntry[] {
  const fail = (problem: string) => new Error(`${src.name} is not a readable zip archive: ${problem}`);
  if (src.size < EOCD_SIZE) throw fail(`it is only ${src.size} bytes long; the file is truncated or not a zip`);

  // The end-of-central-directory record sits in the last 22 + (up to 65535 comment) bytes.
  const tailLen = Math.min(src.size, EOCD_SIZE + MAX_COMMENT);
  const tailStart = src.size - tailLen;
  const tail = src.read(tailStart, tailLen);
  const tv = view(tail);
  let eocd = -1;
  for (let i = tailLen - EOCD_SIZE; i >= 0; i--) {
    if (tv.getUint32(i, true) === SIG_EOCD && i + EOCD_SIZE + tv.getUint16(i + 20, true) <= tailLen) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw fail('no end-of-central-directory record found; the file is truncated or not a zip');
  if (tv.getUint16(eocd + 4, true) !== 0 && tv.getUint16(eocd + 4, true) !== 0xffff) throw fail('multi-disk archives are not supported');
  let count = tv.getUint16(eocd + 10, true);
  let cdSize = tv.getUint32(eocd + 12, true);
  let cdOffset = tv.getUint32(eocd + 16, true);

  const eocdAbs = tailStart + eocd;
  if (eocdAbs >= 20) {
    const loc = view(src.read(eocdAbs - 20, 20));
    if (loc.getUint32(0, true) === SIG_ZIP64_LOCATOR) {
      const at = u64(loc, 8, fail, 'zip64 record offset');
      if (at + 56 > src.size) throw fail('the zip64 end record lies past the end of the file');
      const z = view(src.read(at, 56));
      if (z.getUint32(0, true) !== SIG_ZIP64_EOCD) throw fail('the zip64 end record is missing or damaged');
      count = u64(z, 32, fail, 'entry count');
      cdSize = u64(z, 40, fail, 'central directory size');
      cdOffset = u64(z, 48, fail, 'central directory offset');
    }
  }
  if (cdOffset + cdSize > src.size) throw fail(`the central directory (${cdSize} bytes at ${cdOffset}) lies past the end of the file; it is truncated`);
  if (count * CENTRAL_SIZE > cdSize) throw fail(`it claims ${count} entries but its central directory has room for at most ${Math.floor(cdSize / CENTRAL_SIZE)}`);

  const cd = src.read(cdOffset, cdSize);
  const dv = view(cd);
  const decoder = new TextDecoder('utf-8');
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + CENTRAL_SIZE > cdSize || dv.getUint32(p, true) !== SIG_CENTRAL) throw fail(`central directory entry ${i} is damaged`);
    const flags = dv.getUint16(p + 8, true);
    const method = dv.getUint16(p + 10, true);
    const crc = dv.getUint32(p + 16, true);
    let compressedSize = dv.getUint32(p + 20, true);
    let size = dv.getUint32(p + 24, true);
    const nameLen = dv.getUint16(p + 28, true);
    const extraLen = dv.getUint16(p + 30, true);
    const commentLen = dv.getUint16(p + 32, true);
    let localHeaderOffset = dv.getUint32(p + 42, true);
    const end = p + CENTRAL_SIZE + nameLen + extraLen + commentLen;
    if (end > cdSize) throw fail(`central directory entry ${i} runs past the directory's end`);
    const name = decoder.decode(cd.subarray(p + CENTRAL_SIZE, p + CENTRAL_SIZE + nameLen));
    if (flags & 1) throw fail(`entry "${name}" is encrypted`);

    // Zip64 extra field: 64-bit values replace, in this order, whichever 32-bit fields are saturated.
    let x = p + CENTRAL_SIZE + nameLen;
    const xEnd = x + extraLen;
    while (x + 4 <= xEnd) {
      const id = dv.getUint16(x, true);
      const len = dv.getUint16(x + 2, true);
      if (x + 4 + len > xEnd) throw fail(`entry "${name}" has a damaged extra field`);
      if (id === 0x0001) {
        let q = x + 4;
        const take = (what: string): number => {
          if (q + 8 > x + 4 + len) throw fail(`entry "${name}" has a short zip64 field`);
          const v = u64(dv, q, fail, what);
          q += 8;
          return v;
        };
        if (size === 0xffffffff) size = take('size');
        if (compressedSize === 0xffffffff) compressedSize = take('compressed size');
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = take('header offset');
      }
      x += 4 + len;
    }
    if (localHeaderOffset >= src.size) throw fail(`entry "${name}" starts past the end of the file`);
    entries.push({ name, method, compressedSize, size, crc32: crc, localHeaderOffset });
    p = end;
  }
  return entries;
}
