// An OpenAI-compatible HTTP server on Node's own http module: /v1/models, /v1/completions (with
// logprobs and echo, so loglikelihood scoring works through it), /v1/chat/completions (the model's
// chat template), server-sent-event streaming, and /health. Requests go to the continuous-batching
// scheduler; a full queue answers 429, a bad request a 400 JSON error, a closed connection frees
// its slot, and close() lets the responses in flight finish.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomInt } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Tokenizer } from '../data/index.ts';
import { type FinishReason, type GenerateOpts, promptIds } from '../infer/generate.ts';
import { checkSampling } from '../infer/sampling.ts';
import type { CausalLM } from '../models/index.ts';
import type { ChatMessage, ChatTemplate } from './chat.ts';
import { type Job, Scheduler, type TokenInfo } from './scheduler.ts';

export interface ServeOpts {
  model: CausalLM;
  tokenizer: Tokenizer;
  /** The id /v1/models lists and responses name. */
  modelName: string;
  chatTemplate?: ChatTemplate;
  maxBatch?: number;
  maxQueue?: number;
  /** max_tokens of a chat request that gives none (completions default to 16, as OpenAI's). */
  defaultMaxTokens?: number;
  /** Largest request body accepted, bytes. */
  maxBodyBytes?: number;
}

/** A request the client got wrong: answered with this status and an OpenAI-style error object. */
class RequestError extends Error {
  constructor(readonly status: number, message: string, readonly param: string | null = null, readonly type = 'invalid_request_error') {
    super(message);
  }
}

type Body = Record<string, unknown>;

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, e: RequestError): void {
  if (res.headersSent) {
    // Streaming already started: report in the stream and end it.
    if (!res.writableEnded) res.end(`data: ${JSON.stringify({ error: { message: e.message, type: e.type, param: e.param, code: null } })}\n\ndata: [DONE]\n\n`);
    return;
  }
  sendJson(res, e.status, { error: { message: e.message, type: e.type, param: e.param, code: null } });
}

