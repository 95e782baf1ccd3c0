// The server on WebGPU (run with FRUGAL_DEVICE=webgpu): concurrent greedy requests, decoded together
// through CausalLM.forwardRows on the GPU, equal generate() of each prompt alone on the same device.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { initWebGPU, destroyWebGPU } from '../../src/backend/webgpu/index.ts';
import { ByteTokenizer } from '../../src/data/index.ts';
import { generate } from '../../src/infer/generate.ts';
import { CausalLM } from '../../src/models/index.ts';
import { OpenAIServer } from '../../src/serve/server.ts';
import { DEVICE } from '../helpers.ts';

test('webgpu: batched greedy serving equals generate() alone', { skip: DEVICE !== 'webgpu' && 'set FRUGAL_DEVICE=webgpu' }, async () => {
  await initWebGPU();
  after(() => destroyWebGPU());
  const tok = new ByteTokenizer();
  const model = await new CausalLM({ vocabSize: 256, hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, intermediateSize: 128, maxPositions: 96 }, { seed: 5 }).moveTo('webgpu');
  model.eval();
  assert.equal(model.device, 'webgpu');
  const prompts = ['Call me Ishmael.', 'The whale', 'It was', 'Queequeg was a native'];
  const lens = [12, 9, 14, 7];
  const refs: Awaited<ReturnType<typeof generate>>[] = [];
  for (let i = 0; i < prompts.length; i++) refs.push(await generate(model, tok, prompts[i], { maxNewTokens: lens[i], temperature: 0 }));
  const server = new OpenAIServer({ model, tokenizer: tok, modelName: 'gpu', maxBatch: 4 });
  const base = `http://127.0.0.1:${await server.listen(0)}`;
  try {
    const out = await Promise.all(prompts.map(async (prompt, i) => {
      const r = await fetch(`${base}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt, max_tokens: lens[i], temperature: 0 }) });
      return (await r.json()).choices[0].text as string;
    }));
    out.forEach((t, i) => assert.equal(t, refs[i].text, `prompt ${i}`));
    assert.ok(server.scheduler.stepRows / server.scheduler.steps > 1.5, 'requests were decoded together');
  } finally {
    await server.close();
  }
});
