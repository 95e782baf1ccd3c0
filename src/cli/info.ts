// frugal info: what a checkpoint holds (architecture, parameters, bits per parameter, size on disk).
import { resolveModelDir, loadModelTokenizer } from '../train/checkpoint.ts';
import { presetRegistry } from '../models/presets.ts';
import { bitsFromCounts, bitsPerParam } from '../nn/fbi-linear.ts';
import { PackedLinear } from '../infer/packed-linear.ts';
import { ffnKindAt } from '../models/index.ts';
import type { CausalLM } from '../models/index.ts';
import { describeNonFinite, loadAnyModel, nonFiniteWeights } from './model-spec.ts';
import { type CommandSpec, type Flags, UsageError } from './args.ts';
import { fmtBytes, fmtCount, folderBytes } from './common.ts';

export const spec: CommandSpec = {
  name: 'info',
  summary: 'describe a checkpoint: architecture, parameter counts, bits per parameter, size on disk',
  usage: 'frugal info MODEL_DIR [--json] | frugal info --presets',
  positionals: ['MODEL_DIR'],
  flags: {
    json: { type: 'bool', help: 'print one JSON object' },
    presets: { type: 'bool', help: 'list the model presets of this build' },
  },
};

export function describe(model: CausalLM) {
  const c = model.config;
  const ffns = Array.from({ length: c.numLayers }, (_, i) => ffnKindAt(c, i));
  const embed = c.vocabSize * c.hiddenSize * (c.tieEmbeddings ? 1 : 2);
  // Packed 1-bit linears hold their weights as buffers (sign bits + scales), not parameters.
  const packed = model.modules().filter((m): m is PackedLinear => m instanceof PackedLinear);
  const packedWeights = packed.reduce((s, l) => s + l.inFeatures * l.outFeatures, 0);
  const packedScales = packed.reduce((s, l) => s + l.storageScaleCount, 0);
  const latent = bitsPerParam(model);
  const bits = packed.length
    ? bitsFromCounts(latent.binarizedParams + packedWeights, latent.linearFpParams + packedScales,
      latent.fpParams - latent.linearFpParams)
    : latent;
  return {
    architecture: `${c.numLayers} layers, hidden ${c.hiddenSize}, ${c.numHeads} heads (${c.numKvHeads} kv), ` +
      `mixer ${c.mixer}, ffn ${[...new Set(ffns)].join('+')}, linear ${c.linear}, vocab ${c.vocabSize}, context ${c.maxPositions}`,
    parameters: model.numParameters() + packedWeights + packedScales,
    embedding_parameters: embed,
    binarized_parameters: bits.binarizedParams,
    bits_per_param: bits.binarizedParams ? bits.model : 32,
    bits_per_param_linear: bits.binarizedParams ? bits.linear : 32,
  };
}

export async function run(f: Flags, positional: string[]): Promise<number> {
  if (f.presets) {
    const { presets, missing } = await presetRegistry();
    for (const name of Object.keys(presets)) console.log(name);
    for (const m of missing) console.log(`(${m}: not available in this build)`);
    return 0;
  }
  if (!positional[0]) throw new UsageError('frugal info needs a model folder: frugal info MODEL_DIR');
  const dir = resolveModelDir(positional[0]);
  const model = loadAnyModel(dir);
  const d = describe(model);
  const weightBytes = folderBytes(dir, (n) => /\.(safetensors|bin)$/.test(n) && !n.startsWith('optimizer'));
  const tok = loadModelTokenizer(dir);
  const bad = nonFiniteWeights(model);
  const info = {
    model: dir, ...d, size_on_disk_bytes: weightBytes, folder_bytes: folderBytes(dir), tokenizer: tok ? `${tok.vocabSize} tokens (${tok.id()})` : 'none',
    nonfinite_values: bad.values, nonfinite_tensors: bad.tensors,
  };
  if (f.json) {
    console.log(JSON.stringify(info));
    return 0;
  }
  console.log(`model:            ${dir}`);
  console.log(`architecture:     ${d.architecture}`);
  console.log(`parameters:       ${fmtCount(d.parameters)} (${d.parameters}; embeddings ${fmtCount(d.embedding_parameters)}, binarized ${fmtCount(d.binarized_parameters)})`);
  console.log(`bits/parameter:   ${d.bits_per_param.toFixed(3)} (linears ${d.bits_per_param_linear.toFixed(3)})`);
  console.log(`size on disk:     ${fmtBytes(weightBytes)} weights, ${fmtBytes(info.folder_bytes)} folder (with optimizer state)`);
  console.log(`tokenizer:        ${info.tokenizer}`);
  console.log(`weights:          ${bad.values ? `WARNING: ${describeNonFinite(bad)}; generate refuses this model unless --allow-nonfinite` : 'all finite'}`);
  return 0;
}
