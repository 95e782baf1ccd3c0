// Token ids of a dataset (.txt, .jsonl or a folder of them) without holding its text: the files are
// read in chunks that end at line breaks, each chunk is tokenized on its own and its ids are handed
// on, so a consumer that does not keep them (perplexity over windows) runs in constant memory.
import { documentPieces, type TextReadOptions } from './corpus.ts';
import type { Tokenizer } from './tokenizer.ts';

export interface StreamTokenOptions extends TextReadOptions {
  /** Append the tokenizer's EOS (if it has one) after each document, as tokenizeDocuments does (default true). */
  eos?: boolean;
}

/**
 * The ids of `path` in order, one Int32Array per chunk. They equal tokenizeDocuments on
 * loadTextDataset(path).documents (empty documents left out, EOS after each). A tokenizer that is
 * not chunkSafe (SentencePiece-style, which marks the start of every call) gets each document
 * whole, so only that one document's text is held. Throws, after reading, when the dataset holds no text.
 */
export function* streamTokens(path: string, tok: Tokenizer, o: StreamTokenOptions = {}): Generator<Int32Array> {
  const eos = o.eos !== false ? tok.eosId : undefined;
  // A document's leading whitespace waits until the document turns out to hold text.
  let pending = '';
  let started = false;
  let any = false;
  let whole: string[] = [];
  for (const piece of documentPieces(path, o)) {
    if (!tok.chunkSafe) {
      if (piece !== null) {
        whole.push(piece);
        continue;
      }
      const doc = whole.join('');
      whole = [];
      if (!/\S/.test(doc)) continue;
      any = true;
      yield Int32Array.from(tok.encode(doc));
      if (eos !== undefined) yield Int32Array.of(eos);
    } else if (piece === null) {
      if (started && eos !== undefined) yield Int32Array.of(eos);
      started = false;
      pending = '';
    } else if (started) {
      yield Int32Array.from(tok.encode(piece));
    } else {
      pending += piece;
      if (!/\S/.test(piece)) continue;
      started = any = true;
      const text = pending;
      pending = '';
      yield Int32Array.from(tok.encode(text));
    }
  }
  if (!any) throw new Error(`Dataset ${path} contains no text (all documents are empty)`);
}

/**
 * All ids of `path` in one array (for training, which needs them all), built from streamTokens so
 * the text itself is never held whole. `onProgress` gets the bytes read so far and the total size.
 */
export function tokenizeFileStreamed(path: string, tok: Tokenizer, onProgress?: (read: number, size: number) => void, chunkBytes?: number): Int32Array {
  let ids = new Int32Array(1 << 16);
  let n = 0;
  for (const got of streamTokens(path, tok, { onProgress, chunkBytes })) {
    if (n + got.length > ids.length) {
      const grown = new Int32Array(Math.max(ids.length * 2, n + got.length));
      grown.set(ids.subarray(0, n));
      ids = grown;
    }
    ids.set(got, n);
    n += got.length;
  }
  return ids.subarray(0, n);
}
