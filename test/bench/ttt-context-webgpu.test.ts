// Smoke test of the ttt-context benchmark on WebGPU at tiny shapes (SwiftShader without a GPU): the
// timings are meaningless here; the checks are that both models prefill, decode and fill the KV
// cache with random keys past --attn-prefill-max on the webgpu backend, and that the report has the
// GPU memory keys.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { destroyWebGPU, initWebGPU } from '../../src/backend/webgpu/index.ts';
import { run } from '../../bench/ttt-context.ts';
import { DEVICE } from '../helpers.ts';

// The benchmark runs its models in child processes; this only checks that an adapter exists.
let reason = '';
try { await initWebGPU(); } catch (e) { reason = (e as Error).message; }
await destroyWebGPU();
if (reason) console.log(`# ttt-context webgpu smoke test NOT RUN: ${reason}`);
const gpu = reason ? (DEVICE === 'webgpu' ? {} : { skip: reason }) : {};

test('ttt-context bench on webgpu: prefill, decode and synthetic KV rows with pool memory', gpu, async () => {
  const r = await run({
    device: 'webgpu', contexts: '32,64', layers: '1', decode: '2', dim: '64', heads: '4', ffn: '128', vocab: '256', 'attn-prefill-max': '32',
  });
  assert.match(String(r.model), /webgpu/);
  const rows = r.rows as Record<string, number | null>[];
  assert.deepEqual(rows.map((x) => x.context), [32, 64]);
  for (const x of rows) {
    assert.ok((x.ttt_prefill_ms as number) > 0 && (x.ttt_decode_ms as number) > 0 && (x.attn_decode_ms as number) > 0);
    assert.ok((x.ttt_peak_gpu_mib as number) > 0 && (x.attn_peak_gpu_mib as number) > 0);
    assert.equal(x.ttt_peak_mib, undefined);
  }
  assert.ok((rows[0].attn_prefill_ms as number) > 0);
  assert.equal(rows[1].attn_prefill_ms, null, 'context 64 is above --attn-prefill-max, so its cache is filled at random');
  // A high-water mark cannot fall along the walk.
  assert.ok((rows[1].ttt_peak_gpu_mib as number) >= (rows[0].ttt_peak_gpu_mib as number));
  assert.ok((rows[1].attn_peak_gpu_mib as number) >= (rows[0].attn_peak_gpu_mib as number));
});

test('ttt-context bench: a width the head count does not divide is refused', async () => {
  await assert.rejects(run({ device: 'webgpu', dim: '65', heads: '4' }), /--dim 65 is not divisible by --heads 4/);
  await assert.rejects(run({ device: 'tpu' }), /--device must be cpu or webgpu/);
});
