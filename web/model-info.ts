// What the page shows about a loaded model: architecture, parameter count, size and bits per parameter.
import type { CausalLM } from '../src/models/index.ts';
import { bitsPerParam } from '../src/nn/fbi-linear.ts';

export interface ModelInfo {
  architecture: string;
  parameters: number;
  storedBytes: number;
  /** Stored bits per parameter: weight files' bits / parameters. */
  storedBitsPerParam: number;
  /** For FBI models: bits per parameter with 1 bit per binarized weight (paper accounting), else undefined. */
  fbi?: { model: number; linear: number; binarized: number };
  /** Bytes the weights take on the GPU as f32. */
  deviceBytes: number;
}

export function describeModel(model: CausalLM, storedBytes: number): ModelInfo {
  const c = model.config;
  const ffn = Array.isArray(c.ffn) ? c.ffn.join('/') : c.ffn;
  const architecture = `${c.numLayers} layers, hidden ${c.hiddenSize}, ${c.numHeads} heads (${c.numKvHeads} kv), ` +
    `mixer ${c.mixer}, ffn ${ffn} (${c.intermediateSize}), linear ${c.linear}${c.linear === 'fbi' ? ` (${c.fbiScale} scales)` : ''}, ` +
    `vocab ${c.vocabSize}, context ${c.maxPositions}, ${c.tieEmbeddings ? 'tied' : 'untied'} embeddings`;
  const parameters = model.numParameters();
  const info: ModelInfo = { architecture, parameters, storedBytes, storedBitsPerParam: (storedBytes * 8) / parameters, deviceBytes: parameters * 4 };
  if (c.linear === 'fbi') {
    const b = bitsPerParam(model);
    info.fbi = { model: b.model, linear: b.linear, binarized: b.binarizedParams };
  }
  return info;
}

export function fmtBytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(2)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

export function fmtCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}
