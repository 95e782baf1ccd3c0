// frugal main (npm start): the demo pipeline on the embedded corpus. Trains a tiny dense teacher,
// distills a tiny FBI (1-bit) student from it, trains tiny TTT and PEER variants, evaluates all of
// them on the validation split and prints one comparison table plus the HTML report's path.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ByteTokenizer, tokenizeDocuments, defaultCorpus } from '../data/index.ts';
import { perplexity } from '../eval/perplexity.ts';
import { generate } from '../infer/generate.ts';
import { CausalLM, ffnPlugin, mixerPlugin, type ModelConfig } from '../models/index.ts';
import { presetByName } from '../models/presets.ts';
import { distillLoss } from '../train/distill.ts';
import { familyHooks } from '../train/hooks.ts';
import { train, type TrainResult } from '../train/trainer.ts';
import { type CommandSpec, type Flags, str } from './args.ts';
import { fmtBytes, fmtCount, folderBytes, interruptFlag, makeData, reportFor, runDir } from './common.ts';
import { describe } from './info.ts';
import { loadAnyModel } from './model-spec.ts';
import { packFolder } from './pack.ts';

export const spec: CommandSpec = {
  name: 'main',
  summary: 'train, distill, evaluate and compare tiny dense, FBI, TTT and PEER models on the embedded corpus',
  usage: 'frugal main [--quick] [--out DIR]',
  flags: {
    quick: { type: 'bool', help: 'the same pipeline at a much smaller size (under a minute; used by the tests)' },
    out: { type: 'string', arg: 'DIR', help: 'run folder (default runs/<time>)' },
    seed: { type: 'int', help: 'seed', default: 0 },
    quiet: { type: 'bool', help: 'no progress output' },
  },
};

interface Scale {
  shape: Partial<ModelConfig>;
  ctx: number;
  batch: number;
  steps: number;
  lr: number;
  evalWindows: number;
  genTokens: number;
}

// Sized for ~10 minutes on 2 cores: 150 steps x 2048 tokens per model (TTT is the slowest, ~1.2k tok/s).
const FULL: Scale = { shape: {}, ctx: 128, batch: 16, steps: 150, lr: 3e-3, evalWindows: 200, genTokens: 64 };
const QUICK: Scale = {
  shape: { hiddenSize: 32, numLayers: 2, numHeads: 2, intermediateSize: 64, maxPositions: 64 },
  ctx: 32, batch: 8, steps: 25, lr: 5e-3, evalWindows: 40, genTokens: 16,
};

interface Variant {
  name: string;
  preset: string;
  /** Which plug-in must be built in, checked before training. */
  needs?: () => unknown;
  distill?: boolean;
  what: string;
}

const VARIANTS: Variant[] = [
  { name: 'teacher', preset: 'tiny-dense', what: 'dense LLaMA-style teacher' },
  { name: 'fbi', preset: 'tiny-fbi', distill: true, needs: () => null, what: '1-bit FBI student distilled from the teacher' },
  { name: 'ttt', preset: 'tiny-ttt', needs: () => mixerPlugin('ttt-linear'), what: 'TTT-Linear mixer' },
  { name: 'peer', preset: 'tiny-peer', needs: () => ffnPlugin('peer'), what: 'PEER feed-forward in alternate layers' },
];

interface Row {
  name: string;
  what: string;
  ppl?: number;
  params?: number;
  bits?: number;
  bytes?: number;
  trainTps?: number;
  genTps?: number;
  missing?: string;
}

