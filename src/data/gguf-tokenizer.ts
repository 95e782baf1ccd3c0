// Tokenizers stored in GGUF metadata (tokenizer.ggml.*):
// - model 'llama': SentencePiece BPE with scores. Spaces become U+2581, a leading U+2581 is added
//   (tokenizer.ggml.add_space_prefix, default on), then the adjacent pair whose concatenation is the
//   highest-scoring token is merged until none is left (ties: leftmost); pieces not in the vocabulary
//   fall back to <0xXX> byte tokens.
// - model 'gpt2': byte-level BPE with merges, as a tokenizer.json (our byte-level BPE for the GPT-2
//   pre-tokenizer; other pre-tokenizer regexes through the Hugging Face runtime).
import { KeyHeap } from './heap.ts';
import { tokenizerFromJson } from './tokenizer-io.ts';
import { fingerprint, type StreamDecoder, type Tokenizer, Utf8StreamDecoder } from './tokenizer.ts';

type Meta = ReadonlyMap<string, unknown>;
const SPACE = '\u2581';
// llama.cpp token types
const CONTROL = 3, USER_DEFINED = 4, BYTE = 6;

export class SentencePieceBpeTokenizer implements Tokenizer {
  readonly vocabSize: number;
  private readonly ids = new Map<string, number>();
  private readonly byteIds = new Int32Array(256).fill(-1);
  private readonly byteOf: Int16Array;
  private fp?: string;

  constructor(
    private readonly tokens: string[], private readonly scores: Float32Array, private readonly types: Int32Array | undefined,
    readonly bosId?: number, readonly eosId?: number, private readonly unkId?: number, private readonly addSpacePrefix = true,
  ) {
    this.vocabSize = tokens.length;
    this.byteOf = new Int16Array(tokens.length).fill(-1);
    tokens.forEach((t, i) => {
      const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(t);
      if (byte && (!types || types[i] === BYTE)) {
        this.byteIds[parseInt(byte[1], 16)] = i;
        this.byteOf[i] = parseInt(byte[1], 16);
      } else if (!this.ids.has(t) && (!types || types[i] !== CONTROL)) this.ids.set(t, i);
    });
  }

  encode(text: string): number[] {
    if (!text) return [];
    let s = text.replaceAll(' ', SPACE);
    if (this.addSpacePrefix) s = SPACE + s;
    // Symbols as a doubly linked list over code points; merges keyed by score (highest first), then position.
    const sym = Array.from(s);
    const n = sym.length;
    const prev = Int32Array.from({ length: n }, (_, i) => i - 1);
    const next = Int32Array.from({ length: n }, (_, i) => (i + 1 < n ? i + 1 : -1));
    type Cand = { score: number; left: number; right: number; text: string };
    const heap = new KeyHeap<Cand>((a, b) => a.score > b.score || (a.score === b.score && a.left < b.left));
    const tryPair = (l: number, r: number) => {
      if (l < 0 || r < 0) return;
      const t = sym[l] + sym[r];
      const id = this.ids.get(t);
      if (id !== undefined) heap.push({ score: this.scores[id], left: l, right: r, text: t });
    };
    for (let i = 0; i + 1 < n; i++) tryPair(i, i + 1);
    while (heap.size) {
      const c = heap.pop()!;
      // Stale when either side changed since the candidate was made.
      if (next[c.left] !== c.right || sym[c.left] + sym[c.right] !== c.text) continue;
      sym[c.left] = c.text;
      sym[c.right] = '';
      next[c.left] = next[c.right];
      if (next[c.right] >= 0) prev[next[c.right]] = c.left;
      tryPair(prev[c.left], c.left);
      tryPair(c.left, next[c.left]);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0 && i < n; i = next[i]) {
      const id = this.ids.get(sym[i]);
      if (id !== undefined) {
        out.push(id);
        continue;
      }
      for (const b of new TextEncoder().encode(sym[i])) {
        const bid = this.byteIds[b];
        if (bid >= 0) out.push(bid);
        else if (this.unkId !== undefined) out.push(this.unkId);
        else throw new Error(`tokenizer: no token and no byte fallback for ${JSON.stringify(sym[i])}`);
      }
    }
    return out;
  }

