// The playground page: WebGPU setup, loading a checkpoint (folder picker, files or URL), streamed
// generation with tokens/s, and in-page training of a tiny model with a live loss chart.
// body[data-state] tells automated tests (and curious users) what the page is doing.
import { initWebGPU, webgpuAdapterName } from '../src/backend/webgpu/index.ts';
import type { Tokenizer } from '../src/data/index.ts';
import { generate } from '../src/infer/generate.ts';
import type { CausalLM, ModelConfig } from '../src/models/index.ts';
import { PRESETS } from '../src/models/presets.ts';
import { folderFromFiles, folderFromUrl, loadCheckpoint, type FolderReader } from './loader.ts';
import { LossChart } from './loss-chart.ts';
import { describeModel, fmtBytes, fmtCount } from './model-info.ts';
import { trainTiny } from './train.ts';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const setState = (s: string) => void (document.body.dataset.state = s);

let current: { model: CausalLM; tokenizer: Tokenizer } | null = null;
let busy = false;
let stopTraining = false;

function showError(e: unknown): void {
  const msg = e instanceof Error ? e.message : String(e);
  $('error').textContent = msg;
  console.error(e instanceof Error && e.stack ? e.stack : e);
  setState('error');
}

function clearError(): void {
  $('error').textContent = '';
}

function setBusy(b: boolean): void {
  busy = b;
  $<HTMLButtonElement>('generate').disabled = b || !current;
  $<HTMLButtonElement>('train').disabled = b;
  $<HTMLButtonElement>('load-url').disabled = b;
}

function showInfo(model: CausalLM, storedBytes: number, source: string, notes: string[]): void {
  const info = describeModel(model, storedBytes);
  const rows: [string, string][] = [
    ['source', source],
    ['architecture', info.architecture],
    ['parameters', `${fmtCount(info.parameters)} (${info.parameters})`],
    ['stored size', `${fmtBytes(info.storedBytes)}, ${info.storedBitsPerParam.toFixed(2)} bits per parameter`],
    ['on the GPU', `${fmtBytes(info.deviceBytes)} (f32)`],
  ];
  if (info.fbi) {
    rows.push(['FBI bits/param', `${info.fbi.model.toFixed(2)} over the model, ${info.fbi.linear.toFixed(3)} in the binarized linears (${fmtCount(info.fbi.binarized)} 1-bit weights)`]);
  }
  for (const n of notes) rows.push(['note', n]);
  const dl = $('model-info');
  dl.replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    dd.dataset.key = k;
    return [dt, dd];
  }));
}

async function load(read: FolderReader, source: string): Promise<void> {
  if (busy) return;
  clearError();
  setBusy(true);
  setState('loading');
  try {
    const r = await loadCheckpoint(read, 'webgpu');
    current = { model: r.model, tokenizer: r.tokenizer };
    const notes = [`tokenizer: ${r.tokenizerSource}`];
    if (r.packed) notes.push('packed 1-bit weights were expanded on load to f32 sign × wscale + wbias (the packed kernels are CPU-only for now)');
    showInfo(r.model, r.storedBytes, source, notes);
    setState('loaded');
  } catch (e) {
    showError(e);
  } finally {
    setBusy(false);
  }
}

function numberInput(id: string, what: string, check: (v: number) => boolean, rule: string): number {
  const v = Number($<HTMLInputElement>(id).value);
  if (!check(v)) throw new Error(`${what} must be ${rule}, got "${$<HTMLInputElement>(id).value}"`);
  return v;
}
const isCount = (v: number) => Number.isInteger(v) && v >= 0;

async function runGenerate(): Promise<void> {
  if (busy || !current) return;
  clearError();
  setBusy(true);
  setState('generating');
  const out = $('generated');
  out.textContent = '';
  $('gen-stats').textContent = '';
  try {
    const prompt = $<HTMLTextAreaElement>('prompt').value;
    $('shown-prompt').textContent = prompt;
    const r = await generate(current.model, current.tokenizer, prompt, {
      maxNewTokens: numberInput('max-tokens', 'max new tokens', isCount, 'an integer >= 0'),
      temperature: numberInput('temperature', 'temperature', (v) => v >= 0, 'a number >= 0'),
      topK: numberInput('top-k', 'top-k', isCount, 'an integer >= 0'),
      topP: numberInput('top-p', 'top-p', (v) => v > 0 && v <= 1, 'a number in (0, 1]'),
      seed: numberInput('seed', 'seed', isCount, 'an integer >= 0'),
      stream: (t) => void out.append(t),
    });
    $('gen-stats').textContent = `${r.ids.length} tokens, ${r.tokensPerSecond.toFixed(1)} tokens/s decode, prefill ${r.promptTokens} tokens in ${(r.prefillSeconds * 1000).toFixed(0)} ms`;
    $('gen-stats').dataset.tokensPerSecond = String(r.tokensPerSecond);
    setState('generated');
  } catch (e) {
    showError(e);
  } finally {
    setBusy(false);
  }
}

