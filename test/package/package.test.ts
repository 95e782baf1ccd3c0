// The package as another project gets it: `npm pack`, then install the tarball into a new empty
// project in a temporary folder with no C/C++ compiler on PATH (so the prebuilt addon must be used), and
// (a) import it from plain node (no tsx), build a tiny model, generate and save it; (b) type-check a
// TypeScript consumer under moduleResolution node16 and bundler; (c) run `npx frugal --help` and
// `npx frugal generate` there; (d) bundle the browser entry with esbuild (no Node shims) and run it in
// headless Chromium on WebGPU, checking its logits against the Node CPU model's. publint and
// @arethetypeswrong/cli check the tarball. Sizes are printed as test diagnostics.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const REPO = resolve(fileURLToPath(import.meta.url), '..', '..', '..');
const bin = (name: string) => join(REPO, 'node_modules', '.bin', name);
const work = mkdtempSync(join(tmpdir(), 'frugal-package-'));
const project = join(work, 'consumer');
let tarball = '';

/** PATH with node and npm only: a compiler-free machine as far as the install can tell. */
function bareEnv(): NodeJS.ProcessEnv {
  const dir = join(work, 'bare-bin');
  mkdirSync(dir, { recursive: true });
  const npmCli = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin');
  symlinkSync(process.execPath, join(dir, 'node'));
  writeFileSync(join(dir, 'npm'), `#!/bin/sh\nexec "${process.execPath}" "${join(npmCli, 'npm-cli.js')}" "$@"\n`, { mode: 0o755 });
  writeFileSync(join(dir, 'npx'), `#!/bin/sh\nexec "${process.execPath}" "${join(npmCli, 'npx-cli.js')}" "$@"\n`, { mode: 0o755 });
  // sh itself is needed by npm to run scripts; link the few utilities it uses, not a compiler.
  for (const tool of ['sh', 'env']) symlinkSync(`/bin/${tool}`, join(dir, tool));
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: dir, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' };
  for (const k of Object.keys(env)) if (k.startsWith('npm_') && !k.startsWith('npm_config_')) delete env[k];
  delete env.NODE_OPTIONS;
  return env;
}

