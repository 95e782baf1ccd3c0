// Chat prompts: the chat template of a model's tokenizer_config.json (Hugging Face layout) or of a
// GGUF file's metadata (tokenizer.chat_template), rendered with @huggingface/jinja the way
// transformers' apply_chat_template does.
import { existsSync } from 'node:fs';
import { readTextFile } from '../io/safe-read.ts';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';

export interface ChatMessage {
  role: string;
  content: string;
}

export interface ChatTemplate {
  render(messages: ChatMessage[]): string;
  /** The BOS text the template writes itself (so it is not added a second time), if any. */
  readonly bosToken?: string;
}

const tokenText = (t: unknown): string | undefined =>
  typeof t === 'string' ? t : t && typeof t === 'object' && typeof (t as { content?: unknown }).content === 'string' ? (t as { content: string }).content : undefined;

/** The template of a parsed tokenizer_config.json, or undefined when it has none. */
export function chatTemplateFrom(cfg: Record<string, unknown>, source = 'tokenizer_config.json'): ChatTemplate | undefined {
  let src = cfg.chat_template;
  // Several named templates: the one called "default" is the chat template.
  if (Array.isArray(src)) src = src.find((t) => t && t.name === 'default')?.template;
  if (src === undefined || src === null) return undefined;
  if (typeof src !== 'string') throw new Error(`${source}: chat_template must be a string or a list of {name, template}`);
  let tpl: Template;
  try {
    tpl = new Template(src);
  } catch (e) {
    throw new Error(`${source}: chat_template does not parse (${(e as Error).message})`);
  }
  const bos = tokenText(cfg.bos_token);
  const eos = tokenText(cfg.eos_token);
  return {
    bosToken: bos,
    render: (messages) => tpl.render({ messages, bos_token: bos ?? '', eos_token: eos ?? '', add_generation_prompt: true }),
  };
}

/** The chat template stored beside a model (dir/tokenizer_config.json), if any. */
export function loadChatTemplate(dir: string): ChatTemplate | undefined {
  const p = join(dir, 'tokenizer_config.json');
  if (!existsSync(p)) return undefined;
  const text = readTextFile(p, { root: dir, what: 'tokenizer config' });
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(text);
  } catch (e) {
    throw new Error(`${p} is not valid JSON (${(e as Error).message})`);
  }
  return chatTemplateFrom(cfg, p);
}

/**
 * The template a GGUF file carries (tokenizer.chat_template), or undefined when it has none; its
 * bos_token and eos_token are the texts of tokenizer.ggml.bos_token_id / eos_token_id.
 */
export function chatTemplateFromGguf(meta: ReadonlyMap<string, unknown>, what = 'GGUF'): ChatTemplate | undefined {
  const src = meta.get('tokenizer.chat_template');
  if (src === undefined) return undefined;
  if (typeof src !== 'string') throw new Error(`${what}: tokenizer.chat_template must be a string`);
  const tokens = meta.get('tokenizer.ggml.tokens');
  const text = (key: string) => {
    const id = meta.get(key);
    return Array.isArray(tokens) && typeof id === 'number' && Number.isInteger(id) && id >= 0 && id < tokens.length && typeof tokens[id] === 'string' ? tokens[id] : undefined;
  };
  return chatTemplateFrom({ chat_template: src, bos_token: text('tokenizer.ggml.bos_token_id'), eos_token: text('tokenizer.ggml.eos_token_id') }, `${what} (tokenizer.chat_template)`);
}
