// Long-context comparison on the embedded corpus: an attention model, a TTT-Linear model and a
// TTT-MLP model (Mamba backbone) of equal parameter count are trained with the same steps, batch and
// context, then scored by position on long validation windows. A model that uses its context well
// keeps lowering its loss as the position grows; the curves show where each one stops gaining.
import { join } from 'node:path';
import { BatchIterator, ByteTokenizer, defaultCorpus, PackedDataset, tokenizeDocuments } from '../data/index.ts';
import { CausalLM, type ModelConfig } from '../models/index.ts';
import { train } from '../train/trainer.ts';
import { type PositionBucket, windowNlls } from '../eval/perplexity.ts';

export interface LongContextScale {
  /** Shared shape; intermediateSize is the attention model's and is re-solved for the others. */
  shape: Partial<ModelConfig>;
  ctx: number;
  batch: number;
  steps: number;
  lr: number;
  /** Validation windows of `ctx` tokens scored per model. */
  evalWindows: number;
}

// About six minutes on two cores: TTT-MLP dominates (~1.3k tok/s training at this width), attention
// and TTT-Linear take about a third of the time together. 150 steps x 2048 tokens per model.
const LONG_CONTEXT_FULL: LongContextScale = {
  shape: { hiddenSize: 64, numLayers: 2, numHeads: 4, intermediateSize: 172 },
  ctx: 512, batch: 4, steps: 150, lr: 3e-3, evalWindows: 48,
};
const LONG_CONTEXT_QUICK: LongContextScale = {
  shape: { hiddenSize: 32, numLayers: 2, numHeads: 2, intermediateSize: 64 },
  ctx: 64, batch: 4, steps: 6, lr: 5e-3, evalWindows: 4,
};

/**
 * Perplexity over doubling position ranges [1,2), [2,4), [4,8), ... A small model's loss falls
 * fastest over the first few tokens and slowly afterwards; equal-width buckets would fold that
 * whole fall into the first bucket.
 */
export function log2Buckets(nlls: Float64Array[]): PositionBucket[] {
  const longest = Math.max(...nlls.map((w) => w.length));
  const out: PositionBucket[] = [];
  for (let from = 1; from <= longest; from *= 2) {
    const to = Math.min(2 * from, longest + 1);
    let sum = 0;
    let tokens = 0;
    for (const w of nlls) for (let p = from; p < to && p <= w.length; p++) {
      sum += w[p - 1];
      tokens++;
    }
    if (tokens) out.push({ from, to, nll: sum / tokens, perplexity: Math.exp(sum / tokens), tokens });
  }
  return out;
}

const LONG_CONTEXT_MODELS: { name: string; mixer: ModelConfig['mixer'] }[] = [
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
function matchIntermediate(cfg: Partial<ModelConfig>, target: number, seed = 0): number {
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
    // nll[w][i] scores the token at position i + 1 of window w.
    const buckets = log2Buckets(await windowNlls(model, valIds, { window: s.ctx, maxWindows: s.evalWindows }));
    // The overall perplexity from the same per-token losses (one pass over the windows, not two).
    const nll = buckets.reduce((a, b) => a + b.nll * b.tokens, 0) / buckets.reduce((a, b) => a + b.tokens, 0);
    results.push({ name: m.name, params: model.numParameters(), ffn: model.config.intermediateSize, ppl: Math.exp(nll), tps: r.tokensPerSecond, buckets });
  }

  const headers = ['positions', ...results.map((r) => `${r.name} ppl`)];
  const rows: string[][] = [];
  if (results.length) {
    results[0].buckets.forEach((b, i) => rows.push([b.to - 1 === b.from ? String(b.from) : `${b.from}-${b.to - 1}`, ...results.map((r) => r.buckets[i].perplexity.toFixed(3))]));
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
      title: 'validation perplexity by position', file: 'position.png', xLabel: 'log2 of the position in the window (bucket start)', yLabel: 'perplexity',
      series: results.map((r) => ({ name: r.name, points: r.buckets.map((b) => [Math.log2(b.from), b.perplexity] as [number, number]) })),
    },
    notes: [
      `${split.name}, byte tokens; every model: ${s.shape.numLayers} layers, hidden ${s.shape.hiddenSize}, ${s.shape.numHeads} heads, ` +
      `${s.steps} steps x ${s.batch} sequences x ${s.ctx} tokens, peak lr ${s.lr}, seed ${o.seed}; TTT layers use the Mamba backbone.`,
      `Equal size: the FFN width of the TTT models is solved so their parameter count matches the attention model's (${target}).`,
      `Validation: the first ${Math.min(s.evalWindows, Math.floor(valIds.length / s.ctx))} non-overlapping ${s.ctx}-token windows ` +
      `(${evalTokens} predicted tokens per model), positions grouped into doubling ranges; position p predicts token p from the p tokens before it.`,
    ],
    interrupted,
  };
}
