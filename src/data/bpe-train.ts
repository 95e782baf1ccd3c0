// Byte-level BPE training: count pre-token words once, then learn merges from pair counts weighted by
// word frequency. Each merge only revisits the words that contain the merged pair and updates pair
// counts incrementally; a max-heap with lazily corrected counts picks the next pair.
import { KeyHeap } from './heap.ts';
import { byteAlphabet, BYTE_TO_CHAR, GPT2_PATTERN, utf8 } from './byte-level.ts';
import { ByteLevelBpeTokenizer, type AddedToken } from './bpe.ts';

export interface TrainBpeOptions {
  /** Final vocabulary size including special tokens and the 256 byte tokens. */
  vocabSize: number;
  /** Stop merging when the most frequent pair occurs fewer times than this (default 2). */
  minFrequency?: number;
  /** Added tokens that get the first ids (default ['<|endoftext|>'], which also serves as EOS). */
  specialTokens?: string[];
}

const PAIR_SHIFT = 2 ** 21;

/** Counts pre-token words over all texts. */
function countWords(texts: Iterable<string> | string): Map<string, number> {
  const counts = new Map<string, number>();
  const all = typeof texts === 'string' ? [texts] : texts;
  for (const text of all) {
    if (typeof text !== 'string') throw new Error('trainBpe: texts must be strings');
    for (const m of text.matchAll(GPT2_PATTERN)) {
      const w = m[0];
      counts.set(w, (counts.get(w) ?? 0) + 1);
    }
  }
  return counts;
}

export function trainBpe(texts: Iterable<string> | string, options: TrainBpeOptions): ByteLevelBpeTokenizer {
  const specials = options.specialTokens ?? ['<|endoftext|>'];
  const minFrequency = options.minFrequency ?? 2;
  const { vocabSize } = options;
  if (!Number.isInteger(vocabSize) || vocabSize < specials.length + 256 || vocabSize >= PAIR_SHIFT) {
    throw new Error(`trainBpe: vocabSize must be an integer from ${specials.length + 256} ` +
      `(256 bytes + ${specials.length} special tokens) up to ${PAIR_SHIFT - 1}, got ${vocabSize}`);
  }
  if (new Set(specials).size !== specials.length || specials.some((s) => s.length === 0)) {
    throw new Error('trainBpe: specialTokens must be distinct non-empty strings');
  }

  const tokens: string[] = [...specials];
  const addedTokens: AddedToken[] = specials.map((content, id) => ({ id, content, special: true }));
  const tokenToId = new Map<string, number>();
  for (const ch of byteAlphabet()) {
    tokenToId.set(ch, tokens.length);
    tokens.push(ch);
  }
  const byteId = BYTE_TO_CHAR.map((ch) => tokenToId.get(ch)!);

  // Words as symbol-id arrays with their corpus frequency.
  const counts = countWords(texts);
  if (counts.size === 0) throw new Error('trainBpe: the training text is empty');
  const words: number[][] = [];
  const freqs: number[] = [];
  for (const [w, f] of counts) {
    const bytes = utf8(w);
    words.push(Array.from(bytes, (b) => byteId[b]));
    freqs.push(f);
  }

  const pairCount = new Map<number, number>();
  const where = new Map<number, Set<number>>();
  for (let w = 0; w < words.length; w++) {
    const s = words[w];
    for (let i = 0; i + 1 < s.length; i++) {
      const k = s[i] * PAIR_SHIFT + s[i + 1];
      pairCount.set(k, (pairCount.get(k) ?? 0) + freqs[w]);
      let set = where.get(k);
      if (!set) where.set(k, (set = new Set()));
      set.add(w);
    }
  }

  // Highest count first; ties go to the smaller (left, right) id pair so training is deterministic.
  type Entry = { key: number; count: number };
  const heap = new KeyHeap<Entry>((a, b) => a.count > b.count || (a.count === b.count && a.key < b.key));
  for (const [key, count] of pairCount) heap.push({ key, count });

  const merges: [string, string][] = [];
  const grown = new Set<number>();
  const add = (k: number, delta: number, w: number) => {
    pairCount.set(k, (pairCount.get(k) ?? 0) + delta);
    if (delta > 0) {
      grown.add(k);
      let set = where.get(k);
      if (!set) where.set(k, (set = new Set()));
      set.add(w);
    }
  };

  while (tokens.length < vocabSize && heap.size > 0) {
    const top = heap.pop()!;
    const current = pairCount.get(top.key) ?? 0;
    if (current !== top.count) {
      if (current > 0) heap.push({ key: top.key, count: current });
      continue;
    }
    if (current < minFrequency || current <= 0) break;
    const a = Math.floor(top.key / PAIR_SHIFT);
    const b = top.key - a * PAIR_SHIFT;
    const merged = tokens[a] + tokens[b];
    // Two merge paths can spell the same string ("a"+"bc", "ab"+"c"): reuse the existing id.
    let newId = tokenToId.get(merged);
    if (newId === undefined) {
      newId = tokens.length;
      tokens.push(merged);
      tokenToId.set(merged, newId);
    }
    merges.push([tokens[a], tokens[b]]);

    grown.clear();
    for (const w of where.get(top.key) ?? []) {
      const s = words[w];
      const f = freqs[w];
      for (let i = 0; i + 1 < s.length; i++) {
        if (s[i] !== a || s[i + 1] !== b) continue;
        if (i > 0) {
          add(s[i - 1] * PAIR_SHIFT + a, -f, w);
          add(s[i - 1] * PAIR_SHIFT + newId, f, w);
        }
        if (i + 2 < s.length) {
          add(b * PAIR_SHIFT + s[i + 2], -f, w);
          add(newId * PAIR_SHIFT + s[i + 2], f, w);
        }
        add(top.key, -f, w);
        s[i] = newId;
        s.splice(i + 1, 1);
      }
    }
    pairCount.delete(top.key);
    where.delete(top.key);
    for (const k of grown) {
      const c = pairCount.get(k)!;
      if (c > 0) heap.push({ key: k, count: c });
    }
  }

  return new ByteLevelBpeTokenizer({ tokens, merges, addedTokens });
}
