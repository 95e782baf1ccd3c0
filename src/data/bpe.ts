// Byte-level BPE tokenizer (GPT-2 scheme) with Hugging Face tokenizer.json import/export.
import { KeyHeap } from './heap.ts';
import { BYTE_TO_CHAR, byteCharsToBytes, GPT2_PATTERN, toByteChars, utf8 } from './byte-level.ts';
import {
  byteLevelPipeline, fingerprint, Utf8StreamDecoder, type StreamDecoder, type Tokenizer,
} from './tokenizer.ts';

export interface AddedToken {
  id: number;
  content: string;
  special: boolean;
}

export interface ByteLevelBpeSpec {
  /** Token strings indexed by id (byte-level characters, or an added token's content). */
  tokens: string[];
  merges: [string, string][];
  addedTokens: AddedToken[];
  /** Prepend a space to text that does not start with one (ByteLevel add_prefix_space). */
  addPrefixSpace?: boolean;
  /** Look a whole pre-token up in the vocabulary before merging (BPE ignore_merges). */
  ignoreMerges?: boolean;
  /** The tokenizer.json this was loaded from, re-emitted verbatim by toJSON so a round trip is exact. */
  sourceJson?: object;
}

const PAIR_SHIFT = 2 ** 21; // pair key = left * 2^21 + right; ids stay below 2^21 (2M tokens)
const SCAN_LIMIT = 48; // words up to this many bytes merge by a plain scan, longer ones through a heap
const CACHE_LIMIT = 200_000;

