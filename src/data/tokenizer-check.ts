// Structural checks of a tokenizer.json before any tokenizer is built from it: every field the
// builders read has the type they expect, and no pre-tokenizer regex can backtrack without bound.
type Json = Record<string, unknown>;

/** Largest vocabulary a tokenizer.json may declare (far above any released tokenizer). */
const MAX_TOKENIZER_VOCAB = 1 << 22;

const isObj = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);
const isId = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0 && (v as number) < MAX_TOKENIZER_VOCAB;

/**
 * True when `pattern` has a quantified group that itself contains an unbounded quantifier, as in
 * `(a+)+` or `(\w*)*`: such nesting lets a regex engine try exponentially many splits of one input.
 */
function hasNestedQuantifier(pattern: string): boolean {
  // Per open group: whether an unbounded quantifier occurred inside it.
  const stack: boolean[] = [];
  let lastGroupHadQuant = false; // the atom just closed was a group containing one
  const unboundedAt = (i: number): boolean => {
    const c = pattern[i];
    if (c === '+' || c === '*') return true;
    if (c === '{') {
      const m = /^\{(\d*)(,(\d*))?\}/.exec(pattern.slice(i));
      return m !== null && m[2] !== undefined && (m[3] === '' || Number(m[3]) > 32);
    }
    return false;
  };
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') {
      i++;
      lastGroupHadQuant = false;
      continue;
    }
    if (c === '[') {
      // Skip a character class (its brackets and escapes are literal content).
      i++;
      if (pattern[i] === '^') i++;
      if (pattern[i] === ']') i++;
      while (i < pattern.length && pattern[i] !== ']') i += pattern[i] === '\\' ? 2 : 1;
      lastGroupHadQuant = false;
      continue;
    }
    if (c === '(') {
      stack.push(false);
      lastGroupHadQuant = false;
      continue;
    }
    if (c === ')') {
      const had = stack.pop() ?? false;
      lastGroupHadQuant = had;
      if (had && stack.length) stack[stack.length - 1] = true;
      continue;
    }
    if (unboundedAt(i)) {
      if (lastGroupHadQuant) return true;
      if (stack.length) stack[stack.length - 1] = true;
    }
    if (c !== '?' ) lastGroupHadQuant = false;
  }
  return false;
}

function checkPatterns(v: unknown, source: string, path: string, depth: number): void {
  if (depth > 64) throw new Error(`${source} nests deeper than 64 levels at ${path}; it is not a tokenizer.json`);
  if (Array.isArray(v)) {
    v.forEach((x, i) => checkPatterns(x, source, `${path}[${i}]`, depth + 1));
    return;
  }
  if (!isObj(v)) return;
  for (const [k, x] of Object.entries(v)) {
    if (k === 'Regex' && typeof x === 'string' && hasNestedQuantifier(x)) {
      throw new Error(`${source}: the regex ${JSON.stringify(x.length > 60 ? `${x.slice(0, 60)}...` : x)} at ${path} nests repetitions (like (a+)+), which can take exponential time on some inputs; refusing it`);
    }
    checkPatterns(x, source, `${path}.${k}`, depth + 1);
  }
}

/** Throws one clear line when a parsed tokenizer.json has a field of the wrong shape. */
export function checkTokenizerJson(j: Json, source: string): void {
  const bad = (what: string) => new Error(`${source} is malformed: ${what}`);
  const added = j.added_tokens;
  if (added !== undefined && added !== null) {
    if (!Array.isArray(added)) throw bad('"added_tokens" must be a list');
    added.forEach((t, i) => {
      if (!isObj(t) || !isId(t.id) || typeof t.content !== 'string') throw bad(`added_tokens[${i}] must be an object with an integer "id" and a string "content"`);
    });
  }
  const m = j.model as Json;
  if (!isObj(m)) throw bad('"model" must be an object');
  if (Array.isArray(m.vocab)) {
    if (m.vocab.length > MAX_TOKENIZER_VOCAB) throw bad(`the vocabulary has ${m.vocab.length} entries, more than ${MAX_TOKENIZER_VOCAB}`);
    m.vocab.forEach((e, i) => {
      if (!Array.isArray(e) || typeof e[0] !== 'string' || typeof e[1] !== 'number') throw bad(`model.vocab[${i}] must be a [token, score] pair`);
    });
  } else if (isObj(m.vocab)) {
    const entries = Object.entries(m.vocab);
    if (entries.length > MAX_TOKENIZER_VOCAB) throw bad(`the vocabulary has ${entries.length} entries, more than ${MAX_TOKENIZER_VOCAB}`);
    for (const [t, id] of entries) if (!isId(id)) throw bad(`model.vocab entry ${JSON.stringify(t)} has id ${JSON.stringify(id)}, not a token id`);
  } else {
    throw bad('"model.vocab" must be an object (token -> id) or a list of [token, score]');
  }
  if (m.merges !== undefined && m.merges !== null) {
    if (!Array.isArray(m.merges)) throw bad('"model.merges" must be a list of "a b" strings or [a, b] pairs');
    m.merges.forEach((x, i) => {
      const ok = typeof x === 'string' || (Array.isArray(x) && x.length === 2 && x.every((p) => typeof p === 'string'));
      if (!ok) throw bad(`model.merges[${i}] must be "a b" or ["a", "b"]`);
    });
  }
  for (const k of ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder']) {
    if (j[k] !== undefined && j[k] !== null && !isObj(j[k])) throw bad(`"${k}" must be an object or null`);
  }
  checkPatterns(j, source, '$', 0);
}
