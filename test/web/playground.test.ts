// End-to-end test of the browser playground: builds web/ with Vite, serves it with tiny checkpoints
// (a training checkpoint, and a run folder holding an FBI model's latent checkpoint in model/ and its
// packed 1-bit folder in packed/), drives Chromium headless on WebGPU (SwiftShader), and checks that
// greedy generation in the page gives exactly the text the Node side gives for the same model and
// prompt (the CLI for the checkpoint, loadPackedModel's CPU packed kernels for the packed folder);
// that a packed folder stays packed on the GPU (the page's memory figures against the CPU packed
// model's); that Stop ends a long generation within a token while the page keeps responding; that a
// picked run folder with both model/ and packed/ is refused. Also trains a few steps in the page.
// Saves screenshots.
//
// Chromium flags: `--enable-unsafe-webgpu` is the one that matters (without it requestAdapter()
// returns null in headless Chromium on Linux); `--enable-features=Vulkan --use-vulkan=swiftshader
// --use-angle=swiftshader --disable-gpu-sandbox` pin the CPU Vulkan (SwiftShader) that ships with the
// chromium package, so the adapter is "google/swiftshader" on machines without a GPU.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { extname, join, resolve, sep } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { ByteTokenizer } from '../../src/data/index.ts';
import { generate } from '../../src/infer/generate.ts';
import { loadPackedModel, savePackedModel } from '../../src/infer/packed-linear.ts';
import { PackedLinear } from '../../src/nn/packed.ts';
import { CausalLM, type ModelConfig } from '../../src/models/index.ts';
import { backward, fromArray, noGrad, Rng, tidy } from '../../src/tensor/index.ts';
import { AdamW } from '../../src/train/optim.ts';
import { saveCheckpoint } from '../../src/train/checkpoint.ts';

const run = promisify(execFile);
const REPO = resolve(fileURLToPath(import.meta.url), '..', '..', '..');
const CHROMIUM = process.env.FRUGAL_CHROMIUM ?? '/usr/bin/chromium'; // bin/run-tests.js sets it (bin/test-env.js)
const CHROMIUM_FLAGS = [
  '--headless=new', '--no-sandbox', '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader',
  '--use-angle=swiftshader', '--disable-gpu-sandbox', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync',
];
const PROMPT = 'the cat ';
const NEW_TOKENS = 16;
// Greedy decoding must not hinge on float rounding: every step's best logit has to beat the runner-up
// by far more than cpu-vs-webgpu differences (~1e-5 relative); the fixture models are trained until it does.
const MIN_MARGIN = 1e-2;
const TEXT = 'the cat sat on the mat. the dog sat on the log. '.repeat(40);

const work = mkdtempSync(join(tmpdir(), 'frugal-web-e2e-'));
const artifacts = process.env.FRUGAL_ARTIFACTS_DIR ? resolve(process.env.FRUGAL_ARTIFACTS_DIR) : join(work, 'artifacts');
mkdirSync(artifacts, { recursive: true });

/** A tiny byte-level model trained on TEXT until its greedy continuations are decisive. */
function trainFixture(config: Partial<ModelConfig>, steps: number): CausalLM {
  const model = new CausalLM(config, { seed: 3 });
  const opt = new AdamW(model.namedParameters(), { lr: 1e-2, weightDecay: 0 });
  const bytes = new ByteTokenizer().encode(TEXT);
  const rng = new Rng(7);
  const B = 8, T = 32;
  for (let s = 0; s < steps; s++) {
    const inp = new Int32Array(B * T), tgt = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      const o = rng.int(bytes.length - T - 1);
      for (let t = 0; t < T; t++) { inp[b * T + t] = bytes[o + t]; tgt[b * T + t] = bytes[o + t + 1]; }
    }
    tidy(() => backward(model.loss(fromArray(inp, [B, T]), fromArray(tgt, [B * T]))));
    opt.update();
    opt.zeroGrad();
  }
  return model.eval();
}

