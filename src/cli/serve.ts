// frugal serve: an OpenAI-compatible HTTP server over one model, decoding concurrent requests
// together. SIGINT/SIGTERM stop taking requests, finish the ones in flight, then exit.
import { basename } from 'node:path';
import { ByteTokenizer } from '../data/index.ts';
import { OpenAIServer } from '../serve/server.ts';
import { loadChatTemplate } from '../serve/chat.ts';
import { resolveModelDir } from '../train/checkpoint.ts';
import { isGgufPath, loadModelOn } from './model-spec.ts';
import { type CommandSpec, type Flags, need, num, str, UsageError } from './args.ts';
import { chooseTokenizer } from './common.ts';
import { DEVICE_FLAGS, useDevice } from './device.ts';

export const spec: CommandSpec = {
  name: 'serve',
  summary: 'serve a model over HTTP with the OpenAI API (completions, chat, streaming), batching concurrent requests',
  usage: 'frugal serve --model DIR [--host 127.0.0.1] [--port 8080] [--device cpu|webgpu] [--threads N] [--max-batch N] [--max-queue N]',
  flags: {
    model: { type: 'string', arg: 'DIR', help: 'checkpoint, packed or run folder' },
    host: { type: 'string', arg: 'ADDR', help: 'address to listen on', default: '127.0.0.1' },
    port: { type: 'int', help: 'port to listen on (0 = any free port)', default: 8080 },
    'max-batch': { type: 'int', help: 'sequences decoded together at most', default: 8 },
    'max-queue': { type: 'int', help: 'requests waiting for a slot at most; more get 429', default: 64 },
    'max-tokens': { type: 'int', help: 'max_tokens of a chat request that gives none', default: 256 },
    name: { type: 'string', arg: 'ID', help: 'model id in /v1/models and responses (default: the folder name)' },
    tokenizer: { type: 'string', arg: 'bytes|PATH', help: 'tokenizer when the model folder has none' },
    ...DEVICE_FLAGS,
  },
};

export async function run(f: Flags): Promise<number> {
  const dir = need(f, 'model', 'serve');
  const port = num(f, 'port', (v) => Number.isInteger(v) && v >= 0 && v <= 65535, 'an integer in [0, 65535]');
  const maxBatch = num(f, 'max-batch', (v) => Number.isInteger(v) && v >= 1, 'an integer >= 1');
  const maxQueue = num(f, 'max-queue', (v) => Number.isInteger(v) && v >= 0, 'an integer >= 0');
  const defaultMaxTokens = num(f, 'max-tokens', (v) => Number.isInteger(v) && v >= 0, 'an integer >= 0');
  const device = await useDevice(f);
  const { model, tokenizer } = await loadModelOn(dir, device);
  const tok = tokenizer ?? (str(f, 'tokenizer') ? chooseTokenizer(str(f, 'tokenizer')) : new ByteTokenizer());
  // Chat templates come from a folder's tokenizer_config.json (a GGUF file's own template is not read yet).
  const gguf = isGgufPath(dir);
  const chatTemplate = gguf ? undefined : loadChatTemplate(resolveModelDir(dir));
  const name = str(f, 'name') ?? basename(gguf ? dir : resolveModelDir(dir));
  const server = new OpenAIServer({ model, tokenizer: tok, modelName: name, chatTemplate, maxBatch, maxQueue, defaultMaxTokens });
  const host = str(f, 'host')!;
  let bound: number;
  try {
    bound = await server.listen(port, host);
  } catch (e) {
    throw new UsageError(`cannot listen on ${host}:${port}: ${(e as Error).message}`);
  }
  process.stderr.write(`frugal serve: listening on http://${host.includes(':') ? `[${host}]` : host}:${bound} (model ${name}, ${device}, batch ${maxBatch}, queue ${maxQueue}${chatTemplate ? ', chat template' : ''})\n`);
  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (sig: string) => {
      if (stopping) process.exit(130);
      stopping = true;
      process.stderr.write(`frugal serve: ${sig}: finishing ${server.scheduler.active + server.scheduler.queued} request(s) in flight, then exiting (again to quit now)\n`);
      void server.close().then(resolve);
    };
    process.on('SIGINT', () => onSignal('SIGINT'));
    process.on('SIGTERM', () => onSignal('SIGTERM'));
  });
  process.stderr.write('frugal serve: stopped\n');
  return 0;
}
