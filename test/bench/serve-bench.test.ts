// frugal bench serve, small: every streamed response is complete and identical to generate() alone
// (batched and one-at-a-time), and the figures are present and finite. Loopback only, bounded.
import assert from 'node:assert/strict';
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
