// frugal pack: stores an FBI model with its binarized weights as packed sign bits (1 bit per weight).
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { writeFileAtomic } from '../io/atomic.ts';
import { join, resolve } from 'node:path';
import { savePackedModel } from '../infer/packed-linear.ts';
import { binarizedLinears } from '../nn/fbi-linear.ts';
import { loadModel, resolveModelDir } from '../train/checkpoint.ts';
import { type CommandSpec, type Flags, need, UsageError } from './args.ts';
import { fmtBytes, folderBytes } from './common.ts';

export const spec: CommandSpec = {
  name: 'pack',
  summary: 'pack an FBI checkpoint into the 1-bit serving format (sign bits + scales)',
  usage: 'frugal pack IN OUT [--head f16|int8] [--overwrite]   (or --model IN --out OUT)',
  positionals: ['IN', 'OUT'],
  flags: {
    model: { type: 'string', arg: 'DIR', help: 'FBI checkpoint folder' },
    out: { type: 'string', arg: 'DIR', help: 'folder for the packed model' },
    overwrite: { type: 'bool', help: 'write into OUT although it already holds files (the packed model replaces its model files atomically)' },
    head: { type: 'string', arg: 'f16|int8', help: 'LM head storage: f16 (default, as FBI-LLM) or int8 per row (half the bytes; see README for the perplexity change)' },
  },
};

const weights = (n: string) => n.endsWith('.safetensors') && !n.startsWith('optimizer');

/** Packs `dir` into `out` (tokenizer carried along); returns the two weight sizes in bytes. */
export function packFolder(dir: string, out: string, head: 'f16' | 'int8' = 'f16'): { before: number; after: number } {
  const src = resolveModelDir(dir);
  const model = loadModel(src);
  if (binarizedLinears(model).length === 0) throw new UsageError(`${src} has no FBI (binarized) linears; only FBI models can be packed`);
  const dst = resolve(out);
  if (dst === src) throw new UsageError('--out must differ from --model; packing replaces the folder it writes');
  if (head === 'int8' && model.config.tieEmbeddings) throw new UsageError(`${src} ties its LM head to the embedding; --head int8 needs an untied head`);
  savePackedModel(model, dst, { head: head === 'int8' ? 'int8' : undefined });
  if (existsSync(join(src, 'tokenizer.json'))) writeFileAtomic(join(dst, 'tokenizer.json'), readFileSync(join(src, 'tokenizer.json')));
  return { before: folderBytes(src, weights), after: folderBytes(dst, weights) };
}

export async function run(f: Flags, positional: string[] = []): Promise<number> {
  const src = positional[0] ?? need(f, 'model', 'pack');
  const dst = positional[1] ?? need(f, 'out', 'pack');
  const head = f.head === undefined ? 'f16' : String(f.head);
  if (head !== 'f16' && head !== 'int8') throw new UsageError(`--head must be f16 or int8, got '${head}'`);
  // Packing replaces the OUT folder whole: a folder that already holds something (another model, a
  // user's files) is only replaced when asked.
  const held = existsSync(dst) && statSync(dst).isDirectory() ? readdirSync(dst) : [];
  if (held.length && !f.overwrite) {
    throw new UsageError(`${resolve(dst)} already holds files (${held.slice(0, 3).join(', ')}${held.length > 3 ? ', ...' : ''}); pass --overwrite to replace it, or choose another folder`);
  }
  const { before, after } = packFolder(src, dst, head);
  console.log(`packed ${src} -> ${dst}: weights ${fmtBytes(before)} -> ${fmtBytes(after)} (${(before / after).toFixed(1)}x smaller)`);
  return 0;
}
