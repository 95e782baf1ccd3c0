// Token ids of a large text file without holding the text: the file is read in chunks, each cut at
// its last line break and tokenized on its own, and the ids go into one growing buffer.
import { closeSync, readSync } from 'node:fs';
import { openRegularFile } from '../io/safe-read.ts';
import type { Tokenizer } from './tokenizer.ts';

const CHUNK_BYTES = 4 << 20;

/**
 * Tokenizes a UTF-8 text file chunk by chunk. Chunks end at line breaks, so a tokenizer whose
 * pre-tokenizer splits at line breaks (byte-level BPE, bytes) gives the same ids as on the whole text.
 * Like tokenizeDocuments on the file as one document, the tokenizer's EOS (if any) follows it.
 * `onProgress` gets the bytes read so far and the file size.
 */
export function tokenizeFileStreamed(path: string, tok: Tokenizer, onProgress?: (read: number, size: number) => void, chunkBytes = CHUNK_BYTES): Int32Array {
  const { fd, size } = openRegularFile(path);
  let ids = new Int32Array(1 << 16);
  let n = 0;
  const push = (text: string) => {
    if (!text) return;
    const got = tok.encode(text);
    if (n + got.length > ids.length) {
      const grown = new Int32Array(Math.max(ids.length * 2, n + got.length));
      grown.set(ids.subarray(0, n));
      ids = grown;
    }
    ids.set(got, n);
    n += got.length;
  };
  try {
    const decoder = new TextDecoder('utf-8');
    const buf = Buffer.alloc(chunkBytes);
    let carry = '';
    let read = 0;
    for (;;) {
      const got = readSync(fd, buf, 0, chunkBytes, read);
      read += got;
      const text = carry + decoder.decode(buf.subarray(0, got), { stream: got > 0 });
      if (got === 0) {
        push(text);
        break;
      }
      const cut = text.lastIndexOf('\n') + 1;
      push(text.slice(0, cut));
      carry = text.slice(cut);
      onProgress?.(read, size);
    }
  } finally {
    closeSync(fd);
  }
  if (n === 0) throw new Error(`${path} contains no text`);
  if (tok.eosId !== undefined) push0(tok.eosId);
  return ids.subarray(0, n);

  function push0(id: number) {
    if (n === ids.length) {
      const grown = new Int32Array(n + 1);
      grown.set(ids);
      ids = grown;
    }
    ids[n++] = id;
  }
}
