// Running the `frugal` command from tests, and the check every user mistake must pass.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';

export const FRUGAL_BIN = join(resolve(import.meta.dirname, '..'), 'bin', 'frugal.js');

export interface CliResult { code: number | null; out: string; err: string }

/** A runner of `frugal ARGS...` in the folder `cwd`. */
export function frugalIn(cwd: string): (...args: string[]) => CliResult {
  return (...args) => {
    const r = spawnSync(process.execPath, [FRUGAL_BIN, ...args], { encoding: 'utf8', cwd });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };
}

/** A user error: exit code 2 and exactly one line on stderr starting with "frugal: ", no stack. */
export function assertUserError(r: CliResult, pattern: RegExp): void {
  assert.equal(r.code, 2, `exit code ${r.code}; stderr: ${r.err}`);
  const lines = r.err.trimEnd().split('\n');
  assert.equal(lines.length, 1, `expected one line, got: ${r.err}`);
  assert.match(lines[0], /^frugal: /);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(r.err, /\n\s+at /);
}

export interface Served { proc: ReturnType<typeof spawn>; base: string; stderr: () => string }

/** Starts `frugal serve --port 0 ARGS...` and resolves with the process and its base URL once it listens. */
export function startServe(args: string[]): Promise<Served> {
  const proc = spawn(process.execPath, [FRUGAL_BIN, 'serve', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  return new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`serve did not start: ${err}`)), 30_000);
    proc.stderr!.on('data', (d) => {
      err += d;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        res({ proc, base: m[1], stderr: () => err });
      }
    });
    proc.on('exit', (code) => rej(new Error(`serve exited with ${code}: ${err}`)));
  });
}