const TRAIN_PRESETS: Record<string, Partial<ModelConfig>> = {
  'micro-dense': PRESETS['micro-dense'],
  'micro-fbi': { ...PRESETS['micro-dense'], linear: 'fbi', fbiScale: 'column' },
  'tiny-dense': PRESETS['tiny-dense'],
  'tiny-fbi': PRESETS['tiny-fbi'],
};

async function runTraining(): Promise<void> {
  if (busy) return;
  clearError();
  setBusy(true);
  stopTraining = false;
  $<HTMLButtonElement>('train-stop').disabled = false;
  setState('training');
  try {
    const preset = $<HTMLSelectElement>('train-preset').value;
    const steps = numberInput('train-steps', 'steps', (v) => Number.isInteger(v) && v >= 1, 'an integer >= 1');
    const chart = new LossChart($<HTMLCanvasElement>('loss-chart'), steps);
    const status = $('train-status');
    const t0 = performance.now();
    const r = await trainTiny({
      config: TRAIN_PRESETS[preset],
      text: $<HTMLTextAreaElement>('train-text').value,
      steps,
      batch: numberInput('train-batch', 'batch', (v) => Number.isInteger(v) && v >= 1, 'an integer >= 1'),
      ctx: numberInput('train-ctx', 'context', (v) => Number.isInteger(v) && v >= 2, 'an integer >= 2'),
      lr: numberInput('train-lr', 'learning rate', (v) => v > 0, '> 0'),
      onStep: (step, loss) => {
        chart.push(loss);
        status.textContent = `step ${step}/${steps}: loss ${loss.toFixed(4)} (${((performance.now() - t0) / step).toFixed(0)} ms/step)`;
        status.dataset.step = String(step);
        status.dataset.loss = String(loss);
        return !stopTraining;
      },
    });
    current = { model: r.model, tokenizer: r.tokenizer };
    status.textContent += `; done in ${r.seconds.toFixed(1)} s. The trained model is loaded: generate with it above.`;
    showInfo(r.model, r.model.numParameters() * 4, `trained in this page (${preset}, ${r.losses.length} steps)`, ['tokenizer: bytes', 'stored size counts f32 weights (not saved)']);
    setState('trained');
  } catch (e) {
    showError(e);
  } finally {
    $<HTMLButtonElement>('train-stop').disabled = true;
    setBusy(false);
  }
}

const DEFAULT_TEXT = `The river ran past the mill and under the old stone bridge, and the children of the village
came down every evening to watch the water turn the wheel. The miller told them that the river had
turned the wheel for a hundred years, and that it would turn it for a hundred more, as long as the
rain fell on the hills and the snow melted in the spring. The children did not believe him, because
a hundred years is a long time, but they came back every evening all the same to watch the wheel turn.
`;

async function start(): Promise<void> {
  const select = $<HTMLSelectElement>('train-preset');
  for (const name of Object.keys(TRAIN_PRESETS)) select.add(new Option(name, name));
  $<HTMLTextAreaElement>('train-text').value = DEFAULT_TEXT.repeat(4);
  $('load-url').addEventListener('click', () => {
    const url = $<HTMLInputElement>('model-url').value.trim();
    if (!url) return showError(new Error('enter the URL of a checkpoint folder (the folder that holds config.json)'));
    void load(folderFromUrl(url), url);
  });
  for (const id of ['pick-folder', 'pick-files']) {
    $<HTMLInputElement>(id).addEventListener('change', (ev) => {
      const files = Array.from((ev.target as HTMLInputElement).files ?? []);
      try {
        void load(folderFromFiles(files), `${files.length} local file(s)`);
      } catch (e) {
        showError(e);
      }
    });
  }
  $('generate').addEventListener('click', () => void runGenerate());
  $('train').addEventListener('click', () => void runTraining());
  $('train-stop').addEventListener('click', () => void (stopTraining = true));

  const gpu = $('gpu-status');
  try {
    await initWebGPU();
    gpu.textContent = `WebGPU ready: ${webgpuAdapterName()}`;
    gpu.className = 'good';
  } catch (e) {
    gpu.textContent = `WebGPU is not available, so nothing can run here: ${(e as Error).message}. ` +
      'Use a browser with WebGPU (Chrome or Edge 113+, Safari 26+, Firefox 141+ on Windows) over https or localhost; ' +
      'headless Chromium needs --enable-unsafe-webgpu.';
    gpu.className = 'bad';
    setState('no-webgpu');
    return;
  }
  setBusy(false);
  setState('ready');
  // ?model=URL loads a served checkpoint on open (used for sharing links and by the browser test).
  const url = new URLSearchParams(location.search).get('model');
  if (url) {
    $<HTMLInputElement>('model-url').value = url;
    await load(folderFromUrl(url), url);
  }
}

void start();
