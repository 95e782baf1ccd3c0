// The playground's engine, in a dedicated worker: it owns the WebGPU device and the model, and runs
// loading, generation and training, so none of them blocks the page. Requests and replies are typed
// in protocol.ts. Stop ends a generation after the token in flight (an AbortSignal checked before each
// decode step) and training after the step in flight.
/// <reference lib="webworker" />
import { initWebGPU, webgpuAdapterName } from '../src/backend/webgpu/index.ts';
import type { Tokenizer } from '../src/data/index.ts';
import { generate } from '../src/infer/generate.ts';
import type { CausalLM, ModelConfig } from '../src/models/index.ts';
import { PRESETS } from '../src/models/presets.ts';
import { folderFromFileMap, folderFromUrl } from './folder.ts';
import { loadCheckpoint } from './loader.ts';
import { describeModel, infoRows } from './model-info.ts';
import type { GenerateSettings, Reply, Request, TrainSettings } from './protocol.ts';
import { trainTiny } from './train.ts';

const scope = self as unknown as DedicatedWorkerGlobalScope;
const post = (r: Reply) => scope.postMessage(r);

const TRAIN_PRESETS: Record<string, Partial<ModelConfig>> = {
  'micro-dense': PRESETS['micro-dense'],
  'micro-fbi': { ...PRESETS['micro-dense'], linear: 'fbi', fbiScale: 'column' },
  'tiny-dense': PRESETS['tiny-dense'],
  'tiny-fbi': PRESETS['tiny-fbi'],
};

let current: { model: CausalLM; tokenizer: Tokenizer } | null = null;
let busy = false;
/** The running job's stop: set while generating or training. */
let stopJob: (() => void) | null = null;

/** Frees the GPU buffers of the previous model once another one replaces it. */
function replaceModel(model: CausalLM, tokenizer: Tokenizer): void {
  const old = current?.model;
  current = { model, tokenizer };
  if (old && old !== model) for (const [, t] of [...old.namedParameters(), ...old.namedBuffers()]) t.dispose();
}

async function load(req: Extract<Request, { type: 'load' }>): Promise<void> {
  const read = req.source.kind === 'files' ? folderFromFileMap(new Map(req.source.files)) : folderFromUrl(req.source.url);
  const r = await loadCheckpoint(read, 'webgpu');
  replaceModel(r.model, r.tokenizer);
  const notes = [`tokenizer: ${r.tokenizerSource}`];
  if (r.packed) notes.push('packed 1-bit weights stay packed: the binarized linears run from their sign bits on the GPU');
  const info = describeModel(r.model, r.storedBytes);
  post({ type: 'loaded', rows: infoRows(info, req.label, notes), memory: info.memory });
}

/** The `k` most likely next tokens of a log-probability row, as text with probabilities. */
function topCandidates(tokenizer: Tokenizer, lp: number[], k: number): [string, number][] {
  return lp.map((v, id) => [id, v] as const).sort((a, b) => b[1] - a[1]).slice(0, k).map(([id, v]) => [tokenizer.decode([id]), Math.exp(v)]);
}

async function runGenerate(s: GenerateSettings): Promise<void> {
  if (!current) throw new Error('load or train a model first');
  const { model, tokenizer } = current;
  const ctl = new AbortController();
  let tokens = 0;
  let tokensAtStop: number | undefined;
  const logprobs: number[] = [];
  let firstStep: number[] = [];
  stopJob = () => {
    tokensAtStop ??= tokens;
    ctl.abort();
  };
  const r = await generate(model, tokenizer, s.prompt, {
    maxNewTokens: s.maxNewTokens, temperature: s.temperature, topK: s.topK, topP: s.topP, seed: s.seed, signal: ctl.signal,
    onLogprobs: (lp, id) => {
      if (logprobs.length === 0) firstStep = Array.from(lp);
      logprobs.push(lp[id]);
    },
    stream: (text, n) => {
      tokens = n;
      post({ type: 'token', text, tokens: n });
    },
  });
  post({
    type: 'generated', tokens: r.ids.length, promptTokens: r.promptTokens, tokensPerSecond: r.tokensPerSecond,
    prefillMs: r.prefillSeconds * 1000, finishReason: r.finishReason, logprobs, firstStep, candidates: topCandidates(tokenizer, firstStep, 5), tokensAtStop,
  });
}

async function runTraining(s: TrainSettings): Promise<void> {
  const config = TRAIN_PRESETS[s.preset];
  if (!config) throw new Error(`unknown training preset ${JSON.stringify(s.preset)}; pick one of ${Object.keys(TRAIN_PRESETS).join(', ')}`);
  let stop = false;
  stopJob = () => void (stop = true);
  const t0 = performance.now();
  const r = await trainTiny({
    config, text: s.text, steps: s.steps, batch: s.batch, ctx: s.ctx, lr: s.lr,
    onStep: (step, loss) => {
      post({ type: 'step', step, steps: s.steps, loss, msPerStep: (performance.now() - t0) / step });
      return !stop;
    },
  });
  replaceModel(r.model, r.tokenizer);
  const info = describeModel(r.model, r.model.numParameters() * 4);
  const rows = infoRows(info, `trained in this page (${s.preset}, ${r.losses.length} steps)`, ['tokenizer: bytes', 'stored size counts f32 weights (not saved)']);
  post({ type: 'trained', steps: r.losses.length, seconds: r.seconds, rows, memory: info.memory });
}

const gpu = initWebGPU().then(
  () => {
    post({ type: 'ready', adapter: webgpuAdapterName() });
    return true;
  },
  (e: Error) => {
    post({ type: 'no-webgpu', message: e.message });
    return false;
  },
);

scope.onmessage = async (ev: MessageEvent<Request>) => {
  const req = ev.data;
  if (req.type === 'stop') return stopJob?.();
  if (!(await gpu)) return post({ type: 'error', message: 'WebGPU is not available in this browser' });
  if (busy) return post({ type: 'error', message: 'the playground is busy; wait for the running job or press Stop' });
  busy = true;
  try {
    if (req.type === 'load') await load(req);
    else if (req.type === 'generate') await runGenerate(req.settings);
    else if (req.type === 'train') await runTraining(req.settings);
  } catch (e) {
    console.error(e instanceof Error && e.stack ? e.stack : e);
    post({ type: 'error', message: e instanceof Error ? e.message : String(e) });
  } finally {
    busy = false;
    stopJob = null;
  }
};