/** Smallest gap between the best and second-best logit along the greedy path (full forward per step). */
function greedyMargin(model: CausalLM, prompt: string, n: number): number {
  const ids = new ByteTokenizer().encode(prompt);
  let margin = Infinity;
  for (let i = 0; i < n; i++) {
    const row = noGrad(() => tidy(() => model.forward(fromArray(Int32Array.from(ids), [1, ids.length])).dataSync() as Float32Array))
      .subarray((ids.length - 1) * model.config.vocabSize);
    let a = 0;
    for (let j = 1; j < row.length; j++) if (row[j] > row[a]) a = j;
    let b = a === 0 ? 1 : 0;
    for (let j = 0; j < row.length; j++) if (j !== a && row[j] > row[b]) b = j;
    margin = Math.min(margin, row[a] - row[b]);
    ids.push(a);
  }
  return margin;
}

const MIME: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.json': 'application/json' };

/** Static files: the built page at /, checkpoint folders at /ckpt/<name>/. */
function serve(roots: Record<string, string>): Promise<{ server: Server; origin: string }> {
  const server = createServer((req, res) => {
    const url = decodeURIComponent((req.url ?? '/').split('?')[0]);
    const prefix = Object.keys(roots).filter((p) => url.startsWith(p)).sort((a, b) => b.length - a.length)[0];
    const root = roots[prefix];
    let path = resolve(root, `.${url.slice(prefix.length - 1)}`);
    if (path === root || url.endsWith('/')) path = join(path, 'index.html');
    if (!path.startsWith(root + sep) || !existsSync(path) || !statSync(path).isFile()) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': MIME[extname(path)] ?? 'application/octet-stream' });
    createReadStream(path).pipe(res);
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => {
    const addr = server.address() as { port: number };
    ok({ server, origin: `http://127.0.0.1:${addr.port}` });
  }));
}

let ctx: BrowserContext | undefined;
let page: Page;
let server: Server | undefined;
let origin = '';
const expected: Record<string, string> = {};
/** The packed folder's memory as the CPU packed model and the latent model count it. */
const packedRef = { linears: 0, bytes: 0, f32Bytes: 0, latentBytes: 0 };
/** The packed CPU model's log-probability of each greedy token (the logits' check). */
const packedLogprobs: number[] = [];
/** Its log-softmax over the vocabulary at the first step: the prompt's next-token logits up to a constant. */
let packedFirstStep: Float32Array = new Float32Array(0);
// Log-probabilities from WebGPU logits against the CPU's (different summation orders, ~1e-5 relative).
const LOGPROB_TOL = 1e-3;
// The run folder's FBI model is given a long context so that a generation can run long enough to be stopped.
const LONG_CONTEXT = 512;
const consoleLines: string[] = [];

