// Reading and writing tokenizer.json files (Node); parsing is in tokenizer-json.ts.
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { tokenizerFromJson } from './tokenizer-json.ts';
import type { Tokenizer } from './tokenizer.ts';

export { tokenizerFromJson };

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

function readJson(path: string, what: string): unknown {
  const text = readFileSync(path, 'utf8');
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
  if (statSync(pathOrDir).isDirectory()) {
    file = join(pathOrDir, 'tokenizer.json');
    if (!existsSync(file)) throw new Error(`No tokenizer.json in folder ${pathOrDir}; pass a tokenizer.json file or a folder containing one`);
  }
  const configFile = join(dirname(file), 'tokenizer_config.json');
  if (existsSync(configFile)) {
    const c = readJson(configFile, 'Tokenizer config');
    if (isObj(c)) config = c;
  }
  return tokenizerFromJson(readJson(file, 'Tokenizer file'), config, file);
}

/** Writes tok.toJSON() atomically (temp file + rename) so a crash never leaves a half-written file. */
export function saveTokenizer(tok: Tokenizer, path: string): void {
  const file = existsSync(path) && statSync(path).isDirectory() ? join(path, 'tokenizer.json') : path;
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(tok.toJSON(), null, 2));
  renameSync(tmp, file);
}
