// Building a tokenizer from tokenizer.json contents (no file access, so browsers use it as is); picks the
// fast in-house byte-level BPE when the file is one.
import { BYTE_TO_CHAR } from './byte-level.ts';
import { ByteLevelBpeTokenizer, type AddedToken } from './bpe.ts';
import { HfTokenizer } from './hf-tokenizer.ts';
import { checkTokenizerJson } from './tokenizer-check.ts';
import type { Tokenizer } from './tokenizer.ts';

type Json = Record<string, unknown>;

/** Builds a tokenizer from parsed tokenizer.json contents (plus an optional tokenizer_config.json). */
export function tokenizerFromJson(json: unknown, config: Json = {}, source = 'tokenizer.json'): Tokenizer {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new Error(`${source} is not a tokenizer.json object; pass a Hugging Face tokenizer.json file`);
  }
  const j = json as Json;
  if (!isObj(j.model) || j.model.vocab === undefined) {
    throw new Error(`${source} has no "model" section with a type and vocab; it is not a Hugging Face tokenizer.json`);
  }
  checkTokenizerJson(j, source);
  try {
    if (isPlainByteLevelBpe(j)) return byteLevelFromJson(j, source);
    return new HfTokenizer(j, config);
  } catch (e) {
    // A shape the checks above do not cover still ends in one line about the file, not a crash.
    if (e instanceof TypeError || e instanceof RangeError) throw new Error(`${source} is malformed or unsupported (${e.message})`);
    throw e;
  }
}

const isObj = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

/** GPT-2 style: ByteLevel regex pre-tokenizer and decoder, plain BPE over all 256 byte characters. */
function isPlainByteLevelBpe(j: Json): boolean {
  const m = j.model as Json;
  const pre = j.pre_tokenizer;
  const dec = j.decoder;
  if (m.type !== 'BPE' || m.byte_fallback || m.continuing_subword_prefix || m.end_of_word_suffix) return false;
  if (m.dropout !== null && m.dropout !== undefined && m.dropout !== 0) return false;
  if (j.normalizer !== null && j.normalizer !== undefined) return false;
  if (!isObj(pre) || pre.type !== 'ByteLevel' || pre.use_regex === false) return false;
  if (!isObj(dec) || dec.type !== 'ByteLevel') return false;
  if (!isObj(m.vocab) || !BYTE_TO_CHAR.every((c) => c in (m.vocab as Json))) return false;
  const added = (j.added_tokens ?? []) as Json[];
  return Array.isArray(added) && added.every((t) => !t.lstrip && !t.rstrip && !t.single_word);
}

function byteLevelFromJson(j: Json, source: string): ByteLevelBpeTokenizer {
  const m = j.model as Json;
  const vocab = m.vocab as Record<string, unknown>;
  const tokens: string[] = [];
  for (const [t, id] of Object.entries(vocab)) {
    if (!Number.isInteger(id) || (id as number) < 0) throw new Error(`${source}: vocab entry "${t}" has a bad id ${id}`);
    tokens[id as number] = t;
  }
  const addedTokens: AddedToken[] = ((j.added_tokens ?? []) as Json[]).map((t) => {
    if (!Number.isInteger(t.id) || typeof t.content !== 'string') throw new Error(`${source}: malformed added_tokens entry`);
    tokens[t.id as number] = t.content;
    return { id: t.id as number, content: t.content, special: Boolean(t.special) };
  });
  for (let i = 0; i < tokens.length; i++) {
    if (tokens[i] === undefined) throw new Error(`${source}: vocabulary has no token with id ${i} (ids must be contiguous)`);
  }
  const merges = ((m.merges ?? []) as unknown[]).map((x, i): [string, string] => {
    if (Array.isArray(x) && x.length === 2) return [String(x[0]), String(x[1])];
    if (typeof x === 'string') {
      const parts = x.split(' ');
      if (parts.length === 2) return [parts[0], parts[1]];
    }
    throw new Error(`${source}: merge #${i} is malformed (expected "a b" or ["a", "b"])`);
  });
  return new ByteLevelBpeTokenizer({
    tokens, merges, addedTokens,
    addPrefixSpace: Boolean((j.pre_tokenizer as Json).add_prefix_space),
    ignoreMerges: Boolean(m.ignore_merges),
    sourceJson: j,
  });
}
