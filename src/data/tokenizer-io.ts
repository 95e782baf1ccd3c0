// Reading and writing tokenizer.json files (Node); parsing is in tokenizer-json.ts.
import { existsSync, statSync } from 'node:fs';
import { ensureDir, writeFileAtomic } from '../io/atomic.ts';
import { readTextFile } from '../io/safe-read.ts';
import { dirname, join } from 'node:path';
import { tokenizerFromJson } from './tokenizer-json.ts';
import type { Tokenizer } from './tokenizer.ts';

export { tokenizerFromJson };

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

function readJson(path: string, what: string, root?: string): unknown {
  const text = readTextFile(path, { root, what });
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${what} ${path} is not valid JSON (${(e as Error).message}); the file is corrupt or ` +
      'truncated: save or download it again');
  }
}

/** Loads a tokenizer.json file, or the tokenizer.json (and tokenizer_config.json) inside a folder. */
export function loadTokenizer(pathOrDir: string): Tokenizer {
  if (!existsSync(pathOrDir)) {
    throw new Error(`Tokenizer not found: ${pathOrDir} does not exist; pass a tokenizer.json file or a folder containing one`);
  }
  let file = pathOrDir;
  let config: Json = {};
  let root: string | undefined;
  if (statSync(pathOrDir).isDirectory()) {
    root = pathOrDir;
    file = join(pathOrDir, 'tokenizer.json');
    if (!existsSync(file)) throw new Error(`No tokenizer.json in folder ${pathOrDir}; pass a tokenizer.json file or a folder containing one`);
  }
  const configFile = join(dirname(file), 'tokenizer_config.json');
  if (existsSync(configFile)) {
    const c = readJson(configFile, 'Tokenizer config', root ?? dirname(file));
    if (isObj(c)) config = c;
  }
  return tokenizerFromJson(readJson(file, 'Tokenizer file', root), config, file);
}

/** Writes tok.toJSON() atomically (temp file + rename) so a crash never leaves a half-written file. */
export function saveTokenizer(tok: Tokenizer, path: string): void {
  const file = existsSync(path) && statSync(path).isDirectory() ? join(path, 'tokenizer.json') : path;
  ensureDir(dirname(file));
  writeFileAtomic(file, JSON.stringify(tok.toJSON(), null, 2));
}
