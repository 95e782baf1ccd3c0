#!/usr/bin/env node
// Runs the node:test suite over TypeScript test files.
//   node bin/run-tests.js            CPU pass over test/, then the WebGPU pass (op, golden, model and
//                                    backend tests with FRUGAL_DEVICE=webgpu; Dawn on SwiftShader when
//                                    the machine has no GPU)
//   node bin/run-tests.js --cpu      CPU pass only
//   node bin/run-tests.js --webgpu   WebGPU pass only
//   node bin/run-tests.js DIR|FILE…  the given tests on the backend named by FRUGAL_DEVICE (default cpu)
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { chromiumPath, webgpuEnv } from './test-env.js';

const WEBGPU_ROOTS = ['test/ops', 'test/golden', 'test/nn', 'test/models', 'test/backend', 'test/serve/webgpu-serve.test.ts'];
const isWebgpuOnly = (f) => /test\/backend\/webgpu-[^/]*\.test\.ts$/.test(f);

function collect(roots) {
  const files = [];
  const walk = (p) => {
    if (statSync(p).isDirectory()) for (const f of readdirSync(p).sort()) walk(join(p, f));
    else if (p.endsWith('.test.ts')) files.push(p);
  };
  roots.forEach(walk);
  return files;
}

function run(files, device) {
  // Both passes get a Vulkan driver for Dawn: the CPU pass also holds tests that ask for WebGPU themselves
  // (the GPU benchmarks' checks).
  const { env, driver } = webgpuEnv({ ...process.env, FRUGAL_DEVICE: device });
  console.log(`\n### ${files.length} test files on backend: ${device} (Vulkan for WebGPU: ${driver})\n`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', ...files], { stdio: 'inherit', env });
  return r.status ?? 1;
}

const args = process.argv.slice(2);
// The browser test drives a headless Chromium (unpacked from the npm registry when the machine has none).
const browser = await chromiumPath();
if (browser) process.env.FRUGAL_CHROMIUM = browser;
let status = 0;
if (args.length === 0 || args[0] === '--cpu' || args[0] === '--webgpu') {
  const only = args[0];
  const passes = [];
  if (!only) {
    console.log('### build (tsc -p tsconfig.build.json: src -> dist) and type check (tsc --noEmit: src, test, bench)');
    passes.push(spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' }).status ?? 1);
    passes.push(spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '--noEmit'], { stdio: 'inherit' }).status ?? 1);
  }
  if (only !== '--webgpu') passes.push(run(collect(['test']).filter((f) => !isWebgpuOnly(f)), 'cpu'));
  if (only !== '--cpu') // cpu-* files and the GGUF model tests (quantized GGUF weights run on the CPU only) stay in the CPU pass.
    passes.push(run(collect(WEBGPU_ROOTS).filter((f) => !/cpu-[^/]*\.test\.ts$/.test(f) && !/gguf[^/]*\.test\.ts$/.test(f)), 'webgpu'));
  status = passes.find((s) => s !== 0) ?? 0;
} else {
  status = run(collect(args), process.env.FRUGAL_DEVICE ?? 'cpu');
}
process.exit(status);
