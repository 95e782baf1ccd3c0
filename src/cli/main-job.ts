// frugal main (npm start): the demo pipeline on the embedded corpus. Trains a tiny dense teacher,
// distills a tiny FBI (1-bit) student from it, trains tiny TTT and PEER variants, evaluates all of
// them on the validation split and prints one comparison table plus the HTML report's path.
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ByteTokenizer, tokenizeDocuments, defaultCorpus } from '../data/index.ts';
import { perplexity } from '../eval/perplexity.ts';
import { generate } from '../infer/generate.ts';
import { CausalLM, ffnPlugin, mixerPlugin, type ModelConfig } from '../models/index.ts';
import { presetByName } from '../models/presets.ts';
import { distillLoss } from '../train/distill.ts';
import { familyHooks } from '../train/hooks.ts';
import { latestCheckpoint, train, type TrainResult } from '../train/trainer.ts';
import { type CommandSpec, explicitFlags, type Flags, str, UsageError } from './args.ts';
import { readTextFile } from '../io/safe-read.ts';
import { fmtBytes, fmtCount, folderBytes, interruptFlag, makeData, prepareRunDir, reportFor } from './common.ts';
import { ensureDir, promoteDir, stagingPath, writeFileAtomic } from '../io/atomic.ts';
import { describe } from './info.ts';
import { loadAnyModel } from './model-spec.ts';
import { packFolder } from './pack.ts';

export const spec: CommandSpec = {
  name: 'main',
  summary: 'train, distill, evaluate and compare tiny dense, FBI, TTT and PEER models on the embedded corpus',
  usage: 'frugal main [--quick] [--out DIR [--overwrite | --resume]]',
  flags: {
    quick: { type: 'bool', help: 'the same pipeline at a much smaller size (under a minute; used by the tests)' },
    out: { type: 'string', arg: 'DIR', help: 'run folder (default runs/<time>)' },
    seed: { type: 'int', help: 'seed', default: 0 },
    quiet: { type: 'bool', help: 'no progress output' },
    overwrite: { type: 'bool', help: 'replace what --out already holds (once the new pipeline has saved a model)' },
    resume: { type: 'bool', help: 'continue an interrupted pipeline in --out: finished models are kept, the interrupted one continues from its checkpoint' },
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

/** The pipeline's settings, saved in its folder so that --resume continues it as it was. */
const SETTINGS = 'main.json';

function resumedFlags(f: Flags, dir: string): Flags {
  const path = join(dir, SETTINGS);
  let saved: { quick?: unknown; seed?: unknown };
  try {
    saved = JSON.parse(readTextFile(path, { what: 'pipeline settings' })) as typeof saved;
  } catch (e) {
    throw new UsageError(`--resume: cannot read ${path} (${(e as Error).message}); run without --resume (and --overwrite) to start again`);
  }
  if (typeof saved?.quick !== 'boolean' || !Number.isInteger(saved.seed)) throw new UsageError(`--resume: ${path} is not a frugal main settings file; run without --resume (and --overwrite) to start again`);
  const explicit = explicitFlags(f);
  for (const k of ['quick', 'seed'] as const) {
    if (explicit.has(k) && f[k] !== saved[k]) {
      throw new UsageError(`--${k} ${String(f[k])} contradicts the pipeline in ${dir}, which was started with --${k} ${String(saved[k])}; drop --${k} to continue it as it was`);
    }
  }
  return { ...f, quick: saved.quick, seed: saved.seed as number };
}

export async function run(f: Flags): Promise<number> {
  const seed = f.seed as number;
  // A folder that holds something is refused unless --resume (continue the pipeline started there)
  // or --overwrite; then the new pipeline runs beside the old results and replaces them only once it
  // has saved at least one model.
  const final = prepareRunDir(str(f, 'out'), 'main', f, { resumeFrom: { has: (d) => existsSync(join(d, SETTINGS)), what: `${SETTINGS} of an earlier frugal main` } });
  if (f.resume) return pipeline(resumedFlags(f, final), final, final, () => undefined);
  const replacing = readdirSync(final).length > 0;
  const staged = replacing ? stagingPath(final) : undefined;
  try {
    if (staged) ensureDir(staged);
    writeFileAtomic(join(staged ?? final, SETTINGS), `${JSON.stringify({ quick: Boolean(f.quick), seed })}\n`);
    return await pipeline(f, staged ?? final, final, () => {
      if (staged) promoteDir(staged, final);
    });
  } finally {
    if (staged) rmSync(staged, { recursive: true, force: true });
  }
}

/**
 * Trains, evaluates and compares the variants in `out`; `commit` is called once the results are
 * complete (or at least one model was saved before an interrupt), before the report path is printed.
 */
async function pipeline(f: Flags, out: string, final: string, commit: () => void): Promise<number> {
  const scale = f.quick ? QUICK : FULL;
  const seed = f.seed as number;
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
      // Under --resume a variant with a checkpoint continues from it (one already finished runs no step).
      const resume = Boolean(f.resume) && latestCheckpoint(dir) !== undefined;
      const r: TrainResult = await train({
        resume, model, data: data.train, valData: data.val, evalSequences: 32, steps: scale.steps, lr: scale.lr,
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
        bytes: folderBytes(join(dir, 'model'), (n) => n === 'model.safetensors'), trainTps: r.losses.length ? r.tokensPerSecond : undefined, genTps: gen.tokensPerSecond,
      });
      if (v.name === 'fbi') rows.push(await packedRow(dir, valIds, scale, d.parameters, d.bits_per_param));
    }
  } finally {
    stop.dispose();
  }
  const headers = ['model', 'val ppl', 'params', 'bits/param', 'size on disk', 'train tok/s', 'gen tok/s'];
  const done = rows.filter((r) => !r.missing);
  const table = done.map((r) => [r.name, r.ppl!.toFixed(3), fmtCount(r.params!), r.bits!.toFixed(2), fmtBytes(r.bytes!), r.trainTps === undefined ? '-' : r.trainTps.toFixed(0), r.genTps!.toFixed(1)]);
  reportFor(out, 'frugal main: tiny dense, FBI, TTT and PEER on the embedded corpus', runs, { headers, rows: table });
  const saved = runs.some((r) => existsSync(join(r.dir, 'model')));
  if (saved) commit();
  const report = saved || out === final ? join(final, 'report.html') : undefined;
  const widths = headers.map((h, i) => Math.max(h.length, ...table.map((r) => String(r[i]).length)));
  const line = (cells: (string | number)[]) => cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ');
  console.log(`\nValidation split of ${split.name} (${valIds.length} byte tokens; perplexity over non-overlapping ${scale.ctx}-token windows)`);
  console.log(line(headers));
  for (const r of table) console.log(line(r));
  for (const r of rows) if (r.missing) console.log(r.missing);
  console.log(report ? `report: ${report}` : `interrupted before any model was saved; ${final} is left as it was`);
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