before(async () => {
  const t0 = performance.now();
  const dense = trainFixture({ vocabSize: 256, hiddenSize: 32, numLayers: 2, numHeads: 2, intermediateSize: 64, maxPositions: 64 }, 150);
  const margin = greedyMargin(dense, PROMPT, NEW_TOKENS);
  assert.ok(margin > MIN_MARGIN, `fixture model is not decisive (greedy margin ${margin}); train it longer`);
  saveCheckpoint(join(work, 'dense'), dense, { tokenizer: new ByteTokenizer() });
  const fbi = trainFixture({ vocabSize: 256, hiddenSize: 32, numLayers: 2, numHeads: 2, intermediateSize: 64, maxPositions: LONG_CONTEXT, linear: 'fbi' }, 150);
  mkdirSync(join(work, 'run'));
  saveCheckpoint(join(work, 'run', 'model'), fbi, { tokenizer: new ByteTokenizer() });
  savePackedModel(fbi, join(work, 'run', 'packed'));
  const packedModel = loadPackedModel(join(work, 'run', 'packed'));
  // The page and the CPU reference both run the default int8-activation packed products.
  const linears = packedModel.modules().filter((m): m is PackedLinear => m instanceof PackedLinear);
  Object.assign(packedRef, {
    linears: linears.length, bytes: linears.reduce((a, l) => a + l.storageBytes, 0),
    f32Bytes: linears.reduce((a, l) => a + 4 * (l.inFeatures * l.outFeatures + l.storageScaleCount), 0), latentBytes: fbi.numParameters() * 4,
  });
  const packedMargin = greedyMargin(packedModel, PROMPT, NEW_TOKENS);
  assert.ok(packedMargin > MIN_MARGIN, `packed fixture model is not decisive (greedy margin ${packedMargin}); train it longer`);

  // Node references: the CLI for the checkpoint folder, the packed CPU model for the packed folder.
  const cli = await run(process.execPath, [join(REPO, 'bin', 'frugal.js'), 'generate', '--model', join(work, 'dense'), '--prompt', PROMPT,
    '--max-new-tokens', String(NEW_TOKENS), '--temperature', '0'], { cwd: REPO });
  assert.ok(cli.stdout.startsWith(PROMPT) && cli.stdout.endsWith('\n'), `unexpected CLI output ${JSON.stringify(cli.stdout)}`);
  expected.dense = cli.stdout.slice(PROMPT.length, -1);
  expected.packed = (await generate(packedModel, new ByteTokenizer(), PROMPT, {
    maxNewTokens: NEW_TOKENS, temperature: 0, onLogprobs: (lp, id) => {
      if (packedLogprobs.length === 0) packedFirstStep = lp.slice();
      packedLogprobs.push(lp[id]);
    },
  })).text;
  for (const [k, v] of Object.entries(expected)) assert.ok(v.length >= NEW_TOKENS / 2, `Node reference for ${k} is too short to compare: ${JSON.stringify(v)}`);
  console.log(`# fixtures and Node references in ${((performance.now() - t0) / 1000).toFixed(1)} s; greedy margins ${margin.toFixed(3)}, ${packedMargin.toFixed(3)}`);

  const t1 = performance.now();
  const dist = join(work, 'dist');
  await run(process.execPath, [join(REPO, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', '--config', join(REPO, 'web', 'vite.config.ts'),
    '--outDir', dist, '--logLevel', 'warn', '--minify', 'false'], { cwd: REPO });
  console.log(`# vite build in ${((performance.now() - t1) / 1000).toFixed(1)} s`);
  ({ server, origin } = await serve({ '/': dist, '/ckpt/': work }));

  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: run the tests through npm test (which unpacks @sparticuz/chromium) or set FRUGAL_CHROMIUM`);
  ctx = await chromium.launchPersistentContext(join(work, 'profile-a'), {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS, viewport: { width: 1024, height: 1100 },
  });
  // Counts WebGPU adapter requests made by the page's own scripts (the worker's are not seen here).
  await ctx.addInitScript(() => {
    const w = window as unknown as { mainThreadAdapterRequests: number };
    w.mainThreadAdapterRequests = 0;
    const gpu = navigator.gpu as GPU | undefined;
    if (!gpu) return;
    const request = gpu.requestAdapter.bind(gpu);
    gpu.requestAdapter = (o?: GPURequestAdapterOptions) => {
      w.mainThreadAdapterRequests++;
      return request(o);
    };
  });
  page = await ctx.newPage();
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
});

after(async () => {
  await ctx?.close();
  server?.close();
  // Browser profiles and the built page are large and useless after the run; screenshots stay.
  for (const name of ['dist', 'profile-a', 'profile-b']) rmSync(join(work, name), { recursive: true, force: true });
  console.log(`# screenshots and page log in ${artifacts}`);
});

/** Waits until body[data-state] is one of `states`; a page error or missing WebGPU fails with the page's own message. */
async function waitState(states: string[], timeout: number): Promise<string> {
  const all = [...states, 'error', 'no-webgpu'];
  try {
    await page.waitForFunction((s) => s.includes(document.body.dataset.state ?? ''), all, { timeout });
  } catch (e) {
    throw new Error(`page stayed in state "${await page.evaluate(() => document.body.dataset.state)}" (${(e as Error).message.split('\n')[0]}); console:\n${consoleLines.join('\n')}`);
  }
  const state = (await page.evaluate(() => document.body.dataset.state))!;
  if (state === 'no-webgpu') throw new Error(`headless Chromium has no WebGPU adapter: ${await page.textContent('#gpu-status')}`);
  if (state === 'error') throw new Error(`the page reported an error: ${await page.textContent('#error')}\npage console:\n${consoleLines.join('\n')}`);
  return state;
}

/** Page state after opening `path`, for the failure paths. */
async function openAndSettle(path: string): Promise<{ state: string; error: string; gpu: string }> {
  await page.goto(`${origin}${path}`);
  await page.waitForFunction(() => !['init', 'loading'].includes(document.body.dataset.state ?? ''), null, { timeout: 60_000 });
  return page.evaluate(() => ({
    state: document.body.dataset.state ?? '', error: document.getElementById('error')!.textContent ?? '',
    gpu: document.getElementById('gpu-status')!.textContent ?? '',
  }));
}

/** Greedy generation in the page with the model already loaded; the generated text. */
async function generateLoaded(shotName: string): Promise<string> {
  await page.fill('#prompt', PROMPT);
  await page.fill('#max-tokens', String(NEW_TOKENS));
  await page.fill('#temperature', '0');
  await page.click('#generate');
  await waitState(['generated'], 60_000);
  const shot = join(artifacts, `playground-${shotName}.png`);
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`# screenshot ${shot}; ${await page.textContent('#gen-stats')}`);
  return (await page.textContent('#generated')) ?? '';
}

