// The playground page: the user interface only. A dedicated worker (worker.ts) owns WebGPU and the
// model and does the loading, generation and training; the page sends it requests and shows the
// replies (streamed tokens, loss per step), so it stays responsive, and Stop reaches the worker at
// once. body[data-state] tells automated tests (and curious users) what the page is doing.
import { pickCheckpointFiles } from './folder.ts';
import { LossChart } from './loss-chart.ts';
import { type GenerateSettings, type LoadSource, type MemoryFigures, type Reply, type Request, TRAIN_PRESET_NAMES, type TrainSettings } from './protocol.ts';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const setState = (s: string) => void (document.body.dataset.state = s);

const worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
const send = (r: Request) => worker.postMessage(r);

let gpuReady = false;
let hasModel = false;
/** What the worker is doing for the page: null when idle. */
let job: 'load' | 'generate' | 'train' | null = null;
let chart: LossChart | null = null;

function showError(e: unknown): void {
  $('error').textContent = e instanceof Error ? e.message : String(e);
  if (e instanceof Error) console.error(e);
  setState('error');
}

function clearError(): void {
  $('error').textContent = '';
}

function setJob(j: typeof job): void {
  job = j;
  const idle = gpuReady && !j;
  $<HTMLButtonElement>('generate').disabled = !idle || !hasModel;
  $<HTMLButtonElement>('train').disabled = !idle;
  $<HTMLButtonElement>('load-url').disabled = !idle;
  $<HTMLInputElement>('pick-folder').disabled = !idle;
  $<HTMLInputElement>('pick-files').disabled = !idle;
  $<HTMLButtonElement>('stop').disabled = j !== 'generate';
  $<HTMLButtonElement>('train-stop').disabled = j !== 'train';
}

function showInfo(rows: [string, string][], memory: MemoryFigures): void {
  const dl = $('model-info');
  dl.replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    dd.dataset.key = k;
    return [dt, dd];
  }));
  // The byte counts, for scripts (and the browser test).
  Object.assign(dl.dataset, {
    gpuBytes: String(memory.gpuBytes), f32Bytes: String(memory.f32Bytes), poolBytes: String(memory.poolBytes),
    packedLinears: String(memory.packed?.linears ?? 0), packedBytes: String(memory.packed?.bytes ?? 0),
    packedF32Bytes: String(memory.packed?.f32Bytes ?? 0),
  });
}

function load(source: LoadSource, label: string): void {
  if (job || !gpuReady) return;
  clearError();
  setJob('load');
  setState('loading');
  send({ type: 'load', source, label });
}

function numberInput(id: string, what: string, check: (v: number) => boolean, rule: string): number {
  const v = Number($<HTMLInputElement>(id).value);
  if (!check(v)) throw new Error(`${what} must be ${rule}, got "${$<HTMLInputElement>(id).value}"`);
  return v;
}
const isCount = (v: number) => Number.isInteger(v) && v >= 0;
const isPositiveCount = (v: number) => Number.isInteger(v) && v >= 1;

function startGenerate(): void {
  if (job || !hasModel) return;
  clearError();
  let settings: GenerateSettings;
  try {
    settings = {
      prompt: $<HTMLTextAreaElement>('prompt').value,
      maxNewTokens: numberInput('max-tokens', 'max new tokens', isCount, 'an integer >= 0'),
      temperature: numberInput('temperature', 'temperature', (v) => v >= 0, 'a number >= 0'),
      topK: numberInput('top-k', 'top-k', isCount, 'an integer >= 0'),
      topP: numberInput('top-p', 'top-p', (v) => v > 0 && v <= 1, 'a number in (0, 1]'),
      seed: numberInput('seed', 'seed', isCount, 'an integer >= 0'),
    };
  } catch (e) {
    return showError(e);
  }
  $('shown-prompt').textContent = settings.prompt;
  const out = $('generated');
  out.textContent = '';
  out.dataset.tokens = '0';
  $('gen-stats').textContent = '';
  $('candidates').textContent = '';
  setJob('generate');
  setState('generating');
  send({ type: 'generate', settings });
}

function startTraining(): void {
  if (job) return;
  clearError();
  let settings: TrainSettings;
  try {
    settings = {
      preset: $<HTMLSelectElement>('train-preset').value,
      text: $<HTMLTextAreaElement>('train-text').value,
      steps: numberInput('train-steps', 'steps', isPositiveCount, 'an integer >= 1'),
      batch: numberInput('train-batch', 'batch', isPositiveCount, 'an integer >= 1'),
      ctx: numberInput('train-ctx', 'context', (v) => Number.isInteger(v) && v >= 2, 'an integer >= 2'),
      lr: numberInput('train-lr', 'learning rate', (v) => v > 0, '> 0'),
    };
  } catch (e) {
    return showError(e);
  }
  chart = new LossChart($<HTMLCanvasElement>('loss-chart'), settings.steps);
  const status = $('train-status');
  status.textContent = '';
  delete status.dataset.step;
  delete status.dataset.loss;
  setJob('train');
  setState('training');
  send({ type: 'train', settings });
}

