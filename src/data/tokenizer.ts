// The tokenizer contract shared by the byte tokenizer, our byte-level BPE and any loaded HF tokenizer.
import { sha256Hex } from './sha256.ts';
import { BYTE_TO_CHAR, utf8 } from './byte-level.ts';

/** Incremental decoder: emits text as soon as the ids seen so far form complete characters. */
export interface StreamDecoder {
  push(id: number): string;
  /** Emits whatever is buffered (incomplete UTF-8 becomes U+FFFD). */
  flush(): string;
}

export interface Tokenizer {
  readonly vocabSize: number;
  /** Ids of the text alone: no BOS/EOS is added (callers add bosId/eosId where they want them). */
  encode(text: string): number[];
  decode(ids: number[]): string;
  decodeStream?(): StreamDecoder;
  readonly bosId?: number;
  readonly eosId?: number;
  /** Hugging Face tokenizer.json contents. */
  toJSON(): object;
  /** Stable fingerprint of the vocabulary and rules, to detect a model/tokenizer mismatch. */
  id(): string;
}

/** JSON with object keys sorted, so equal contents give equal strings whatever the insertion order. */
function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return '[' + value.map(canonicalJson).join(',') + ']';
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
  return '{' + keys.map((k) => JSON.stringify(k) + ':' + canonicalJson(obj[k])).join(',') + '}';
}

export function fingerprint(tokenizerJson: object): string {
  return sha256Hex(canonicalJson(tokenizerJson)).slice(0, 16);
}

/** Decodes raw bytes as they arrive, holding back an incomplete UTF-8 sequence. */
export class Utf8StreamDecoder {
  private decoder = new TextDecoder('utf-8');
  push(bytes: Uint8Array): string {
    return this.decoder.decode(bytes, { stream: true });
  }
  flush(): string {
    return this.decoder.decode();
  }
}

/** tokenizer.json sections for a GPT-2 style byte-level pipeline (no normalizer, no added prefix space). */
export function byteLevelPipeline(addPrefixSpace = false) {
  const byteLevel = () => ({ type: 'ByteLevel', add_prefix_space: addPrefixSpace, trim_offsets: true, use_regex: true });
  return {
    normalizer: null,
    pre_tokenizer: byteLevel(),
    post_processor: { ...byteLevel(), trim_offsets: false },
    decoder: byteLevel(),
  };
}

/** Raw UTF-8 bytes as ids 0..255; no special tokens. For tests and byte-level baselines. */
export class ByteTokenizer implements Tokenizer {
  readonly vocabSize = 256;
  private fp?: string;

  encode(text: string): number[] {
    return Array.from(utf8(text));
  }

  decode(ids: number[]): string {
    for (const id of ids) checkByteId(id);
    return new TextDecoder().decode(Uint8Array.from(ids));
  }

  decodeStream(): StreamDecoder {
    const d = new Utf8StreamDecoder();
    return {
      push: (id) => d.push(Uint8Array.of(checkByteId(id))),
      flush: () => d.flush(),
    };
  }

  /** A byte-level BPE with no merges and id = byte value: loading it back encodes identically. */
  toJSON(): object {
    const vocab: Record<string, number> = {};
    for (let b = 0; b < 256; b++) vocab[BYTE_TO_CHAR[b]] = b;
    return {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [],
      ...byteLevelPipeline(),
      model: {
        type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null,
        end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false,
        vocab, merges: [],
      },
    };
  }

  id(): string {
    return (this.fp ??= fingerprint(this.toJSON()));
  }
}

function checkByteId(id: number): number {
  if (!Number.isInteger(id) || id < 0 || id > 255) {
    throw new Error(`ByteTokenizer.decode: id ${id} is not a byte (expected an integer in 0..255)`);
  }
  return id;
}
