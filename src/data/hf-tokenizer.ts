// Any Hugging Face tokenizer.json (SentencePiece-style BPE with byte fallback, WordPiece, Unigram, ...)
// through the @huggingface/tokenizers package, which runs offline in Node and in browsers.
import { Tokenizer as HfRuntime } from '@huggingface/tokenizers';
import { fingerprint, type StreamDecoder, type Tokenizer } from './tokenizer.ts';

type TokenSpec = string | { content?: string } | null | undefined;

export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId?: number;
  readonly eosId?: number;
  private readonly runtime: HfRuntime;
  private fp?: string;

  /** `config` is the optional tokenizer_config.json (it names the BOS/EOS tokens). */
  constructor(private readonly json: Record<string, unknown>, private readonly config: Record<string, unknown> = {}) {
    try {
      this.runtime = new HfRuntime(json, config);
      // Some malformed fields only fail when text goes through them: find out now, not mid-run.
      this.runtime.encode('Ab 1, x.', { add_special_tokens: false });
    } catch (e) {
      throw new Error(`Unsupported or malformed tokenizer.json: ${(e as Error).message}`);
    }
    let max = -1;
    for (const id of this.runtime.get_vocab(true).values()) max = Math.max(max, id);
    this.vocabSize = max + 1;
    this.bosId = this.specialId(config.bos_token as TokenSpec, ['<s>', '<|begin_of_text|>', '<bos>']);
    this.eosId = this.specialId(config.eos_token as TokenSpec, ['</s>', '<|endoftext|>', '<|end_of_text|>', '<eos>']);
  }

  private specialId(configured: TokenSpec, fallbacks: string[]): number | undefined {
    const name = typeof configured === 'string' ? configured : configured?.content;
    for (const t of name ? [name] : fallbacks) {
      const id = this.runtime.token_to_id(t);
      if (id !== undefined) return id;
    }
    return undefined;
  }

  encode(text: string): number[] {
    return this.guard(() => this.runtime.encode(text, { add_special_tokens: false }).ids);
  }

  /** A crash inside the tokenizer runtime comes from a field it did not expect: report it as the file's fault. */
  private guard<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof TypeError || e instanceof RangeError) throw new Error(`Unsupported or malformed tokenizer.json: ${e.message}`);
      throw e;
    }
  }

  decode(ids: number[]): string {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new Error(`Token id ${id} is outside this tokenizer's vocabulary (0..${this.vocabSize - 1}); ` +
          'was the model trained with a different tokenizer?');
      }
    }
    if (ids.length === 0) return '';
    return this.guard(() => this.runtime.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false }));
  }

  /**
   * Decodes a window of recent ids and emits the text that the newest id added, once it no longer ends
   * in an incomplete character (byte-fallback tokens can split one character over several ids).
   */
  decodeStream(): StreamDecoder {
    const ids: number[] = [];
    let prefix = 0; // start of the window
    let read = 0; // ids before this one have been emitted
    return {
      push: (id) => {
        ids.push(id);
        const before = this.decode(ids.slice(prefix, read));
        const after = this.decode(ids.slice(prefix));
        if (after.endsWith('\uFFFD') || after.length <= before.length || !after.startsWith(before)) return '';
        prefix = read;
        read = ids.length;
        return after.slice(before.length);
      },
      flush: () => {
        const before = this.decode(ids.slice(prefix, read));
        const after = this.decode(ids.slice(prefix));
        prefix = read = ids.length;
        return after.startsWith(before) ? after.slice(before.length) : '';
      },
    };
  }

  toJSON(): object {
    return this.json;
  }

  /** tokenizer_config.json contents given at load time (empty when there was none). */
  tokenizerConfig(): object {
    return this.config;
  }

  id(): string {
    return (this.fp ??= fingerprint(this.json));
  }
}
