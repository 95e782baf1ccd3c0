// IsoFLOP comparison on the embedded corpus: a dense model and a PEER model (PEER replacing the
// middle block's FFN, the paper's placement) trained at the same compute budgets. The PEER layer's
// heads are chosen so its work per token matches the dense SwiGLU it replaces; the rest of the two
// models is identical, so per-token FLOPs are nearly equal and the step counts are set so each
// budget's total training FLOPs match.
import { join } from 'node:path';
import { BatchIterator, ByteTokenizer, defaultCorpus, PackedDataset, tokenizeDocuments } from '../data/index.ts';
import { CausalLM, ffnKindAt, resolveConfig, type ModelConfig, type PeerOptions } from '../models/index.ts';
import { train } from '../train/trainer.ts';
import { perplexity } from '../eval/perplexity.ts';
import type { ExperimentOpts, ExperimentOutcome } from './long-context.ts';

export interface IsoflopScale {
  shape: Partial<ModelConfig>;
  /** PEER layer options except heads, which are solved to match the dense FFN's work per token. */
  peer: Omit<PeerOptions, 'heads'>;
  ctx: number;
  batch: number;
  /** Budgets, given as the dense model's step counts. */
  denseSteps: number[];
  lr: number;
  evalWindows: number;
}

// About six minutes on two cores: 350 dense steps and about as many PEER steps of 2048 tokens
// (dense ~7k tok/s, PEER ~4k tok/s here), plus evaluation.
export const ISOFLOP_FULL: IsoflopScale = {
  shape: { hiddenSize: 128, numLayers: 4, numHeads: 4, intermediateSize: 344 },
  peer: { numExperts: 64 * 64, topk: 16, dimKey: 64, queryNorm: 'batchnorm', sharedKeys: true, activation: 'gelu', score: 'softmax' },
  ctx: 128, batch: 16, denseSteps: [50, 100, 200], lr: 3e-3, evalWindows: 200,
};
export const ISOFLOP_QUICK: IsoflopScale = {
  shape: { hiddenSize: 32, numLayers: 2, numHeads: 2, intermediateSize: 64 },
  peer: { numExperts: 16 * 16, topk: 4, dimKey: 16, queryNorm: 'batchnorm', sharedKeys: true, activation: 'gelu', score: 'softmax' },
  ctx: 32, batch: 4, denseSteps: [4, 8], lr: 5e-3, evalWindows: 8,
};

export interface FfnCost {
  /** Parameters used by one token (for PEER: the query network, the product keys and the k experts per head). */
  activeParams: number;
  /** Multiply-accumulates per token in the forward pass. */
  macs: number;
}

/** Work per token of a layer's FFN, from the config. */
function ffnCost(cfg: ModelConfig, layer: number): FfnCost {
  const d = cfg.hiddenSize;
  if (ffnKindAt(cfg, layer) === 'swiglu') {
    const p = 3 * d * cfg.intermediateSize;
    return { activeParams: p, macs: p };
  }
  const { heads: h, topk: k, dimKey: dk, numExperts } = cfg.peer!;
  const n = Math.round(Math.sqrt(numExperts));
  const query = d * h * dk;
  // Each head scores its two query halves against the n sub-keys of each half: h * n * dk MACs.
  const scores = h * n * dk;
  // k experts per head, each a down dot-product and an up scale-add of width d.
  const experts = h * k * 2 * d;
  const norm = cfg.peer!.queryNorm === 'batchnorm' ? 2 * h * dk : 0;
  return { activeParams: query + h * dk + norm + n * dk + experts, macs: query + scores + experts };
}

export interface ModelCost {
  totalParams: number;
  activeParams: number;
  /** Training FLOPs per token: 6 x forward MACs of the matmuls (2 per MAC, x3 for backward) + attention scores. */
  flopsPerToken: number;
}

/**
 * Kaplan et al.'s count: C = 6N + 6 L ctx d per training token, with N the non-embedding matmul
 * parameters a token uses (here: mixer projections, FFN work from ffnCost, the output head) and the
 * second term the attention scores and weighted sums. Norms and the embedding lookup are left out.
 */
export function modelCost(model: CausalLM, ctx: number): ModelCost {
  const cfg = model.config;
  const d = cfg.hiddenSize;
  const kvDim = (d / cfg.numHeads) * cfg.numKvHeads;
  const attn = 2 * d * d + 2 * d * kvDim;
  let active = 0;
  let macs = 0;
  for (let l = 0; l < cfg.numLayers; l++) {
    const f = ffnCost(cfg, l);
    active += attn + f.activeParams;
    macs += attn + f.macs;
  }
  const head = d * cfg.vocabSize;
  return { totalParams: model.numParameters(), activeParams: active + head, flopsPerToken: 6 * (macs + head) + 6 * cfg.numLayers * ctx * d };
}

/** PEER heads whose per-token work comes closest to the dense SwiGLU of width intermediateSize. */
export function matchPeerHeads(shape: Partial<ModelConfig>, peer: Omit<PeerOptions, 'heads'>): number {
  const dense = resolveConfig(shape);
  const target = ffnCost(dense, 0).macs;
  const one = ffnCost(resolveConfig({ ...shape, ffn: 'peer', peer: { ...peer, heads: 1 } }), 0).macs;
  return Math.max(1, Math.round(target / one));
}

function middlePeer(layers: number): ModelConfig['ffn'] {
  return Array.from({ length: layers }, (_, i) => (i === Math.floor(layers / 2) ? 'peer' : 'swiglu'));
}

/** Compact FLOP count: 1.23e12. */
const sci = (x: number) => x.toExponential(2).replace('e+', 'e');

