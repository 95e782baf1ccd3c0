#!/usr/bin/env node
// The `frugal` command: runs the compiled CLI (dist/, built by `npm install` through the prepare script).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/cli/dispatch.js', import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  console.error('frugal: the compiled CLI (dist/) is missing: run `npm install` (or `npx tsc -p tsconfig.build.json`) in the frugal-lm folder');
  process.exit(2);
}
await import(main.href);
