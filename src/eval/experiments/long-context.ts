// Long-context comparison on the embedded corpus: an attention model, a TTT-Linear model and a
// TTT-MLP model (Mamba backbone) of equal parameter count are trained with the same steps, batch and
// context, then scored by position on long validation windows. A model that uses its context well
// keeps lowering its loss as the position grows; the curves show where each one stops gaining.
import { join } from 'node:path';
import { BatchIterator, ByteTokenizer, defaultCorpus, PackedDataset, tokenizeDocuments } from '../../data/index.ts';
import { CausalLM, type ModelConfig } from '../../models/index.ts';
import { train } from '../../train/trainer.ts';
import { perplexityByPosition, type PositionBucket } from '../perplexity.ts';

export interface LongContextScale {
  /** Shared shape; intermediateSize is the attention model's and is re-solved for the others. */
  shape: Partial<ModelConfig>;
  ctx: number;
  batch: number;
  steps: number;
  lr: number;
  /** Validation windows of `ctx` tokens scored per model. */
  evalWindows: number;
  buckets: number;
}

// About six minutes on two cores: TTT-MLP dominates (~0.8k tok/s training at this width), attention
// and TTT-Linear take about a quarter of the time together. 80 steps x 2048 tokens per model.
export const LONG_CONTEXT_FULL: LongContextScale = {
  shape: { hiddenSize: 64, numLayers: 2, numHeads: 4, intermediateSize: 172 },
  ctx: 512, batch: 4, steps: 80, lr: 3e-3, evalWindows: 48, buckets: 16,
};
export const LONG_CONTEXT_QUICK: LongContextScale = {
  shape: { hiddenSize: 32, numLayers: 2, numHeads: 2, intermediateSize: 64 },
  ctx: 64, batch: 4, steps: 6, lr: 5e-3, evalWindows: 4, buckets: 4,
};

export const LONG_CONTEXT_MODELS: { name: string; mixer: ModelConfig['mixer'] }[] = [
  { name: 'attention', mixer: 'attention' },
  { name: 'ttt-linear', mixer: 'ttt-linear' },
  { name: 'ttt-mlp', mixer: 'ttt-mlp' },
];

export interface ExperimentOpts {
  quick: boolean;
  out: string;
  seed: number;
  quiet: boolean;
  shouldStop?: () => boolean;
}

export interface ExperimentOutcome {
  title: string;
  runs: { name: string; dir: string }[];
  table: { headers: string[]; rows: string[][] };
  chart: { title: string; file: string; xLabel: string; yLabel: string; series: { name: string; points: [number, number][] }[] };
  notes: string[];
  interrupted: boolean;
}

const countParams = (cfg: Partial<ModelConfig>, seed: number) => new CausalLM(cfg, { seed }).numParameters();

/**
 * The FFN width that brings a model's parameter count closest to `target` (the mixers differ in
 * size; the FFN is the knob every model shares). The count is linear in intermediateSize, so two
 * probes give the slope.
 */
export function matchIntermediate(cfg: Partial<ModelConfig>, target: number, seed = 0): number {
  const i0 = cfg.intermediateSize!;
  const p0 = countParams(cfg, seed);
  const slope = countParams({ ...cfg, intermediateSize: i0 + 1 }, seed) - p0;
  const i = Math.round(i0 + (target - p0) / slope);
  if (i < 1) throw new Error(`cannot match ${target} parameters with a ${cfg.mixer} model of hidden size ${cfg.hiddenSize}: its mixer alone is larger`);
  return i;
}