async function generateInPage(folder: string): Promise<string> {
  await page.goto(`${origin}/?model=${encodeURIComponent(`/ckpt/${folder}/`)}`);
  await waitState(['loaded'], 60_000);
  return generateLoaded(folder.replaceAll('/', '-'));
}

/** The memory figures the page shows for the loaded model (#model-info data attributes). */
async function memoryInPage(): Promise<Record<string, number>> {
  const d = await page.$eval('#model-info', (el) => ({ ...(el as HTMLElement).dataset }));
  return Object.fromEntries(Object.entries(d).map(([k, v]) => [k, Number(v)]));
}

test('greedy generation in Chromium on WebGPU equals the Node CLI for a checkpoint folder', async () => {
  const text = await generateInPage('dense');
  assert.equal(text, expected.dense);
  const info = await page.textContent('#model-info');
  assert.match(info ?? '', /2 layers, hidden 32/);
  assert.match(await page.textContent('#gpu-status') ?? '', /WebGPU ready/);
});

test('a packed 1-bit folder stays packed on WebGPU: memory figures, and the text and log-probabilities of the packed CPU model', async () => {
  const text = await generateInPage('run/packed');
  assert.equal(text, expected.packed);
  const lps = JSON.parse((await page.$eval('#gen-stats', (el) => (el as HTMLElement).dataset.logprobs)) ?? '[]') as number[];
  assert.equal(lps.length, packedLogprobs.length);
  const lpErr = Math.max(...lps.map((v, i) => Math.abs(v - packedLogprobs[i])));
  assert.ok(lpErr < LOGPROB_TOL, `log-probabilities of the greedy tokens differ from the CPU packed model's by ${lpErr}`);
  const first = await page.$eval('#gen-stats', (el) => (el as HTMLElement & { firstStepLogprobs?: number[] }).firstStepLogprobs ?? []);
  assert.equal(first.length, packedFirstStep.length);
  const rowErr = Math.max(...first.map((v, i) => Math.abs(v - packedFirstStep[i])));
  assert.ok(rowErr < LOGPROB_TOL, `the first step's log-probabilities over the vocabulary differ from the CPU packed model's by ${rowErr}`);
  assert.match(await page.textContent('#candidates') ?? '', /most likely first tokens: /);
  assert.match(await page.textContent('#model-info') ?? '', /stay packed/);
  const m = await memoryInPage();
  assert.equal(m.packedLinears, packedRef.linears);
  assert.equal(m.packedBytes, packedRef.bytes);
  assert.equal(m.packedF32Bytes, packedRef.f32Bytes);
  // The model with f32 weights is the latent model; on the GPU it is smaller by what the bits save.
  assert.equal(m.f32Bytes, packedRef.latentBytes);
  assert.equal(m.gpuBytes, m.f32Bytes - (packedRef.f32Bytes - packedRef.bytes));
  // The GPU buffers the worker really holds: at least the packed weights (rounded up to buckets), less than f32 weights would need.
  assert.ok(m.poolBytes >= m.gpuBytes && m.poolBytes < m.f32Bytes, `GPU buffers ${m.poolBytes} B for ${m.gpuBytes} B packed, ${m.f32Bytes} B as f32`);
  console.log(`# packed linears ${m.packedBytes} B on the GPU vs ${m.packedF32Bytes} B as f32; model ${m.gpuBytes} B vs ${m.f32Bytes} B; GPU buffers ${m.poolBytes} B; greedy log-probabilities within ${lpErr.toExponential(1)} of the CPU's, the first step's whole row within ${rowErr.toExponential(1)}`);
});

