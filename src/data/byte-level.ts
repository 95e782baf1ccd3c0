// GPT-2 byte-level scheme: every byte maps to one printable unicode character so that BPE works on
// strings without control characters or spaces, and the vocabulary reads cleanly in tokenizer.json.

/** The GPT-2 pre-tokenization pattern (contractions, letters, numbers, punctuation, whitespace). */
export const GPT2_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

function buildByteToChar(): string[] {
  const keep: number[] = [];
  for (let b = 33; b <= 126; b++) keep.push(b);
  for (let b = 161; b <= 172; b++) keep.push(b);
  for (let b = 174; b <= 255; b++) keep.push(b);
  const map: string[] = new Array(256);
  for (const b of keep) map[b] = String.fromCharCode(b);
  // Bytes that are not printable are shifted into the range starting at U+0100, in byte order.
  let n = 0;
  for (let b = 0; b < 256; b++) if (map[b] === undefined) map[b] = String.fromCharCode(256 + n++);
  return map;
}

export const BYTE_TO_CHAR: readonly string[] = buildByteToChar();
const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

const encoder = new TextEncoder();

/** Splits text into GPT-2 pre-tokens. */
export function preTokenize(text: string): string[] {
  return text.match(GPT2_PATTERN) ?? [];
}

/** UTF-8 bytes of a string (lone surrogates become U+FFFD, as in TextEncoder). */
export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Maps a pre-token to its byte-level character string. */
export function toByteChars(text: string): string {
  const bytes = encoder.encode(text);
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += BYTE_TO_CHAR[bytes[i]];
  return s;
}

/** Inverse of toByteChars for a token string; returns null if it holds a non byte-level character. */
export function byteCharsToBytes(token: string): number[] | null {
  const out: number[] = [];
  for (const ch of token) {
    const b = CHAR_TO_BYTE.get(ch);
    if (b === undefined) return null;
    out.push(b);
  }
  return out;
}

/** The 256 byte characters ordered by code point, the order a BPE trainer assigns their ids in. */
export function byteAlphabet(): string[] {
  return [...BYTE_TO_CHAR].sort((a, b) => a.charCodeAt(0) - b.charCodeAt(0));
}
