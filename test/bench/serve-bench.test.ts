// frugal bench serve, small: every streamed response is complete and identical to generate() alone
// (batched and one-at-a-time), and the figures are present and finite. Loopback only, bounded.
// Also run through `frugal bench serve`, with peers that cannot start.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { run } from '../../bench/serve.ts';

test('bench serve: responses complete and identical to greedy generate; TTFT and tokens/s reported', async () => {
  const r = await run({ clients: '1,3', tokens: '6', reps: '2', preset: 'micro-dense' });
  assert.equal(r.host, '127.0.0.1');
  assert.equal(r.all_identical, true);
  assert.deepEqual(r.rows.map((x) => x.clients), [1, 3]);
  for (const row of r.rows) {
    assert.equal(row.responses_identical_to_generate, true);
    for (const m of [row.batched, row.one_at_a_time]) {
      assert.ok(m.ttft_p50_ms > 0 && m.ttft_p50_ms <= m.ttft_p99_ms);
      assert.ok(Number.isFinite(m.tokens_per_s) && m.tokens_per_s > 0);
    }
    assert.ok(row.batching_speedup > 0);
  }
  await assert.rejects(run({ clients: '0' }), /--clients/);
});

// Through the command line, as users run it: `frugal bench serve` finds the benchmark's options list,
// refuses an unknown option, reports a llama-server peer that cannot start as peer: { error }, and
// drives a peer that does start.
const BIN = resolve(import.meta.dirname, '..', '..', 'bin', 'frugal.js');
const frugal = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 120_000 });

test('frugal bench serve runs from the CLI; a peer that does not start is an error in the JSON, one that starts is driven', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'frugal-bench-serve-'));
  try {
    // Peer folders: one whose llama-server fails to load like a binary missing a shared library, one
    // whose server exits while loading the model, and one without a llama-server.
    const peer = (name: string, script: string) => {
      const dir = join(tmp, name);
      mkdirSync(join(dir, 'bin'), { recursive: true });
      if (script) {
        writeFileSync(join(dir, 'bin', 'llama-server'), `#!/bin/sh\n${script}\n`);
        chmodSync(join(dir, 'bin', 'llama-server'), 0o755);
      }
      return dir;
    };
    const noLib = peer('nolib', "echo \"$0: error while loading shared libraries: libmtmd.so: cannot open shared object file: No such file or directory\" >&2; exit 127");
    const dies = peer('dies', '[ "$1" = --version ] && { echo "version: 1"; exit 0; }; echo "error: failed to load model" >&2; exit 1');
    const none = peer('none', '');
    const cases: [string, RegExp][] = [
      [noLib, /^llama-server does not start: libmtmd\.so is missing from .*nolib[/]lib/],
      [dies, /^llama-server exited while starting: error: failed to load model/],
      [none, /^no llama-server at .*none[/]bin[/]llama-server/],
    ];
    for (const [dir, re] of cases) {
      const r = frugal('bench', 'serve', '--json', '--', '--clients', '1,2', '--tokens', '3', '--reps', '1', '--preset', 'micro-dense', '--peer', dir);
      assert.equal(r.status, 0, r.stderr);
      const j = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
      assert.equal(j.all_identical, true);
      assert.deepEqual(j.rows.map((x: { clients: number }) => x.clients), [1, 2]);
      assert.match(j.peer.error, re);
    }
    // A stand-in peer that answers like llama-server with `frugal serve` on the GGUF the benchmark
    // writes: the driving code (GGUF with the byte vocabulary, one slot per client, token-id prompts,
    // the streamed replies) runs end to end, and the GGUF's greedy replies equal generate() on the model.
    const stand = peer('stand-in', [
      '[ "$1" = --version ] && { echo "version: stand-in"; exit 0; }',
      'while [ $# -gt 0 ]; do case "$1" in -m) m=$2; shift;; --port) p=$2; shift;; -np) n=$2; shift;; esac; shift; done',
      `exec "${process.execPath}" "${BIN}" serve --model "$m" --port "$p" --max-batch "$n" --threads 1`,
    ].join('\n'));
    const r = frugal('bench', 'serve', '--json', '--', '--clients', '1,2', '--tokens', '4', '--reps', '1', '--preset', 'micro-dense', '--peer', stand);
    assert.equal(r.status, 0, r.stderr);
    const p = JSON.parse(r.stdout.trim().split('\n').at(-1)!).peer;
    assert.equal(p.error, undefined, p.error);
    assert.deepEqual(p.rows.map((x: { clients: number }) => x.clients), [1, 2]);
    for (const row of p.rows) {
      assert.equal(row.responses_identical_to_generate, true);
      assert.ok(row.ttft_p50_ms > 0 && row.ttft_p50_ms <= row.ttft_p99_ms && row.tokens_per_s > 0);
      assert.ok(Number.isFinite(row.frugal_batched_over_peer) && row.frugal_batched_over_peer > 0);
    }
    const bad = frugal('bench', 'serve', '--clientz', '2');
    assert.equal(bad.status, 2);
    assert.match(bad.stderr.trim(), /^frugal: benchmark serve has no option --clientz; its options: --clients --tokens --reps --preset --threads --peer$/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