test('a picked run folder with model/ and packed/ is refused; its packed/ folder picked alone loads and generates', async () => {
  await page.goto(origin);
  await waitState(['ready'], 60_000);
  await page.setInputFiles('#pick-folder', join(work, 'run'));
  await page.waitForFunction(() => document.body.dataset.state === 'error', null, { timeout: 10_000 });
  assert.match(await page.textContent('#error') ?? '', /several checkpoints \(run\/model\/, run\/packed\/\)/);
  await page.setInputFiles('#pick-folder', join(work, 'run', 'packed'));
  await waitState(['loaded'], 60_000);
  assert.match(await page.textContent('#model-info') ?? '', /of packed\/.*stay packed/s);
  assert.equal((await memoryInPage()).packedBytes, packedRef.bytes);
  assert.equal(await generateLoaded('picked-packed'), expected.packed);
});

test('Stop ends a long generation within a token, and the page keeps responding meanwhile', async () => {
  const max = LONG_CONTEXT - PROMPT.length;
  await page.goto(`${origin}/?model=${encodeURIComponent('/ckpt/run/packed/')}`);
  await waitState(['loaded'], 60_000);
  await page.fill('#prompt', PROMPT);
  await page.fill('#max-tokens', String(max));
  await page.fill('#temperature', '0');
  // A 10 ms timer on the page's main thread while it generates: its largest gap is how long the page was unresponsive.
  await page.evaluate(() => {
    const w = window as unknown as { ticks: number[]; t0: number; firstToken: number };
    w.ticks = [];
    w.t0 = performance.now();
    new MutationObserver((_, obs) => {
      w.firstToken = performance.now() - w.t0;
      obs.disconnect();
    }).observe(document.getElementById('generated')!, { childList: true, characterData: true, subtree: true });
    const timer = setInterval(() => {
      w.ticks.push(performance.now());
      if (document.body.dataset.state !== 'generating') clearInterval(timer);
    }, 10);
    document.getElementById('generate')!.click();
  });
  await page.waitForFunction(() => Number(document.getElementById('generated')!.dataset.tokens) >= 12, null, { timeout: 60_000 });
  // The page handles input while the worker generates.
  await page.fill('#seed', '7');
  assert.equal(await page.inputValue('#seed'), '7');
  const shownAtStop = await page.evaluate(() => {
    const n = Number(document.getElementById('generated')!.dataset.tokens);
    document.getElementById('stop')!.click();
    return n;
  });
  await waitState(['stopped'], 30_000);
  const stats = await page.$eval('#gen-stats', (el) => ({ ...(el as HTMLElement).dataset }));
  const [tokens, atStop] = [Number(stats.tokens), Number(stats.tokensAtStop)];
  assert.equal(stats.finishReason, 'abort');
  assert.ok(tokens < max, `generation ran to the end (${tokens} tokens) despite Stop`);
  // The worker had at least what the page had shown when Stop was pressed, and finished only the token in flight.
  assert.ok(atStop >= shownAtStop && tokens <= atStop + 1, `Stop pressed at ${shownAtStop} tokens shown, reached the worker at ${atStop}, ended at ${tokens}`);
  const text = (await page.textContent('#generated')) ?? '';
  assert.equal(text.length, tokens, 'byte-level model: one character per token');
  assert.ok(text.startsWith(expected.packed.slice(0, Math.min(tokens, expected.packed.length))), `stopped text ${JSON.stringify(text)} is not the greedy text`);
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await page.textContent('#generated'), text, 'tokens kept coming after Stop');
  const { ticks, t0, firstToken } = await page.evaluate(() => {
    const w = window as unknown as { ticks: number[]; t0: number; firstToken: number };
    return { ticks: w.ticks, t0: w.t0, firstToken: w.firstToken };
  });
  // Gaps while tokens stream (first token shown -> Stop), when the page handles a message per token.
  // Before the first token the page runs no code at all; on SwiftShader that phase compiles the kernels
  // in Chromium's GPU process, and on this shared 2-core machine its gaps are reported, not asserted.
  const gapsFrom = (from: number, to: number) => ticks.slice(1).map((t, i) => [ticks[i] - t0, t - ticks[i]]).filter(([at]) => at >= from && at < to).map(([, g]) => g);
  const decodeGaps = gapsFrom(firstToken, Infinity);
  const prefillGap = Math.max(0, ...gapsFrom(0, firstToken));
  assert.ok(decodeGaps.length > 20, `only ${decodeGaps.length} timer ticks while tokens streamed`);
  const gap = Math.max(...decodeGaps);
  assert.ok(gap < 250, `the page's main thread stalled for ${gap.toFixed(0)} ms while tokens streamed`);
  // The model runs in the worker: the page itself never asked for a WebGPU adapter.
  assert.equal(page.workers().length, 1);
  assert.equal(await page.evaluate(() => (window as unknown as { mainThreadAdapterRequests: number }).mainThreadAdapterRequests), 0);
  assert.equal(await page.workers()[0].evaluate(() => typeof navigator.gpu), 'object');
  assert.equal(await page.isDisabled('#generate'), false, 'the page is ready for the next generation');
  console.log(`# Stop: pressed at ${shownAtStop} tokens shown, worker at ${atStop}, ended at ${tokens} of ${max}; first token shown ${firstToken.toFixed(0)} ms after Generate; longest main-thread timer gap (10 ms timer) ${gap.toFixed(0)} ms while tokens streamed (${decodeGaps.length} ticks), ${prefillGap.toFixed(0)} ms before the first token`);
  await page.screenshot({ path: join(artifacts, 'playground-stopped.png'), fullPage: true });
});

