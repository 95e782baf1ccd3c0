// Chat prompts: the chat template of a model's tokenizer_config.json (Hugging Face layout), rendered
// with @huggingface/jinja the way transformers' apply_chat_template does.
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
