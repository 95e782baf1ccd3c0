// Every native source compiles for a non-x86 target (the portable paths stand alone when the x86
// intrinsics are absent). Uses an aarch64 cross compiler when the machine has one (Debian:
// g++-aarch64-linux-gnu); otherwise says so and checks nothing.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const REPO = resolve(fileURLToPath(import.meta.url), '..', '..', '..');
const CXX = 'aarch64-linux-gnu-g++';
const have = spawnSync(CXX, ['--version']).status === 0;
const nodeInclude = join(dirname(dirname(process.execPath)), 'include', 'node');

test('every native/*.cc compiles for aarch64 (syntax and types, portable paths only)', { skip: have && existsSync(nodeInclude) ? false : `no ${CXX} or Node headers on this machine` }, () => {
  const napi = (createRequire(import.meta.url)('node-addon-api') as { include_dir: string }).include_dir;
  const sources = readdirSync(join(REPO, 'native')).filter((f) => f.endsWith('.cc'));
  assert.ok(sources.length > 5);
  const failures: string[] = [];
  for (const f of sources) {
    const r = spawnSync(CXX, ['-fsyntax-only', '-std=c++17', '-fexceptions', '-DNAPI_VERSION=8', '-DNAPI_CPP_EXCEPTIONS',
      `-I${nodeInclude}`, `-I${join(REPO, napi)}`, `-I${napi}`, join(REPO, 'native', f)], { encoding: 'utf8' });
    if (r.status !== 0) failures.push(`${f}: ${r.stderr.split('\n').find((l) => l.includes('error')) ?? r.stderr.slice(0, 200)}`);
  }
  assert.deepEqual(failures, []);
});