export async function run(f: Flags): Promise<number> {
  const scale = f.quick ? QUICK : FULL;
  const seed = f.seed as number;
  const out = runDir(str(f, 'out'), 'main');
  mkdirSync(out, { recursive: true });
  const tok = new ByteTokenizer();
  const split = defaultCorpus();
  const valIds = tokenizeDocuments(split.validationDocs, tok);
  const stop = interruptFlag();
  const rows: Row[] = [];
  const runs: { name: string; dir: string }[] = [];
  let teacher: CausalLM | undefined;
  try {
    for (const v of VARIANTS) {
      if (stop.requested()) break;
      let cfg: Partial<ModelConfig>;
      try {
        v.needs?.();
        cfg = { ...(await presetByName(v.preset)), ...scale.shape, vocabSize: tok.vocabSize, maxPositions: Math.max(scale.ctx, scale.shape.maxPositions ?? 0, 64) };
        if (f.quick && cfg.peer) cfg = { ...cfg, peer: { ...cfg.peer, numExperts: 16 * 16, heads: 2, topk: 4, dimKey: 16 } };
        if (f.quick && Array.isArray(cfg.ffn)) cfg.ffn = cfg.ffn.slice(0, cfg.numLayers);
      } catch (e) {
        rows.push({ name: v.name, what: v.what, missing: `${v.name}: not available in this build (${(e as Error).message})` });
        continue;
      }
      if (v.distill && !teacher) {
        rows.push({ name: v.name, what: v.what, missing: `${v.name}: skipped, no teacher was trained` });
        continue;
      }
      const model = new CausalLM(cfg, { seed });
      const dir = join(out, v.name);
      const data = makeData(split, tok, { batch: scale.batch, ctx: scale.ctx, seed }, model.config.vocabSize);
      const r: TrainResult = await train({
        model, data: data.train, valData: data.val, evalSequences: 32, steps: scale.steps, lr: scale.lr,
        warmup: Math.ceil(scale.steps / 10), evalEvery: Math.ceil(scale.steps / 5), saveEvery: 0, outDir: dir, seed, tokenizer: tok,
        lossFn: v.distill ? distillLoss(teacher!, 0) : undefined, hooks: familyHooks(model), shouldStop: stop.requested,
        progress: f.quiet ? 'none' : 'bar', label: v.name,
      });
      runs.push({ name: v.name, dir });
      if (r.interrupted) break;
      if (v.name === 'teacher') teacher = model;
      const ppl = await perplexity(model, valIds, { window: scale.ctx, maxWindows: scale.evalWindows });
      const gen = await generate(model, tok, 'The ', { maxNewTokens: scale.genTokens, temperature: 0 });
      const d = describe(model);
      rows.push({
        name: v.name, what: v.what, ppl: ppl.perplexity, params: d.parameters, bits: d.bits_per_param,
        bytes: folderBytes(join(dir, 'model'), (n) => n === 'model.safetensors'), trainTps: r.tokensPerSecond, genTps: gen.tokensPerSecond,
      });
      if (v.name === 'fbi') rows.push(await packedRow(dir, valIds, scale, d.parameters, d.bits_per_param));
    }
  } finally {
    stop.dispose();
  }
  const headers = ['model', 'val ppl', 'params', 'bits/param', 'size on disk', 'train tok/s', 'gen tok/s'];
  const done = rows.filter((r) => !r.missing);
  const table = done.map((r) => [r.name, r.ppl!.toFixed(3), fmtCount(r.params!), r.bits!.toFixed(2), fmtBytes(r.bytes!), r.trainTps === undefined ? '-' : r.trainTps.toFixed(0), r.genTps!.toFixed(1)]);
  const report = reportFor(out, 'frugal main: tiny dense, FBI, TTT and PEER on the embedded corpus', runs, { headers, rows: table });
  const widths = headers.map((h, i) => Math.max(h.length, ...table.map((r) => String(r[i]).length)));
  const line = (cells: (string | number)[]) => cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ');
  console.log(`\nValidation split of ${split.name} (${valIds.length} byte tokens; perplexity over non-overlapping ${scale.ctx}-token windows)`);
  console.log(line(headers));
  for (const r of table) console.log(line(r));
  for (const r of rows) if (r.missing) console.log(r.missing);
  console.log(`report: ${report}`);
  return stop.requested() ? 130 : 0;
}

/** The FBI student served from packed sign bits: same predictions, 1 bit per binarized weight on disk. */
async function packedRow(dir: string, valIds: Int32Array, scale: Scale, params: number, bits: number): Promise<Row> {
  const packedDir = join(dir, 'packed');
  const { after } = packFolder(join(dir, 'model'), packedDir);
  const model = loadAnyModel(packedDir);
  const tok = new ByteTokenizer();
  const ppl = await perplexity(model, valIds, { window: scale.ctx, maxWindows: scale.evalWindows });
  const gen = await generate(model, tok, 'The ', { maxNewTokens: scale.genTokens, temperature: 0 });
  return { name: 'fbi-packed', what: 'the FBI student served from packed bits', ppl: ppl.perplexity, params, bits, bytes: after, genTps: gen.tokensPerSecond };
}