function readBody(req: IncomingMessage, limit: number): Promise<Body> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new RequestError(413, `request body is larger than ${limit} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('error', reject);
    req.on('end', () => {
      let v: unknown;
      try {
        v = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch (e) {
        reject(new RequestError(400, `request body is not valid JSON (${(e as Error).message})`));
        return;
      }
      if (!v || typeof v !== 'object' || Array.isArray(v)) reject(new RequestError(400, 'request body must be a JSON object'));
      else resolve(v as Body);
    });
  });
}

/** Typed optional fields: a present field of the wrong type or range is a 400 naming it. */
function optNumber(b: Body, k: string, check: (v: number) => boolean, what: string): number | undefined {
  const v = b[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) throw new RequestError(400, `'${k}' must be ${what}, got ${JSON.stringify(v)}`, k);
  return v;
}
function optBool(b: Body, k: string): boolean | undefined {
  const v = b[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new RequestError(400, `'${k}' must be true or false, got ${JSON.stringify(v)}`, k);
  return v;
}
const isInt = (v: number) => Number.isInteger(v);

function stopList(b: Body): string[] | undefined {
  const v = b.stop;
  if (v === undefined || v === null) return undefined;
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || !list.every((s) => typeof s === 'string' && s.length > 0) || list.length > 4) {
    throw new RequestError(400, `'stop' must be a non-empty string or a list of up to 4 of them, got ${JSON.stringify(v)}`, 'stop');
  }
  return list;
}

/** The sampling fields shared by both endpoints (OpenAI names; top_k, min_p, repeat_penalty as extensions). */
function generationOpts(b: Body, defaultMax: number): GenerateOpts & { maxNewTokens: number } {
  const n = optNumber(b, 'n', (v) => v === 1, '1 (one choice per prompt)');
  void n;
  const o = {
    maxNewTokens: optNumber(b, 'max_tokens', (v) => isInt(v) && v >= 0, 'an integer >= 0') ?? defaultMax,
    temperature: optNumber(b, 'temperature', (v) => v >= 0, 'a number >= 0') ?? 1,
    topP: optNumber(b, 'top_p', (v) => v > 0 && v <= 1, 'a number in (0, 1]') ?? 1,
    topK: optNumber(b, 'top_k', (v) => isInt(v) && v >= 0, 'an integer >= 0') ?? 0,
    minP: optNumber(b, 'min_p', (v) => v >= 0 && v <= 1, 'a number in [0, 1]') ?? 0,
    repeatPenalty: optNumber(b, 'repeat_penalty', (v) => v > 0, 'a number > 0') ?? 1,
    seed: optNumber(b, 'seed', (v) => isInt(v) && v >= 0 && v <= 0xffffffff, 'an integer in [0, 2^32)') ?? randomInt(0, 2 ** 31),
    stop: stopList(b),
  };
  checkSampling(o);
  return o;
}

interface Prompt {
  ids: number[];
  /** Text of the prompt as echo shows it (without a BOS the tokenizer added). */
  text: string;
}

export class OpenAIServer {
  readonly scheduler: Scheduler;
  readonly http: Server;
  private closing = false;
  private nextId = 1;
  private readonly created = Math.floor(Date.now() / 1000);

  constructor(readonly o: ServeOpts) {
    this.scheduler = new Scheduler(o.model, o.tokenizer, { maxBatch: o.maxBatch, maxQueue: o.maxQueue });
    this.http = createServer((req, res) => void this.handle(req, res));
  }

  /** Listens; resolves with the bound port (0 picks a free one). */
  listen(port: number, host = '127.0.0.1'): Promise<number> {
    return new Promise((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(port, host, () => {
        this.http.off('error', reject);
        resolve((this.http.address() as AddressInfo).port);
      });
    });
  }

  /** Stops taking requests, lets every response in flight finish, then closes the connections. */
  async close(): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((r) => this.http.close(() => r()));
    this.http.closeIdleConnections();
    await this.scheduler.idle();
    this.http.closeIdleConnections();
    await closed;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      if (this.closing) throw new RequestError(503, 'the server is shutting down', null, 'server_error');
      const path = (req.url ?? '/').split('?')[0];
      const route = `${req.method} ${path}`;
      if (route === 'GET /health') return sendJson(res, 200, { status: 'ok', active: this.scheduler.active, queued: this.scheduler.queued });
      if (route === 'GET /v1/models') {
        return sendJson(res, 200, { object: 'list', data: [{ id: this.o.modelName, object: 'model', created: this.created, owned_by: 'frugal' }] });
      }
      if (route === 'POST /v1/completions') return await this.completions(await readBody(req, this.o.maxBodyBytes ?? 1 << 20), res);
      if (route === 'POST /v1/chat/completions') return await this.chat(await readBody(req, this.o.maxBodyBytes ?? 1 << 20), res);
      if (['/health', '/v1/models', '/v1/completions', '/v1/chat/completions'].includes(path)) throw new RequestError(405, `${req.method} is not allowed on ${path}`);
      throw new RequestError(404, `no route ${req.method} ${path}; routes: GET /health, GET /v1/models, POST /v1/completions, POST /v1/chat/completions`);
    } catch (e) {
      if (e instanceof RequestError) return sendError(res, e);
      // A JS engine error is a bug in the server, not in the request.
      if (e instanceof TypeError || e instanceof ReferenceError || e instanceof RangeError) {
        return sendError(res, new RequestError(500, `internal error: ${e.message}`, null, 'server_error'));
      }
      // Checks of the model and sampling code reject what the request asked for (e.g. context too long).
      return sendError(res, new RequestError(400, (e as Error).message));
    }
  }

  private checkModel(b: Body): void {
    const m = b.model;
    if (m !== undefined && m !== null && typeof m !== 'string') throw new RequestError(400, `'model' must be a string, got ${JSON.stringify(m)}`, 'model');
  }

  private idsPrompt(ids: unknown[], maxNew: number): Prompt {
    const v = this.o.model.config.vocabSize;
    if (!ids.length || !ids.every((x) => Number.isInteger(x) && (x as number) >= 0 && (x as number) < v)) {
      throw new RequestError(400, `a token-id prompt must be a non-empty list of integers in [0, ${v})`, 'prompt');
    }
    const cfg = this.o.model.config;
    if (cfg.mixer === 'attention' && ids.length + maxNew > cfg.maxPositions) {
      throw new RequestError(400, `prompt (${ids.length} tokens) + max_tokens ${maxNew} exceeds the model context of ${cfg.maxPositions}`, 'prompt');
    }
    return { ids: ids as number[], text: this.o.tokenizer.decode(ids as number[]) };
  }

  private textPrompt(text: string, maxNew: number): Prompt {
    return { ids: promptIds(this.o.model, this.o.tokenizer, text, maxNew), text };
  }

  /** prompt: a string, a list of strings, a list of token ids, or a list of such lists. */
  private prompts(b: Body, maxNew: number): Prompt[] {
    const p = b.prompt;
    const bad = () => new RequestError(400, "'prompt' must be a string, a list of strings, a list of token ids or a list of such lists", 'prompt');
    if (typeof p === 'string') return [this.textPrompt(p, maxNew)];
    if (!Array.isArray(p) || p.length === 0) throw bad();
    if (p.every((x) => typeof x === 'number')) return [this.idsPrompt(p, maxNew)];
    if (p.every((x) => typeof x === 'string')) return p.map((x) => this.textPrompt(x, maxNew));
    if (p.every((x) => Array.isArray(x))) return p.map((x) => this.idsPrompt(x, maxNew));
    throw bad();
  }

  private tokenText(id: number): string {
    return this.o.tokenizer.decode([id]);
  }

  private async completions(b: Body, res: ServerResponse): Promise<void> {
    this.checkModel(b);
    const opts = generationOpts(b, 16);
    const stream = optBool(b, 'stream') ?? false;
    const echo = optBool(b, 'echo') ?? false;
    const logprobs = optNumber(b, 'logprobs', (v) => isInt(v) && v >= 0 && v <= 20, 'an integer in [0, 20]');
    const prompts = this.prompts(b, opts.maxNewTokens);
    if (stream && prompts.length > 1) throw new RequestError(400, 'streaming takes one prompt per request', 'prompt');
    const id = `cmpl-${this.nextId++}`;
    const head = { id, object: 'text_completion', created: Math.floor(Date.now() / 1000), model: this.o.modelName };
    type Lp = { tokens: string[]; token_logprobs: (number | null)[]; top_logprobs: (Record<string, number> | null)[]; text_offset: number[] };
    const newLp = (): Lp => ({ tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] });
    const addLp = (lp: Lp, infos: TokenInfo[], offset0: number) => {
      let off = offset0;
      for (const t of infos) {
        const s = this.tokenText(t.id);
        lp.tokens.push(s);
        lp.token_logprobs.push(t.logprob ?? null);
        lp.top_logprobs.push(t.top ? Object.fromEntries(t.top.map(([i, l]) => [this.tokenText(i), l])) : null);
        lp.text_offset.push(off);
        off += s.length;
      }
      return off;
    };
    if (stream) {
      const p = prompts[0];
      let offset = 0;
      const chunk = (text: string, lp: Lp | null, finish: FinishReason | null) =>
        `data: ${JSON.stringify({ ...head, choices: [{ index: 0, text, logprobs: lp, finish_reason: finish }] })}\n\n`;
      await this.streamJob(res, {
        prompt: p.ids, opts, topLogprobs: logprobs, promptLogprobs: echo && logprobs !== undefined,
        onPrompt: (toks) => {
          const lp = newLp();
          offset = addLp(lp, toks, 0);
          res.write(chunk(p.text, lp, null));
        },
        onToken: (piece, info) => {
          let lp: Lp | null = null;
          if (logprobs !== undefined && info.logprob !== undefined) {
            lp = newLp();
            offset = addLp(lp, [info], offset);
          }
          res.write(chunk(piece, lp, null));
        },
      }, (r) => chunk('', null, r.finishReason), echo && logprobs === undefined ? chunk(p.text, null, null) : undefined);
      return;
    }
    const results = await this.runJobs(res, prompts.map((p) => {
      const lp = newLp();
      let offset = echo ? 0 : p.text.length;
      const job: Job & { lp: Lp } = {
        lp, prompt: p.ids, opts, topLogprobs: logprobs, promptLogprobs: echo && logprobs !== undefined,
        onPrompt: (toks) => {
          offset = addLp(lp, toks, 0);
        },
        onToken: (_piece, info) => {
          if (logprobs !== undefined && info.logprob !== undefined) offset = addLp(lp, [info], offset);
        },
        onDone: () => {},
        onError: () => {},
      };
      return job;
    }));
    if (!results) return;
    let completionTokens = 0;
    const choices = results.map((r, i) => {
      completionTokens += r.ids.length;
      return { index: i, text: (echo ? prompts[i].text : '') + r.text, logprobs: logprobs !== undefined ? r.job.lp : null, finish_reason: r.finishReason };
    });
    const promptTokens = prompts.reduce((s, p) => s + p.ids.length, 0);
    sendJson(res, 200, { ...head, choices, usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens } });
  }

  private chatPrompt(b: Body, maxNew: number): Prompt {
    const msgs = b.messages;
    if (!Array.isArray(msgs) || msgs.length === 0) throw new RequestError(400, "'messages' must be a non-empty list of {role, content}", 'messages');
    const messages: ChatMessage[] = msgs.map((m, i) => {
      if (!m || typeof m !== 'object' || typeof m.role !== 'string' || typeof m.content !== 'string') {
        throw new RequestError(400, `messages[${i}] must be {"role": string, "content": string}`, 'messages');
      }
      return { role: m.role, content: m.content };
    });
    const tpl = this.o.chatTemplate;
    if (!tpl) throw new RequestError(400, "this model has no chat template (no 'chat_template' in its tokenizer_config.json); use /v1/completions", 'messages');
    let text: string;
    try {
      text = tpl.render(messages);
    } catch (e) {
      throw new RequestError(400, `the chat template failed on these messages: ${(e as Error).message}`, 'messages');
    }
    // A template that writes the BOS text itself gets no second BOS from the tokenizer.
    const bos = tpl.bosToken;
    if (bos && text.startsWith(bos)) {
      const ids = this.o.tokenizer.encode(text);
      return this.idsPrompt(ids, maxNew);
    }
    return this.textPrompt(text, maxNew);
  }

  private async chat(b: Body, res: ServerResponse): Promise<void> {
    this.checkModel(b);
    const opts = generationOpts(b, this.o.defaultMaxTokens ?? 256);
    const stream = optBool(b, 'stream') ?? false;
    const p = this.chatPrompt(b, opts.maxNewTokens);
    const id = `chatcmpl-${this.nextId++}`;
    const head = { id, created: Math.floor(Date.now() / 1000), model: this.o.modelName };
    if (stream) {
      const chunk = (delta: Record<string, string>, finish: FinishReason | null) =>
        `data: ${JSON.stringify({ ...head, object: 'chat.completion.chunk', choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`;
      await this.streamJob(res, { prompt: p.ids, opts, onToken: (piece) => piece && res.write(chunk({ content: piece }, null)) },
        (r) => chunk({}, r.finishReason), chunk({ role: 'assistant', content: '' }, null));
      return;
    }
    const results = await this.runJobs(res, [{ prompt: p.ids, opts, onDone: () => {}, onError: () => {} }]);
    if (!results) return;
    const r = results[0];
    sendJson(res, 200, {
      ...head, object: 'chat.completion',
      choices: [{ index: 0, message: { role: 'assistant', content: r.text }, logprobs: null, finish_reason: r.finishReason }],
      usage: { prompt_tokens: p.ids.length, completion_tokens: r.ids.length, total_tokens: p.ids.length + r.ids.length },
    });
  }

  private tooBusy(): RequestError {
    return new RequestError(429, `the server is busy (${this.scheduler.active} running, ${this.scheduler.queued} queued); retry later`, null, 'rate_limit_error');
  }

  /** Runs jobs to completion; undefined when the client left (the jobs are then cancelled). */
  private runJobs<J extends Job>(res: ServerResponse, jobs: J[]): Promise<{ job: J; text: string; ids: number[]; finishReason: FinishReason }[] | undefined> {
    const free = this.scheduler.maxBatch + this.scheduler.maxQueue - this.scheduler.active - this.scheduler.queued;
    if (jobs.length > free) throw this.tooBusy();
    return new Promise((resolve, reject) => {
      const out: { job: J; text: string; ids: number[]; finishReason: FinishReason }[] = new Array(jobs.length);
      let left = jobs.length;
      let failed = false;
      const cancelAll = () => jobs.forEach((j) => this.scheduler.cancel(j));
      res.on('close', () => {
        if (left > 0 && !failed) {
          cancelAll();
          resolve(undefined);
        }
      });
      jobs.forEach((job, i) => {
        job.onDone = (r) => {
          out[i] = { job, ...r };
          if (--left === 0) resolve(out);
        };
        job.onError = (e) => {
          if (failed) return;
          failed = true;
          cancelAll();
          reject(new RequestError(500, `generation failed: ${e.message}`, null, 'server_error'));
        };
        if (!this.scheduler.submit(job)) throw this.tooBusy();
      });
    });
  }

  /** Streams one job as server-sent events: `first` (if any), the job's own chunks, `last`, then [DONE]. */
  private streamJob(res: ServerResponse, job: Omit<Job, 'onDone' | 'onError'>, last: (r: { finishReason: FinishReason }) => string, first?: string): Promise<void> {
    return new Promise((resolve) => {
      let done = false;
      const full: Job = {
        ...job,
        onDone: (r) => {
          done = true;
          res.end(`${last(r)}data: [DONE]\n\n`);
          resolve();
        },
        onError: (e) => {
          done = true;
          sendError(res, new RequestError(500, `generation failed: ${e.message}`, null, 'server_error'));
          resolve();
        },
      };
      if (!this.scheduler.submit(full)) throw this.tooBusy();
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
      if (first) res.write(first);
      res.on('close', () => {
        if (!done) {
          this.scheduler.cancel(full);
          resolve();
        }
      });
    });
  }
}
