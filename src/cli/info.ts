// frugal info: what a checkpoint holds (architecture, parameters, bits per parameter, size on disk).
import { statSync } from 'node:fs';
import { presetRegistry } from '../models/presets.ts';
import { bitsFromCounts, bitsPerParam } from '../nn/fbi-linear.ts';
import { HalfHead, Int8Head, PackedLinear } from '../nn/packed.ts';
import { ffnKindAt } from '../models/index.ts';
import type { CausalLM } from '../models/index.ts';
import { GgufEmbedding, GgufLinear, ggufWeightTypes } from '../infer/gguf-model.ts';
import { describeNonFinite, isGgufPath, loadServingModel, nonFiniteWeights } from './model-spec.ts';
import { type CommandSpec, type Flags, UsageError } from './args.ts';
import { fmtBytes, fmtCount, folderBytes } from './common.ts';

export const spec: CommandSpec = {
  name: 'info',
  summary: 'describe a checkpoint: architecture, parameter counts, bits per parameter, size on disk',
  usage: 'frugal info MODEL_DIR|FILE.gguf [--json] | frugal info --presets',
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
  // GGUF linears, embedding and head hold their stored weights outside the parameters too.
  const stored = model.modules().filter((m): m is GgufLinear | GgufEmbedding => m instanceof GgufLinear || m instanceof GgufEmbedding)
    .reduce((s, m) => s + m.weights.rows * m.weights.cols, 0);
  const storedBits = model.modules().filter((m): m is GgufLinear | GgufEmbedding => m instanceof GgufLinear || m instanceof GgufEmbedding)
    .reduce((s, m) => s + m.weights.storageBytes * 8, 0);
  // A packed model's f16 or int8 LM head holds its weight as buffers too; it counts as full precision.
  const headParams = model.modules().filter((m) => m instanceof HalfHead || m instanceof Int8Head)
    .reduce((s, m) => s + (m as HalfHead).inFeatures * (m as HalfHead).outFeatures, 0);
  const latent = bitsPerParam(model);
  const bits = packed.length
    ? bitsFromCounts(latent.binarizedParams + packedWeights, latent.linearFpParams + packedScales,
      latent.fpParams - latent.linearFpParams + headParams)
    : latent;
  return {
    architecture: `${c.numLayers} layers, hidden ${c.hiddenSize}, ${c.numHeads} heads (${c.numKvHeads} kv${c.headDim ? `, head size ${c.headDim}` : ''}${c.qkNorm ? ', q/k norm' : ''}), ` +
      `mixer ${c.mixer}, ffn ${[...new Set(ffns)].join('+')}, linear ${c.linear}, vocab ${c.vocabSize}, context ${c.maxPositions}`,
    parameters: model.numParameters() + packedWeights + packedScales + headParams + stored,
    ...(stored ? { gguf_weight_types: ggufWeightTypes(model) } : {}),
    embedding_parameters: embed,
    binarized_parameters: bits.binarizedParams,
    bits_per_param: stored ? (storedBits + model.numParameters() * 32) / (stored + model.numParameters()) : bits.binarizedParams ? bits.model : 32,
    bits_per_param_linear: bits.binarizedParams ? bits.linear : 32,
  };
}

export async function run(f: Flags, positional: string[]): Promise<number> {
  if (f.presets) {
    const { presets } = await presetRegistry();
    for (const name of Object.keys(presets)) console.log(name);
    return 0;
  }
  if (!positional[0]) throw new UsageError('frugal info needs a model folder: frugal info MODEL_DIR');
  const { model, tokenizer: tok, path: dir } = loadServingModel(positional[0]);
  const d = describe(model);
  const gguf = isGgufPath(dir);
  const weightBytes = gguf ? statSync(dir).size : folderBytes(dir, (n) => /\.(safetensors|bin)$/.test(n) && !n.startsWith('optimizer'));
  const bad = nonFiniteWeights(model);
  const info = {
    model: dir, ...d, size_on_disk_bytes: weightBytes, folder_bytes: gguf ? weightBytes : folderBytes(dir),
    tokenizer: tok ? `${tok.vocabSize} tokens (${tok.id()})` : 'none', nonfinite_values: bad.values, nonfinite_tensors: bad.tensors,
  };
  if (f.json) {
    console.log(JSON.stringify(info));
    return 0;
  }
  console.log(`model:            ${dir}`);
  console.log(`architecture:     ${d.architecture}`);
  console.log(`parameters:       ${fmtCount(d.parameters)} (${d.parameters}; embeddings ${fmtCount(d.embedding_parameters)}, binarized ${fmtCount(d.binarized_parameters)})`);
  if (d.gguf_weight_types) {
    console.log(`weight types:     ${Object.entries(d.gguf_weight_types).map(([t, n]) => `${t} ${fmtCount(n)}`).join(', ')} (${d.bits_per_param.toFixed(3)} bits/parameter as stored)`);
  } else {
    console.log(`bits/parameter:   ${d.bits_per_param.toFixed(3)} (linears ${d.bits_per_param_linear.toFixed(3)})`);
  }
  console.log(gguf ? `size on disk:     ${fmtBytes(weightBytes)} (GGUF file)` : `size on disk:     ${fmtBytes(weightBytes)} weights, ${fmtBytes(info.folder_bytes)} folder (with optimizer state)`);
  console.log(`tokenizer:        ${info.tokenizer}`);
  console.log(`weights:          ${bad.values ? `WARNING: ${describeNonFinite(bad)}; generate refuses this model unless --allow-nonfinite` : 'all finite'}`);
  return 0;
}