export class ByteLevelBpeTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId?: number;
  readonly eosId?: number;
  readonly merges: readonly [string, string][];
  private readonly tokens: string[];
  private readonly tokenToId = new Map<string, number>();
  private readonly byteId = new Int32Array(256);
  private readonly mergeRank = new Map<number, number>();
  private readonly mergeResult = new Map<number, number>();
  private readonly tokenBytes: Uint8Array[];
  private readonly added: AddedToken[];
  private readonly addedPattern: RegExp | null;
  private readonly addedByContent = new Map<string, number>();
  private readonly addPrefixSpace: boolean;
  private readonly ignoreMerges: boolean;
  private readonly sourceJson?: object;
  private readonly cache = new Map<string, number[]>();
  private fp?: string;
  /** The GPT-2 pattern always ends a pre-token before a line break that follows a non-space. */
  readonly chunkSafe: boolean;

  constructor(spec: ByteLevelBpeSpec) {
    this.tokens = spec.tokens;
    this.merges = spec.merges;
    this.added = spec.addedTokens;
    this.addPrefixSpace = spec.addPrefixSpace ?? false;
    this.chunkSafe = !this.addPrefixSpace && !spec.addedTokens.some((t) => t.content.includes('\n'));
    this.ignoreMerges = spec.ignoreMerges ?? false;
    this.sourceJson = spec.sourceJson;
    this.vocabSize = spec.tokens.length;
    if (this.vocabSize >= PAIR_SHIFT) throw new Error(`BPE vocabulary of ${this.vocabSize} tokens exceeds 2^21`);
    const addedIds = new Set(spec.addedTokens.map((t) => t.id));
    spec.tokens.forEach((t, id) => {
      if (!addedIds.has(id)) this.tokenToId.set(t, id);
    });
    for (let b = 0; b < 256; b++) {
      const id = this.tokenToId.get(BYTE_TO_CHAR[b]);
      if (id === undefined) throw new Error(`BPE vocabulary lacks the byte token for 0x${b.toString(16)}`);
      this.byteId[b] = id;
    }
    spec.merges.forEach(([a, b], rank) => {
      const l = this.tokenToId.get(a);
      const r = this.tokenToId.get(b);
      const m = this.tokenToId.get(a + b);
      if (l === undefined || r === undefined || m === undefined) {
        throw new Error(`BPE merge #${rank} "${a} ${b}" refers to a token missing from the vocabulary`);
      }
      const key = l * PAIR_SHIFT + r;
      if (!this.mergeRank.has(key)) {
        this.mergeRank.set(key, rank);
        this.mergeResult.set(key, m);
      }
    });
    this.tokenBytes = spec.tokens.map((t, id) =>
      addedIds.has(id) ? utf8(t) : Uint8Array.from(byteCharsToBytes(t) ?? utf8(t)),
    );
    for (const t of spec.addedTokens) this.addedByContent.set(t.content, t.id);
    // Longest first so that an added token containing another one wins.
    const contents = spec.addedTokens.map((t) => t.content).sort((a, b) => b.length - a.length);
    this.addedPattern = contents.length
      ? new RegExp(contents.map((c) => c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g')
      : null;
    const find = (names: string[]) => spec.addedTokens.find((t) => names.includes(t.content))?.id;
    this.eosId = find(['<|endoftext|>', '</s>', '<|eos|>', '<eos>']);
    this.bosId = find(['<s>', '<|bos|>', '<bos>', '<|begin_of_text|>']);
  }

  /** Token string of an id (byte-level characters for ordinary tokens). */
  token(id: number): string {
    this.checkId(id);
    return this.tokens[id];
  }

  encode(text: string): number[] {
    const out: number[] = [];
    if (!this.addedPattern) {
      this.encodeSegment(text, out);
      return out;
    }
    let last = 0;
    for (const m of text.matchAll(this.addedPattern)) {
      if (m.index! > last) this.encodeSegment(text.slice(last, m.index), out);
      out.push(this.addedByContent.get(m[0])!);
      last = m.index! + m[0].length;
    }
    if (last < text.length) this.encodeSegment(text.slice(last), out);
    return out;
  }

  private encodeSegment(text: string, out: number[]): void {
    if (this.addPrefixSpace && !text.startsWith(' ')) text = ' ' + text;
    for (const m of text.matchAll(GPT2_PATTERN)) {
      const word = m[0];
      let ids = this.cache.get(word);
      if (ids === undefined) {
        ids = this.encodeWord(word);
        if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
        this.cache.set(word, ids);
      }
      for (let i = 0; i < ids.length; i++) out.push(ids[i]);
    }
  }

  /** BPE on one pre-token: repeatedly apply the lowest-rank merge, leftmost first. */
  private encodeWord(word: string): number[] {
    if (this.ignoreMerges) {
      const whole = this.tokenToId.get(toByteChars(word));
      if (whole !== undefined) return [whole];
    }
    const bytes = utf8(word);
    const syms: number[] = new Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) syms[i] = this.byteId[bytes[i]];
    return syms.length <= SCAN_LIMIT ? this.mergeByScan(syms) : this.mergeByHeap(syms);
  }

  private mergeByScan(syms: number[]): number[] {
    while (syms.length > 1) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < syms.length; i++) {
        const r = this.mergeRank.get(syms[i] * PAIR_SHIFT + syms[i + 1]);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = i;
        }
      }
      if (best < 0) break;
      syms[best] = this.mergeResult.get(syms[best] * PAIR_SHIFT + syms[best + 1])!;
      syms.splice(best + 1, 1);
    }
    return syms;
  }

  // Same result as mergeByScan in O(n log n): symbols form a linked list, candidate merges sit in a
  // heap ordered by (rank, position); stale entries are skipped when popped.
  private mergeByHeap(syms: number[]): number[] {
    const n = syms.length;
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const alive = new Uint8Array(n).fill(1);
    type Cand = { rank: number; pos: number; left: number; right: number };
    const heap = new KeyHeap<Cand>((a, b) => a.rank < b.rank || (a.rank === b.rank && a.pos < b.pos));
    const consider = (i: number) => {
      const j = next[i];
      if (i < 0 || j < 0) return;
      const rank = this.mergeRank.get(syms[i] * PAIR_SHIFT + syms[j]);
      if (rank !== undefined) heap.push({ rank, pos: i, left: syms[i], right: syms[j] });
    };
    for (let i = 0; i + 1 < n; i++) consider(i);
    while (heap.size) {
      const c = heap.pop()!;
      const i = c.pos;
      const j = next[i];
      if (!alive[i] || j < 0 || syms[i] !== c.left || syms[j] !== c.right) continue;
      syms[i] = this.mergeResult.get(c.left * PAIR_SHIFT + c.right)!;
      alive[j] = 0;
      next[i] = next[j];
      if (next[j] >= 0) prev[next[j]] = i;
      consider(prev[i]);
      consider(i);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(syms[i]);
    return out;
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new Error(`Token id ${id} is outside this tokenizer's vocabulary (0..${this.vocabSize - 1}); ` +
        'was the model trained with a different tokenizer?');
    }
  }

  private idsToBytes(ids: number[]): Uint8Array {
    let len = 0;
    for (const id of ids) {
      this.checkId(id);
      len += this.tokenBytes[id].length;
    }
    const out = new Uint8Array(len);
    let o = 0;
    for (const id of ids) {
      out.set(this.tokenBytes[id], o);
      o += this.tokenBytes[id].length;
    }
    return out;
  }

  decode(ids: number[]): string {
    return new TextDecoder().decode(this.idsToBytes(ids));
  }

  decodeStream(): StreamDecoder {
    const d = new Utf8StreamDecoder();
    return { push: (id) => d.push(this.idsToBytes([id])), flush: () => d.flush() };
  }

  toJSON(): object {
    if (this.sourceJson) return this.sourceJson;
    const vocab: Record<string, number> = {};
    this.tokens.forEach((t, id) => {
      vocab[t] = id;
    });
    const pipeline = byteLevelPipeline(this.addPrefixSpace);
    return {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: this.added.map((t) => ({
        id: t.id, content: t.content, single_word: false, lstrip: false, rstrip: false,
        normalized: false, special: t.special,
      })),
      ...pipeline,
      model: {
        type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null,
        end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: this.ignoreMerges,
        vocab, merges: this.merges.map(([a, b]) => [a, b]),
      },
    };
  }

  id(): string {
    return (this.fp ??= fingerprint(this.toJSON()));
  }
}