function sh(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; timeout?: number }): string {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, encoding: 'utf8', timeout: opts.timeout ?? 300_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

function duBytes(p: string): number {
  const st = statSync(p);
  if (!st.isDirectory()) return st.size;
  return readdirSync(p).reduce((s, f) => s + duBytes(join(p, f)), 0);
}
const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;

let env: NodeJS.ProcessEnv;
before(() => {
  const out = sh(process.execPath, [join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js'),
    'pack', '--json', '--pack-destination', work], { cwd: REPO, timeout: 600_000 });
  const info = JSON.parse(out.slice(out.indexOf('['))) as { filename: string; size: number; unpackedSize: number; files: { path: string }[] }[];
  tarball = join(work, info[0].filename);
  const files = info[0].files.map((f) => f.path);
  assert.ok(files.some((f) => /^prebuilds\/linux-x64\/.*\.node$/.test(f)), `the tarball has a linux-x64 prebuild (files: ${files.filter((f) => f.startsWith('pre')).join(', ')})`);
  assert.ok(files.includes('dist/index.js') && files.includes('dist/index.d.ts') && files.includes('dist/browser.js'), 'the tarball has the compiled entries');
  assert.ok(files.includes('LICENSE'), 'the tarball has a LICENSE');
  assert.ok(!files.some((f) => f.startsWith('test/') || f.startsWith('src/') || f.startsWith('bench/')), 'tests, sources and benchmarks stay out of the tarball');
  console.log(`# tarball ${info[0].filename}: ${mib(info[0].size)} packed, ${mib(info[0].unpackedSize)} unpacked, ${files.length} files`);

  env = bareEnv();
  const found = spawnSync('sh', ['-c', 'for t in g++ c++ cc gcc clang make python3; do command -v $t; done'], { env, encoding: 'utf8' });
  assert.equal(found.stdout.trim(), '', 'no compiler, make or python3 is reachable on the install PATH');
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  sh('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], { cwd: project, env, timeout: 600_000 });
  const all = duBytes(join(project, 'node_modules'));
  const webgpu = existsSync(join(project, 'node_modules', 'webgpu')) ? duBytes(join(project, 'node_modules', 'webgpu')) : 0;
  const corpus = ['datasets-sotu', 'datasets-moby-dick'].reduce((s, d) => {
    const p = join(project, 'node_modules', '@stdlib', d);
    return s + (existsSync(p) ? duBytes(p) : 0);
  }, 0);
  console.log(`# installed with dependencies: ${mib(all)} (optional: webgpu ${mib(webgpu)}, embedded corpus ${mib(corpus)}; --omit=optional leaves ${mib(all - webgpu - corpus)})`);
  assert.ok(!existsSync(join(project, 'node_modules', 'frugal-lm', 'build')), 'nothing was compiled at install: the prebuilt addon serves');
});

after(() => rmSync(work, { recursive: true, force: true }));

const TINY = { vocabSize: 256, hiddenSize: 32, numLayers: 2, numHeads: 2, intermediateSize: 64, maxPositions: 64 };

test('(a) plain node imports frugal-lm, builds a tiny model, generates, saves a checkpoint', () => {
  writeFileSync(join(project, 'use.mjs'), `
import { ByteTokenizer, CausalLM, generate, saveCheckpoint, saveTokenizer, fromArray, noGrad } from 'frugal-lm';
const model = new CausalLM(${JSON.stringify(TINY)}, { seed: 3 });
const tok = new ByteTokenizer();
const r = await generate(model, tok, 'hello', { maxNewTokens: 8, temperature: 0 });
saveCheckpoint('ckpt', model);
saveTokenizer(tok, 'ckpt');
const ids = fromArray(new Int32Array([104, 101, 108, 108, 111]), [1, 5]);
const logits = await noGrad(() => model.forward(ids)).data();
console.log(JSON.stringify({ ids: r.ids, logits: Array.from(logits.slice(0, 256 * 5)) }));
`);
  const out = JSON.parse(sh('node', ['use.mjs'], { cwd: project, env })) as { ids: number[]; logits: number[] };
  assert.equal(out.ids.length, 8);
  assert.ok(out.logits.every(Number.isFinite) && out.logits.length === 1280);
  writeFileSync(join(project, 'node-logits.json'), JSON.stringify(out.logits));
  assert.ok(existsSync(join(project, 'ckpt', 'model.safetensors')));
});

for (const resolution of ['node16', 'bundler'] as const) {
  test(`(b) a TypeScript consumer type-checks under moduleResolution ${resolution}`, () => {
    const dir = join(project, `ts-${resolution}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'main.ts'), `
import { ByteTokenizer, CausalLM, generate, type ModelConfig, type Tokenizer } from 'frugal-lm';
import * as browser from 'frugal-lm/browser';
const cfg: Partial<ModelConfig> = { vocabSize: 256, hiddenSize: 32, numLayers: 2, numHeads: 2, intermediateSize: 64 };
const model: CausalLM = new CausalLM(cfg, { seed: 1 });
const tok: Tokenizer = new ByteTokenizer();
const text: string = (await generate(model, tok, 'hi', { maxNewTokens: 2 })).text;
const again: browser.CausalLM = new browser.CausalLM(cfg);
// @ts-expect-error a model config has no such field
new CausalLM({ hiddenSizee: 3 });
export { text, again };
`);
    const module = resolution === 'node16' ? 'node16' : 'esnext';
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { target: 'es2022', module, moduleResolution: resolution, strict: true, noEmit: true, skipLibCheck: false,
        lib: ['es2022', 'dom'], types: [], typeRoots: [join(REPO, 'node_modules', '@types')] },
      files: ['main.ts'],
    }));
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
    sh(process.execPath, [join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], { cwd: dir });
  });
}

test('(c) npx frugal --help and npx frugal generate --model work in the consumer', () => {
  const help = sh('npx', ['--no-install', 'frugal', '--help'], { cwd: project, env });
  assert.match(help, /usage: frugal <command>/);
  const out = sh('npx', ['--no-install', 'frugal', 'generate', '--model', 'ckpt', '--prompt', 'hello', '--max-new-tokens', '8', '--temperature', '0'],
    { cwd: project, env });
  assert.ok(out.length > 0, 'generate printed text');
  const bad = spawnSync('npx', ['--no-install', 'frugal', 'generate', '--model', 'no-such-dir', '--prompt', 'x'], { cwd: project, env, encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr.trim(), /^frugal: /);
});

test('(d) the browser entry bundles with esbuild without Node shims and runs in headless Chromium on WebGPU', async (t) => {
  const executablePath = process.env.FRUGAL_CHROMIUM;
  assert.ok(executablePath && existsSync(executablePath), 'a headless Chromium (bin/run-tests.js sets FRUGAL_CHROMIUM)');
  const page = join(project, 'page');
  mkdirSync(page);
  writeFileSync(join(page, 'app.js'), `
import { ByteTokenizer, CausalLM, generate, initWebGPU, fromArray, noGrad } from 'frugal-lm';
try {
  await initWebGPU();
  const model = new CausalLM(${JSON.stringify(TINY)}, { seed: 3, device: 'webgpu' });
  const r = await generate(model, new ByteTokenizer(), 'hello', { maxNewTokens: 8, temperature: 0 });
  const ids = fromArray(new Int32Array([104, 101, 108, 108, 111]), [1, 5], 'webgpu');
  const logits = await noGrad(() => model.forward(ids)).data();
  window.result = { ids: r.ids, logits: Array.from(logits) };
} catch (e) { window.result = { error: String(e && e.stack || e) }; }
`);
  writeFileSync(join(page, 'index.html'), '<!doctype html><script type="module" src="bundle.js"></script>');
  // platform=browser: esbuild fails on any node: import or Node-only package the entry reaches.
  sh(bin('esbuild'), ['app.js', '--bundle', '--platform=browser', '--format=esm', '--target=es2022', '--outfile=bundle.js'],
    { cwd: page });
  const server: Server = createServer((req, res) => {
    const f = join(page, (req.url ?? '/') === '/' ? 'index.html' : (req.url ?? '').slice(1));
    if (!f.startsWith(page) || !existsSync(f)) return void res.writeHead(404).end();
    res.setHeader('content-type', f.endsWith('.js') ? 'text/javascript' : 'text/html');
    createReadStream(f).pipe(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const browser = await chromium.launch({
    executablePath, headless: true,
    args: ['--no-sandbox', '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader', '--use-angle=swiftshader', '--disable-gpu-sandbox'],
  });
  t.after(async () => { await browser.close(); server.close(); });
  const tab = await browser.newPage();
  await tab.goto(`http://127.0.0.1:${port}/`);
  await tab.waitForFunction(() => (window as { result?: unknown }).result !== undefined, undefined, { timeout: 120_000 });
  const result = await tab.evaluate(() => (window as unknown as { result: { ids?: number[]; logits?: number[]; error?: string } }).result);
  assert.equal(result.error, undefined, result.error);
  assert.equal(result.ids!.length, 8);
  const cpu = JSON.parse(readFileSync(join(project, 'node-logits.json'), 'utf8')) as number[];
  let worst = 0;
  for (let i = 0; i < cpu.length; i++) worst = Math.max(worst, Math.abs(cpu[i] - result.logits![i]));
  assert.ok(worst < 1e-4, `browser WebGPU logits match the Node CPU model's (max |diff| ${worst})`);
});

test('publint and @arethetypeswrong/cli find no errors in the tarball', () => {
  const lint = spawnSync(bin('publint'), [tarball, '--level', 'error'], { encoding: 'utf8' });
  assert.equal(lint.status, 0, `publint:\n${lint.stdout}\n${lint.stderr}`);
  const attw = spawnSync(bin('attw'), [tarball, '--profile', 'esm-only', '--format', 'ascii'], { encoding: 'utf8' });
  assert.equal(attw.status, 0, `attw:\n${attw.stdout}\n${attw.stderr}`);
  console.log(`# attw: ${attw.stdout.trim().split('\n').slice(-3).join(' | ')}`);
});
