// Writes the initial checkpoints the torch-engine benchmark trains (bench/torch-engine-gpu.sh): the
// 125M dense LLaMA shape of `frugal bench train-step --preset dense-125m` and the FBI-LLM 130M preset,
// both with the LLaMA-2 vocabulary (32000) and seed 0, so both engines start from the same weights.
//   node --import tsx bench/probes/torch-engine-models.ts DIR [--tiny]
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { CausalLM } from '../../src/models/index.ts';
import { PRESETS } from '../../src/models/presets.ts';
import { saveCheckpoint } from '../../src/train/checkpoint.ts';

const dir = process.argv[2];
if (!dir) throw new Error('usage: torch-engine-models.ts DIR [--tiny]');
const tiny = process.argv.includes('--tiny');
mkdirSync(dir, { recursive: true });
const fbi = { ...PRESETS['fbi-130m'] };
const shapes = tiny ? { hiddenSize: 32, numLayers: 2, numHeads: 2, numKvHeads: 2, intermediateSize: 64, vocabSize: 512 } : {};
for (const [name, cfg] of [['dense-125m', { ...fbi, linear: 'dense', ...shapes }], ['fbi-130m', { ...fbi, ...shapes }]] as const) {
  const t0 = performance.now();
  const model = new CausalLM(cfg, { seed: 0 });
  saveCheckpoint(join(dir, name), model);
  const params = model.namedParameters().reduce((n, [, p]) => n + p.size, 0);
  process.stderr.write(`${name}: ${(params / 1e6).toFixed(1)}M parameters, written in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
}