export async function runPeerIsoflop(o: ExperimentOpts): Promise<ExperimentOutcome> {
  const s = o.quick ? ISOFLOP_QUICK : ISOFLOP_FULL;
  const tok = new ByteTokenizer();
  const split = defaultCorpus();
  const trainIds = tokenizeDocuments(split.trainDocs, tok);
  const valIds = tokenizeDocuments(split.validationDocs, tok);
  const base: Partial<ModelConfig> = { ...s.shape, vocabSize: tok.vocabSize, maxPositions: s.ctx };
  const heads = matchPeerHeads(base, s.peer);
  const variants: { name: string; cfg: Partial<ModelConfig> }[] = [
    { name: 'dense', cfg: base },
    { name: 'peer', cfg: { ...base, ffn: middlePeer(s.shape.numLayers!), peer: { ...s.peer, heads } } },
  ];
  const tokensPerStep = s.batch * s.ctx;
  const denseCost = modelCost(new CausalLM(variants[0].cfg, { seed: o.seed }), s.ctx);

  const runs: { name: string; dir: string }[] = [];
  const rows: string[][] = [];
  const points: Record<string, [number, number][]> = { dense: [], peer: [] };
  const costs: Record<string, ModelCost> = {};
  let interrupted = false;
  outer: for (const [bi, steps0] of s.denseSteps.entries()) {
    const budget = steps0 * tokensPerStep * denseCost.flopsPerToken;
    for (const v of variants) {
      if (o.shouldStop?.()) {
        interrupted = true;
        break outer;
      }
      const model = new CausalLM(v.cfg, { seed: o.seed });
      const cost = (costs[v.name] = modelCost(model, s.ctx));
      const steps = Math.max(1, Math.round(budget / (tokensPerStep * cost.flopsPerToken)));
      const flops = steps * tokensPerStep * cost.flopsPerToken;
      const name = `${v.name}-b${bi + 1}`;
      const dir = join(o.out, name);
      const data = new BatchIterator(new PackedDataset(trainIds, s.ctx), { batchSize: s.batch, seed: o.seed });
      const t0 = performance.now();
      const r = await train({
        model, data, steps, lr: s.lr, warmup: Math.ceil(steps / 10), saveEvery: 0, outDir: dir, seed: o.seed, tokenizer: tok,
        shouldStop: o.shouldStop, progress: o.quiet ? 'none' : 'bar', label: name,
      });
      const secs = (performance.now() - t0) / 1000;
      runs.push({ name, dir });
      if (r.interrupted) {
        interrupted = true;
        break outer;
      }
      const ppl = (await perplexity(model, valIds, { window: s.ctx, maxWindows: s.evalWindows })).perplexity;
      points[v.name].push([flops, ppl]);
      rows.push([
        `${bi + 1} (${sci(budget)})`, v.name, String(cost.totalParams), String(cost.activeParams), String(Math.round(cost.flopsPerToken)),
        String(steps), sci(flops), `${((flops / budget - 1) * 100).toFixed(1)}%`, ppl.toFixed(3), secs.toFixed(1),
      ]);
    }
  }
  // Charts label the x axis with whole numbers: pick a FLOP unit that leaves at least two digits.
  const maxFlops = Math.max(1, ...Object.values(points).flat().map((p) => p[0]));
  const [unit, unitName] = ([[1e15, 'PFLOP'], [1e12, 'TFLOP'], [1e9, 'GFLOP'], [1e6, 'MFLOP']] as const).find(([u]) => maxFlops / u >= 10) ?? [1, 'FLOP'];
  const peerCost = costs.peer;
  const dc = costs.dense ?? denseCost;
  return {
    title: 'IsoFLOP: dense vs PEER at matched training compute',
    runs,
    table: {
      headers: ['budget (FLOPs)', 'model', 'params total', 'params active/token', 'FLOPs/token', 'steps', 'train FLOPs', 'vs budget', 'val ppl', 'train s'],
      rows,
    },
    chart: {
      title: 'validation perplexity vs training compute', file: 'isoflop.png', xLabel: `training compute (${unitName})`, yLabel: 'validation perplexity',
      series: Object.entries(points).map(([name, pts]) => ({ name, points: pts.map(([x, y]) => [x / unit, y] as [number, number]) })),
    },
    notes: [
      `${split.name}, byte tokens; both models: ${s.shape.numLayers} layers, hidden ${s.shape.hiddenSize}, ${s.shape.numHeads} heads, ` +
      `batch ${s.batch} x ${s.ctx} tokens, peak lr ${s.lr}, cosine schedule over each run's own steps, seed ${o.seed}.`,
      `PEER replaces the FFN of block ${Math.floor(s.shape.numLayers! / 2)} (0-based): ${s.peer.numExperts} experts, ${heads} heads, top-${s.peer.topk}, ` +
      `key dim ${s.peer.dimKey}, query ${s.peer.queryNorm}; heads chosen so its forward MACs per token (query + key scores + experts) ` +
      `match the dense SwiGLU's ${3 * s.shape.hiddenSize! * s.shape.intermediateSize!}.`,
      `FLOPs per training token = 6 x forward matmul MACs + 6 x layers x ctx x hidden (attention scores): dense ${Math.round(dc.flopsPerToken)}` +
      (peerCost ? `, PEER ${Math.round(peerCost.flopsPerToken)} (${((peerCost.flopsPerToken / dc.flopsPerToken - 1) * 100).toFixed(1)}%)` : '') +
      '; budgets are the dense model\'s step counts, and PEER\'s steps are rounded to match each budget.',
      `Validation perplexity over the first ${s.evalWindows} non-overlapping ${s.ctx}-token windows of the validation split.`,
    ],
    interrupted,
  };
}