test('the page trains a tiny model, charts a finite loss per step, and Stop ends training after the step in flight', async () => {
  await page.goto(origin);
  await waitState(['ready'], 60_000);
  await page.selectOption('#train-preset', 'micro-dense');
  await page.fill('#train-steps', '4');
  await page.fill('#train-batch', '2');
  await page.fill('#train-ctx', '16');
  await page.click('#train');
  await waitState(['trained'], 90_000);
  const { step, loss } = await page.$eval('#train-status', (el) => ({ step: Number((el as HTMLElement).dataset.step), loss: Number((el as HTMLElement).dataset.loss) }));
  assert.equal(step, 4);
  // Four steps from a fresh byte-level model: the loss is still near ln(256) = 5.55.
  assert.ok(Number.isFinite(loss) && Math.abs(loss - Math.log(256)) < 1, `loss after 4 steps is ${loss}`);
  await page.screenshot({ path: join(artifacts, 'playground-train.png'), fullPage: true });

  await page.fill('#train-steps', '200');
  await page.click('#train');
  await page.waitForFunction(() => document.body.dataset.state === 'training' && Number(document.getElementById('train-status')!.dataset.step) >= 2, null, { timeout: 60_000 });
  const atStop = await page.evaluate(() => {
    const n = Number(document.getElementById('train-status')!.dataset.step);
    document.getElementById('train-stop')!.click();
    return n;
  });
  await waitState(['trained'], 60_000);
  const stopped = await page.$eval('#train-status', (el) => Number((el as HTMLElement).dataset.step));
  // Steps whose loss was already on its way to the page when Stop was pressed, plus the one in flight.
  assert.ok(stopped >= atStop && stopped <= atStop + 2, `Stop pressed at step ${atStop}, training ended at step ${stopped} of 200`);
  assert.equal(await page.isDisabled('#generate'), false, 'the trained model is loaded for generation');
});

test('a URL without a checkpoint gives one clear error in the page', async () => {
  const r = await openAndSettle(`/?model=${encodeURIComponent('/ckpt/no-such-folder/')}`);
  assert.equal(r.state, 'error');
  assert.match(r.error, /no config\.json/);
});

test('a browser without WebGPU gets a clear message instead of a broken page', async () => {
  // Same Chromium without --enable-unsafe-webgpu: headless Linux Chromium then offers no adapter.
  const plain = await chromium.launchPersistentContext(join(work, 'profile-b'), {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS.filter((f) => f !== '--enable-unsafe-webgpu'),
  });
  try {
    const p = await plain.newPage();
    await p.goto(origin);
    await p.waitForFunction(() => document.body.dataset.state !== 'init', null, { timeout: 30_000 });
    assert.equal(await p.evaluate(() => document.body.dataset.state), 'no-webgpu');
    assert.match(await p.textContent('#gpu-status') ?? '', /WebGPU is not available.*--enable-unsafe-webgpu/s);
    await p.screenshot({ path: join(artifacts, 'playground-no-webgpu.png') });
  } finally {
    await plain.close();
  }
});