  private bytesOf(id: number, first: boolean): Uint8Array {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new Error(`Token id ${id} is outside this tokenizer's vocabulary (0..${this.vocabSize - 1})`);
    if (this.byteOf[id] >= 0) return Uint8Array.of(this.byteOf[id]);
    if (this.types && this.types[id] === CONTROL) return new Uint8Array();
    let t = this.tokens[id].replaceAll(SPACE, ' ');
    if (first && this.addSpacePrefix && t.startsWith(' ')) t = t.slice(1);
    return new TextEncoder().encode(t);
  }

  decode(ids: number[]): string {
    const d = new Utf8StreamDecoder();
    let s = '';
    ids.forEach((id, i) => (s += d.push(this.bytesOf(id, i === 0))));
    return s + d.flush();
  }

  decodeStream(): StreamDecoder {
    const d = new Utf8StreamDecoder();
    let first = true;
    return {
      push: (id) => {
        const b = this.bytesOf(id, first);
        first = false;
        return d.push(b);
      },
      flush: () => d.flush(),
    };
  }

  /** A Hugging Face tokenizer.json of the same vocabulary (byte-fallback BPE; merges from the scores). */
  toJSON(): object {
    const vocab: Record<string, number> = {};
    this.tokens.forEach((t, i) => { if (!(t in vocab)) vocab[t] = i; });
    const merges: [string, string, number][] = [];
    this.tokens.forEach((t, i) => {
      const cps = Array.from(t);
      for (let k = 1; k < cps.length; k++) {
        const a = cps.slice(0, k).join(''), b = cps.slice(k).join('');
        if (this.ids.has(a) && this.ids.has(b)) merges.push([a, b, this.scores[i]]);
      }
    });
    merges.sort((x, y) => y[2] - x[2]);
    const special = this.tokens.map((t, i) => ({ t, i })).filter(({ i }) => this.types?.[i] === CONTROL);
    return {
      version: '1.0', truncation: null, padding: null,
      added_tokens: special.map(({ t, i }) => ({ id: i, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
      normalizer: { type: 'Sequence', normalizers: [...(this.addSpacePrefix ? [{ type: 'Prepend', prepend: SPACE }] : []), { type: 'Replace', pattern: { String: ' ' }, content: SPACE }] },
      pre_tokenizer: null, post_processor: null,
      decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: SPACE }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, ...(this.addSpacePrefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : [])] },
      model: { type: 'BPE', dropout: null, unk_token: this.unkId === undefined ? null : this.tokens[this.unkId], continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges: merges.map(([a, b]) => [a, b]) },
    };
  }

  id(): string {
    return (this.fp ??= fingerprint({ type: 'gguf-llama', tokens: this.tokens, scores: Array.from(this.scores), addSpacePrefix: this.addSpacePrefix }));
  }
}

// Pre-tokenizer regexes of the GGUF 'gpt2' tokenizers (tokenizer.ggml.pre), written without inline
// case-insensitive groups so JavaScript engines without regex modifiers accept them.
const CONTRACTIONS = "'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]";
const PRE_REGEX: Record<string, string | null> = {
  default: null, 'gpt-2': null, gpt2: null,
  qwen2: `${CONTRACTIONS}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`,
  'llama-bpe': `${CONTRACTIONS}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`,
};

function strings(meta: Meta, key: string, what: string): string[] {
  const v = meta.get(key);
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new Error(`${what}: ${key} is missing or is not a list of strings`);
  return v as string[];
}

function optionalId(meta: Meta, key: string, n: number): number | undefined {
  const v = meta.get(`tokenizer.ggml.${key}`);
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < n ? v : undefined;
}