function onReply(r: Reply): void {
  switch (r.type) {
    case 'ready': {
      const gpu = $('gpu-status');
      gpu.textContent = `WebGPU ready: ${r.adapter}`;
      gpu.className = 'good';
      gpuReady = true;
      setJob(null);
      setState('ready');
      // ?model=URL loads a served checkpoint on open (used for sharing links and by the browser test).
      const url = new URLSearchParams(location.search).get('model');
      if (url) {
        $<HTMLInputElement>('model-url').value = url;
        load({ kind: 'url', url: new URL(url, location.href).href }, url);
      }
      return;
    }
    case 'no-webgpu': {
      const gpu = $('gpu-status');
      gpu.textContent = `WebGPU is not available, so nothing can run here: ${r.message}. ` +
        'Use a browser with WebGPU (Chrome or Edge 113+, Safari 26+, Firefox 141+ on Windows) over https or localhost; ' +
        'headless Chromium needs --enable-unsafe-webgpu.';
      gpu.className = 'bad';
      setState('no-webgpu');
      return;
    }
    case 'loaded':
      hasModel = true;
      showInfo(r.rows, r.memory);
      setJob(null);
      setState('loaded');
      return;
    case 'token': {
      const out = $('generated');
      out.append(r.text);
      out.dataset.tokens = String(r.tokens);
      return;
    }
    case 'generated': {
      const stats = $('gen-stats');
      const stopped = r.finishReason === 'abort';
      const meanLp = r.logprobs.reduce((a, b) => a + b, 0) / Math.max(1, r.logprobs.length);
      stats.textContent = `${r.tokens} tokens${stopped ? ' (stopped)' : ''}, ${r.tokensPerSecond.toFixed(1)} tokens/s decode, ` +
        `prefill ${r.promptTokens} tokens in ${r.prefillMs.toFixed(0)} ms` +
        (r.logprobs.length ? `; mean log-probability ${meanLp.toFixed(3)} per token (perplexity ${Math.exp(-meanLp).toFixed(2)})` : '');
      Object.assign(stats.dataset, {
        tokens: String(r.tokens), tokensPerSecond: String(r.tokensPerSecond), finishReason: r.finishReason, logprobs: JSON.stringify(r.logprobs),
      });
      if (r.tokensAtStop !== undefined) stats.dataset.tokensAtStop = String(r.tokensAtStop);
      // The whole first-step distribution, for scripts (and the browser test).
      (stats as HTMLElement & { firstStepLogprobs?: number[] }).firstStepLogprobs = r.firstStep;
      $('candidates').textContent = r.candidates.length
        ? `most likely first tokens: ${r.candidates.map(([t, p]) => `${JSON.stringify(t)} ${(100 * p).toFixed(1)}%`).join(', ')}`
        : '';
      $('generated').dataset.tokens = String(r.tokens);
      setJob(null);
      setState(stopped ? 'stopped' : 'generated');
      return;
    }
    case 'step': {
      chart?.push(r.loss);
      const status = $('train-status');
      status.textContent = `step ${r.step}/${r.steps}: loss ${r.loss.toFixed(4)} (${r.msPerStep.toFixed(0)} ms/step)`;
      status.dataset.step = String(r.step);
      status.dataset.loss = String(r.loss);
      return;
    }
    case 'trained':
      hasModel = true;
      $('train-status').textContent += `; done in ${r.seconds.toFixed(1)} s. The trained model is loaded: generate with it above.`;
      showInfo(r.rows, r.memory);
      setJob(null);
      setState('trained');
      return;
    case 'error':
      setJob(null);
      showError(new Error(r.message));
      return;
  }
}

const DEFAULT_TEXT = `The river ran past the mill and under the old stone bridge, and the children of the village
came down every evening to watch the water turn the wheel. The miller told them that the river had
turned the wheel for a hundred years, and that it would turn it for a hundred more, as long as the
rain fell on the hills and the snow melted in the spring. The children did not believe him, because
a hundred years is a long time, but they came back every evening all the same to watch the wheel turn.
`;

function start(): void {
  const select = $<HTMLSelectElement>('train-preset');
  for (const name of TRAIN_PRESET_NAMES) select.add(new Option(name, name));
  $<HTMLTextAreaElement>('train-text').value = DEFAULT_TEXT.repeat(4);
  setJob(null);
  worker.onmessage = (ev: MessageEvent<Reply>) => onReply(ev.data);
  worker.onerror = (ev) => {
    ev.preventDefault();
    setJob(null);
    showError(new Error(`the playground's worker failed: ${ev.message || 'it could not be started'}`));
  };
  $('load-url').addEventListener('click', () => {
    const url = $<HTMLInputElement>('model-url').value.trim();
    if (!url) return showError(new Error('enter the URL of a checkpoint folder (the folder that holds config.json)'));
    let abs: string;
    try {
      abs = new URL(url, location.href).href;
    } catch {
      return showError(new Error(`${JSON.stringify(url)} is not a URL`));
    }
    load({ kind: 'url', url: abs }, url);
  });
  for (const id of ['pick-folder', 'pick-files']) {
    $<HTMLInputElement>(id).addEventListener('change', (ev) => {
      const input = ev.target as HTMLInputElement;
      const files = Array.from(input.files ?? []);
      input.value = ''; // picking the same folder again fires change again
      try {
        const pick = pickCheckpointFiles(files);
        load({ kind: 'files', files: [...pick.files] }, `${pick.files.size} local file(s)${pick.folder ? ` of ${pick.folder}/` : ''}`);
      } catch (e) {
        showError(e);
      }
    });
  }
  $('generate').addEventListener('click', startGenerate);
  $('stop').addEventListener('click', () => send({ type: 'stop' }));
  $('train').addEventListener('click', startTraining);
  $('train-stop').addEventListener('click', () => send({ type: 'stop' }));
}

start();