export async function runLongContext(o: ExperimentOpts): Promise<ExperimentOutcome> {
  const s = o.quick ? LONG_CONTEXT_QUICK : LONG_CONTEXT_FULL;
  const tok = new ByteTokenizer();
  const split = defaultCorpus();
  const trainIds = tokenizeDocuments(split.trainDocs, tok);
  const valIds = tokenizeDocuments(split.validationDocs, tok);
  const base: Partial<ModelConfig> = { ...s.shape, vocabSize: tok.vocabSize, maxPositions: s.ctx };
  const target = countParams(base, o.seed);

  const runs: { name: string; dir: string }[] = [];
  const results: { name: string; params: number; ffn: number; ppl: number; tps: number; buckets: PositionBucket[] }[] = [];
  let interrupted = false;
  for (const m of LONG_CONTEXT_MODELS) {
    if (o.shouldStop?.()) {
      interrupted = true;
      break;
    }
    let cfg: Partial<ModelConfig> = { ...base, mixer: m.mixer };
    if (m.mixer !== 'attention') cfg = { ...cfg, intermediateSize: matchIntermediate(cfg, target, o.seed) };
    const model = new CausalLM(cfg, { seed: o.seed });
    const dir = join(o.out, m.name);
    // Same seed, same data order, same schedule for every model.
    const data = new BatchIterator(new PackedDataset(trainIds, s.ctx), { batchSize: s.batch, seed: o.seed });
    const r = await train({
      model, data, valData: new PackedDataset(valIds, s.ctx), evalSequences: 16, steps: s.steps, lr: s.lr,
      warmup: Math.ceil(s.steps / 10), evalEvery: Math.ceil(s.steps / 4), saveEvery: 0, outDir: dir, seed: o.seed,
      tokenizer: tok, shouldStop: o.shouldStop, progress: o.quiet ? 'none' : 'bar', label: m.name,
    });
    runs.push({ name: m.name, dir });
    if (r.interrupted) {
      interrupted = true;
      break;
    }
    const buckets = await perplexityByPosition(model, valIds, { window: s.ctx, maxWindows: s.evalWindows, buckets: s.buckets });
    // The overall perplexity from the same per-token losses (one pass over the windows, not two).
    const nll = buckets.reduce((a, b) => a + b.nll * b.tokens, 0) / buckets.reduce((a, b) => a + b.tokens, 0);
    results.push({ name: m.name, params: model.numParameters(), ffn: model.config.intermediateSize, ppl: Math.exp(nll), tps: r.tokensPerSecond, buckets });
  }

  const headers = ['positions', ...results.map((r) => `${r.name} ppl`)];
  const rows: string[][] = [];
  if (results.length) {
    results[0].buckets.forEach((b, i) => rows.push([`${b.from}-${b.to - 1}`, ...results.map((r) => r.buckets[i].perplexity.toFixed(3))]));
    rows.push(['all', ...results.map((r) => r.ppl.toFixed(3))]);
    rows.push(['parameters', ...results.map((r) => String(r.params))]);
    rows.push(['ffn width', ...results.map((r) => String(r.ffn))]);
    rows.push(['train tok/s', ...results.map((r) => r.tps.toFixed(0))]);
  }
  const evalTokens = Math.min(s.evalWindows, Math.floor(valIds.length / s.ctx)) * (s.ctx - 1);
  return {
    title: 'Long context: perplexity by position, attention vs TTT-Linear vs TTT-MLP',
    runs,
    table: { headers, rows },
    chart: {
      title: 'validation perplexity by position', file: 'position.png', xLabel: 'position in window (bucket middle)', yLabel: 'perplexity',
      series: results.map((r) => ({ name: r.name, points: r.buckets.map((b) => [(b.from + b.to - 1) / 2, b.perplexity] as [number, number]) })),
    },
    notes: [
      `${split.name}, byte tokens; every model: ${s.shape.numLayers} layers, hidden ${s.shape.hiddenSize}, ${s.shape.numHeads} heads, ` +
      `${s.steps} steps x ${s.batch} sequences x ${s.ctx} tokens, peak lr ${s.lr}, seed ${o.seed}; TTT layers use the Mamba backbone.`,
      `Equal size: the FFN width of the TTT models is solved so their parameter count matches the attention model's (${target}).`,
      `Validation: the first ${Math.min(s.evalWindows, Math.floor(valIds.length / s.ctx))} non-overlapping ${s.ctx}-token windows ` +
      `(${evalTokens} predicted tokens per model), positions grouped into ${s.buckets} equal buckets; position p predicts token p from tokens before it.`,
    ],
    interrupted,
  };
}
