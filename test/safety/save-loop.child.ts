// Child process of crash-save.test.ts: saves checkpoints of one model over and over into a run
// folder, each save's weights all equal to its number, until it is killed.
import { CausalLM } from '../../src/models/index.ts';
import { fromArray } from '../../src/tensor/index.ts';
import { saveCheckpoint } from '../../src/train/checkpoint.ts';
import { ByteTokenizer } from '../../src/data/index.ts';

const [dir, keep] = process.argv.slice(2);
const model = new CausalLM({ vocabSize: 256, hiddenSize: 64, numLayers: 2, numHeads: 2, intermediateSize: 128, maxPositions: 64 }, { seed: 0 });
const tok = new ByteTokenizer();
process.stdout.write('ready\n');
for (let k = 1; ; k++) {
  for (const [name, t] of model.namedParameters()) model.setTensor(name, fromArray(new Float32Array(t.size).fill(k), [...t.shape]));
  saveCheckpoint(dir, model, {
    tokenizer: tok, state: { step: k, totalSteps: 1e9, rng: [k], tokens: k },
    retireTo: keep ? `${dir}-${k - 1}` : undefined,
  });
}
