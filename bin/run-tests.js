#!/usr/bin/env node
// Runs the node:test suite over TypeScript test files.
//   node bin/run-tests.js            CPU pass over test/, then the WebGPU pass (op, golden, model and
//                                    backend tests with FRUGAL_DEVICE=webgpu; Dawn on SwiftShader when
//                                    the machine has no GPU)
//   node bin/run-tests.js --cpu      CPU pass only
//   node bin/run-tests.js --webgpu   WebGPU pass only
//   node bin/run-tests.js DIR|FILE…  the given tests on the backend named by FRUGAL_DEVICE (default cpu)
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const WEBGPU_ROOTS = ['test/ops', 'test/golden', 'test/nn', 'test/models', 'test/backend'];
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
  console.log(`\n### ${files.length} test files on backend: ${device}\n`);
  const env = { ...process.env, FRUGAL_DEVICE: device };
  if (device === 'webgpu') {
    const swiftshader = '/usr/lib/chromium/vk_swiftshader_icd.json';
    if (!env.VK_DRIVER_FILES && existsSync(swiftshader)) env.VK_DRIVER_FILES = swiftshader;
    env.XDG_RUNTIME_DIR ??= '/tmp';
  }
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', ...files], { stdio: 'inherit', env });
  return r.status ?? 1;
}

const args = process.argv.slice(2);
let status = 0;
if (args.length === 0 || args[0] === '--cpu' || args[0] === '--webgpu') {
  const only = args[0];
  const passes = [];
  if (!only) {
    console.log('### type check (tsc --noEmit)');
    passes.push(spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '--noEmit'], { stdio: 'inherit' }).status ?? 1);
  }
  if (only !== '--webgpu') passes.push(run(collect(['test']).filter((f) => !isWebgpuOnly(f)), 'cpu'));
  if (only !== '--cpu') passes.push(run(collect(WEBGPU_ROOTS).filter((f) => !/cpu-[^/]*\.test\.ts$/.test(f)), 'webgpu'));
  status = passes.find((s) => s !== 0) ?? 0;
} else {
  status = run(collect(args), process.env.FRUGAL_DEVICE ?? 'cpu');
}
process.exit(status);