/** The tokenizer stored in a GGUF's metadata, or undefined when the file has none. */
export function tokenizerFromGguf(meta: Meta, what = 'GGUF'): Tokenizer | undefined {
  const model = meta.get('tokenizer.ggml.model');
  if (model === undefined) return undefined;
  const tokens = strings(meta, 'tokenizer.ggml.tokens', what);
  const rawTypes = meta.get('tokenizer.ggml.token_type');
  const types = rawTypes instanceof Int32Array && rawTypes.length === tokens.length ? rawTypes : undefined;
  // BOS only where the file asks for it at the start of a text (tokenizer.ggml.add_bos_token, default on for 'llama').
  const addBos = meta.get('tokenizer.ggml.add_bos_token') ?? model === 'llama';
  const bos = addBos ? optionalId(meta, 'bos_token_id', tokens.length) : undefined, eos = optionalId(meta, 'eos_token_id', tokens.length);
  if (model === 'llama') {
    const scores = meta.get('tokenizer.ggml.scores');
    if (!(scores instanceof Float32Array) || scores.length !== tokens.length) throw new Error(`${what}: tokenizer.ggml.scores must hold one f32 score per token`);
    const prefix = meta.get('tokenizer.ggml.add_space_prefix');
    return new SentencePieceBpeTokenizer(tokens, scores, types, bos, eos, optionalId(meta, 'unknown_token_id', tokens.length), prefix === undefined ? true : Boolean(prefix));
  }
  if (model === 'gpt2') {
    const merges = meta.has('tokenizer.ggml.merges') ? strings(meta, 'tokenizer.ggml.merges', what) : [];
    const pre = String(meta.get('tokenizer.ggml.pre') ?? 'default');
    if (!(pre in PRE_REGEX)) throw new Error(`${what}: pre-tokenizer '${pre}' is not supported (supported: ${Object.keys(PRE_REGEX).join(', ')})`);
    const regex = PRE_REGEX[pre];
    const vocab: Record<string, number> = {};
    tokens.forEach((t, i) => { if (!(t in vocab)) vocab[t] = i; });
    const added = tokens.map((t, i) => ({ t, i })).filter(({ i }) => types && (types[i] === CONTROL || types[i] === USER_DEFINED))
      .map(({ t, i }) => ({ id: i, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: types![i] === CONTROL }));
    const byteLevel = (useRegex: boolean) => ({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: useRegex });
    const json = {
      version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: null,
      pre_tokenizer: regex === null ? byteLevel(true) : { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false }, byteLevel(false)] },
      post_processor: null,
      decoder: byteLevel(true),
      model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges },
    };
    const config: Record<string, unknown> = {};
    if (bos !== undefined) config.bos_token = tokens[bos];
    if (eos !== undefined) config.eos_token = tokens[eos];
    return tokenizerFromJson(json, config, `${what} (tokenizer.ggml.*)`);
  }
  throw new Error(`${what}: tokenizer model '${String(model)}' is not supported (supported: llama, gpt2)`);
}

/** GGUF tokenizer metadata for a SentencePiece-BPE vocabulary (tokens, scores, types). */
export function spmTokenizerMetadata(tokens: string[], scores: number[], types: number[], ids: { bos?: number; eos?: number; unk?: number } = {}): Record<string, string | string[] | Float32Array | Int32Array | number> {
  const m: Record<string, string | string[] | Float32Array | Int32Array | number> = {
    'tokenizer.ggml.model': 'llama', 'tokenizer.ggml.tokens': tokens,
    'tokenizer.ggml.scores': Float32Array.from(scores), 'tokenizer.ggml.token_type': Int32Array.from(types),
  };
  if (ids.bos !== undefined) m['tokenizer.ggml.bos_token_id'] = ids.bos;
  if (ids.eos !== undefined) m['tokenizer.ggml.eos_token_id'] = ids.eos;
  if (ids.unk !== undefined) m['tokenizer.ggml.unknown_token_id'] = ids.unk;
  return m;
}
