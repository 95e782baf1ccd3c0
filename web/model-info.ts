// What the page shows about a loaded model: architecture, parameter count, stored size, bits per
// parameter and the bytes its weights take on the GPU (packed 1-bit linears as they are, against what
// f32 weights would take). Computed in the worker, which holds the model.
import { webgpuPoolStats } from '../src/backend/webgpu/index.ts';
import { packedMemory } from '../src/infer/packed-device.ts';
import type { CausalLM } from '../src/models/index.ts';
import { bitsFromCounts, bitsPerParam } from '../src/nn/fbi-linear.ts';
import type { MemoryFigures } from './protocol.ts';
import { fmtBytes, fmtCount } from '../src/io/format.ts';

export interface ModelInfo {
  architecture: string;
  /** Parameters with each packed sign counted as one (the latent model's count). */
  parameters: number;
  storedBytes: number;
  /** Stored bits per parameter: weight files' bits / parameters. */
  storedBitsPerParam: number;
  /** For FBI models: bits per parameter with 1 bit per binarized weight (paper accounting), else undefined. */
  fbi?: { model: number; linear: number; binarized: number };
  memory: MemoryFigures;
}

export function describeModel(model: CausalLM, storedBytes: number): ModelInfo {
  const c = model.config;
  const ffn = Array.isArray(c.ffn) ? c.ffn.join('/') : c.ffn;
  const architecture = `${c.numLayers} layers, hidden ${c.hiddenSize}, ${c.numHeads} heads (${c.numKvHeads} kv), ` +
    `mixer ${c.mixer}, ffn ${ffn} (${c.intermediateSize}), linear ${c.linear}${c.linear === 'fbi' ? ` (${c.fbiScale} scales)` : ''}, ` +
    `vocab ${c.vocabSize}, context ${c.maxPositions}, ${c.tieEmbeddings ? 'tied' : 'untied'} embeddings`;
  const mem = packedMemory(model);
  const poolBytes = webgpuPoolStats().liveBytes;
  let info: ModelInfo;
  if (mem.linears > 0) {
    // Every tensor besides the packed linears is f32 on the GPU: parameters = their elements + the signs + the scales.
    const parameters = (mem.otherBytes + mem.packedAsF32Bytes) / 4;
    const b = bitsFromCounts(mem.binarizedWeights, mem.packedAsF32Bytes / 4 - mem.binarizedWeights, mem.otherBytes / 4);
    info = {
      architecture, parameters, storedBytes, storedBitsPerParam: (storedBytes * 8) / parameters,
      fbi: { model: b.model, linear: b.linear, binarized: b.binarizedParams },
      memory: {
        gpuBytes: mem.otherBytes + mem.packedBytes, f32Bytes: mem.otherBytes + mem.packedAsF32Bytes, poolBytes,
        packed: { linears: mem.linears, bytes: mem.packedBytes, f32Bytes: mem.packedAsF32Bytes },
      },
    };
  } else {
    const parameters = model.numParameters();
    const bytes = [...model.namedParameters(), ...model.namedBuffers()].reduce((s, [, t]) => s + t.size * 4, 0);
    info = { architecture, parameters, storedBytes, storedBitsPerParam: (storedBytes * 8) / parameters, memory: { gpuBytes: bytes, f32Bytes: bytes, poolBytes } };
    if (c.linear === 'fbi') {
      const b = bitsPerParam(model);
      info.fbi = { model: b.model, linear: b.linear, binarized: b.binarizedParams };
    }
  }
  return info;
}

/** The rows of the page's model table. */
export function infoRows(info: ModelInfo, source: string, notes: string[]): [string, string][] {
  const m = info.memory;
  const rows: [string, string][] = [
    ['source', source],
    ['architecture', info.architecture],
    ['parameters', `${fmtCount(info.parameters)} (${info.parameters})`],
    ['stored size', `${fmtBytes(info.storedBytes)}, ${info.storedBitsPerParam.toFixed(2)} bits per parameter`],
  ];
  if (m.packed) {
    rows.push(['on the GPU', `${fmtBytes(m.gpuBytes)} of weights, packed: ${m.packed.linears} 1-bit linears in ${fmtBytes(m.packed.bytes)} ` +
      `(sign bits + scales; ${fmtBytes(m.packed.f32Bytes)} as f32, ${(m.packed.f32Bytes / m.packed.bytes).toFixed(1)}× less), the rest f32; ` +
      `the whole model with f32 weights would take ${fmtBytes(m.f32Bytes)} (${(m.f32Bytes / m.gpuBytes).toFixed(2)}× more)`]);
  } else {
    rows.push(['on the GPU', `${fmtBytes(m.gpuBytes)} of weights (f32)`]);
  }
  rows.push(['GPU buffers', `${fmtBytes(m.poolBytes)} held by the worker after loading (buffer sizes rounded up to the pool's buckets)`]);
  if (info.fbi) {
    rows.push(['FBI bits/param', `${info.fbi.model.toFixed(2)} over the model, ${info.fbi.linear.toFixed(3)} in the binarized linears (${fmtCount(info.fbi.binarized)} 1-bit weights)`]);
  }
  for (const n of notes) rows.push(['note', n]);
  return rows;
}

export { fmtBytes, fmtCount };
