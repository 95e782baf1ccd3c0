// `frugal experiment` at --quick size: both experiments run end to end, print their table and write a
// report with their chart; the properties each one promises (equal parameter counts, matched FLOPs)
// hold in the printed numbers; the FLOP count agrees with an independent count of the weights.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { ISOFLOP_FULL, ISOFLOP_QUICK, matchPeerHeads, modelCost } from '../../src/experiments/peer-isoflop.ts';
import { log2Buckets } from '../../src/experiments/long-context.ts';
import { CausalLM } from '../../src/models/index.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'frugal.js');
const tmp = mkdtempSync(join(tmpdir(), 'frugal-exp-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function frugal(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: tmp });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** Rows of the printed table: the lines after the header line that starts with `first`. */
function tableRows(out: string, first: string): string[][] {
  const lines = out.split('\n');
  const h = lines.findIndex((l) => l.startsWith(first));
  assert.ok(h >= 0, `no table header starting with '${first}' in:\n${out}`);
  const rows: string[][] = [];
  for (const l of lines.slice(h + 1)) {
    if (!l.trim() || l.startsWith('report:')) break;
    rows.push(l.trim().split(/\s{2,}/));
  }
  return rows;
}

function assertReport(dir: string, png: string) {
  const html = readFileSync(join(dir, 'report.html'), 'utf8');
  assert.match(html, /<svg/);
  assert.ok(html.includes(`href="${png}"`));
  assert.deepEqual([...readFileSync(join(dir, png)).subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10]);
}

test('long-context --quick: three equal-size models, perplexity by position, report with the chart', () => {
  const out = join(tmp, 'lc');
  const r = frugal('experiment', 'long-context', '--quick', '--out', out, '--quiet');
  assert.equal(r.code, 0, r.err);
  const rows = tableRows(r.out, 'positions');
  const params = rows.find((x) => x[0] === 'parameters')!.slice(1).map(Number);
  assert.equal(params.length, 3);
  // Equal size: FFN width moves the count in steps of 3 x hidden x layers (192 here), so the match
  // is within one step of the attention model's count.
  for (const p of params) assert.ok(Math.abs(p - params[0]) <= 3 * 32 * 2, `parameter counts ${params}`);
  const ppl = rows.filter((x) => /^\d+(-\d+)?$/.test(x[0]) || x[0] === 'all').flatMap((x) => x.slice(1).map(Number));
  assert.ok(ppl.length >= 3 * 2);
  // Even a few steps of training beat the uniform byte model (perplexity 256).
  for (const p of ppl) assert.ok(Number.isFinite(p) && p > 1 && p < 256, `perplexities ${ppl}`);
  for (const m of ['attention', 'ttt-linear', 'ttt-mlp']) assert.ok(existsSync(join(out, m, 'metrics.jsonl')));
  assertReport(out, 'position.png');
});

test('peer-isoflop --quick: dense and PEER at each budget with training FLOPs matched', () => {
  const out = join(tmp, 'pi');
  const r = frugal('experiment', 'peer-isoflop', '--quick', '--out', out, '--quiet');
  assert.equal(r.code, 0, r.err);
  const rows = tableRows(r.out, 'budget');
  assert.equal(rows.length, 2 * ISOFLOP_QUICK.denseSteps.length);
  for (const row of rows) {
    const [budget, model, total, active, , , flops, , ppl] = row;
    const b = Number(budget.match(/\(([^)]+)\)/)![1]);
    assert.ok(Math.abs(Number(flops) / b - 1) < 0.05, `${model}: ${flops} FLOPs vs budget ${b}`);
    assert.ok(Number(active) <= Number(total));
    assert.ok(Number(ppl) > 1 && Number(ppl) < 256, `${model} perplexity ${ppl}`);
  }
  // PEER holds more parameters than it uses per token; the dense model uses nearly all of its own.
  const peer = rows.find((x) => x[1] === 'peer')!;
  assert.ok(Number(peer[2]) > Number(peer[3]));
  assertReport(out, 'isoflop.png');
});

test('the FLOP count of a dense model is 6 x its matmul weights + the attention term', () => {
  const cfg = { hiddenSize: 48, numLayers: 3, numHeads: 4, numKvHeads: 2, intermediateSize: 100, vocabSize: 256, maxPositions: 64 };
  const model = new CausalLM(cfg, { seed: 0 });
  // Counted from the weights themselves: every 2-D parameter except the embedding table is a matmul.
  const matmul = model.namedParameters().filter(([n, t]) => t.shape.length === 2 && !n.includes('embed_tokens')).reduce((s, [, t]) => s + t.size, 0);
  const c = modelCost(model, 64);
  assert.equal(c.activeParams, matmul);
  assert.equal(c.flopsPerToken, 6 * matmul + 6 * 3 * 64 * 48);
});

test('matched PEER heads keep per-token FLOPs within a few percent of dense at both sizes', () => {
  for (const s of [ISOFLOP_QUICK, ISOFLOP_FULL]) {
    const base = { ...s.shape, vocabSize: 256, maxPositions: s.ctx };
    const heads = matchPeerHeads(base, s.peer);
    const layers = s.shape.numLayers!;
    const ffn = Array.from({ length: layers }, (_, i) => (i === Math.floor(layers / 2) ? 'peer' as const : 'swiglu' as const));
    const dense = modelCost(new CausalLM(base, { seed: 0 }), s.ctx).flopsPerToken;
    const peer = modelCost(new CausalLM({ ...base, ffn, peer: { ...s.peer, heads } }, { seed: 0 }), s.ctx).flopsPerToken;
    assert.ok(Math.abs(peer / dense - 1) < 0.03, `dense ${dense} vs PEER ${peer} FLOPs/token`);
  }
});

test('log2Buckets: doubling position ranges, each the mean loss of its positions over all windows', () => {
  // Loss = position in window 0, 2 x position in window 1 (a shorter window of 5 predictions).
  const w0 = Float64Array.from({ length: 9 }, (_, i) => i + 1);
  const w1 = Float64Array.from({ length: 5 }, (_, i) => 2 * (i + 1));
  const b = log2Buckets([w0, w1]);
  assert.deepEqual(b.map((x) => [x.from, x.to, x.tokens]), [[1, 2, 2], [2, 4, 4], [4, 8, 6], [8, 10, 2]]);
  // [4, 8): positions 4..7 of window 0 (sum 22) and positions 4, 5 of window 1 (sum 18).
  assert.ok(Math.abs(b[2].nll - 40 / 6) < 1e-12);
  assert.ok(Math.abs(b[3].perplexity - Math.exp(17 / 2)) < 1e-9);
});

test('unknown or missing experiment name: exit 2 with one line naming the experiments', () => {
  for (const args of [['experiment', 'nope'], ['experiment']]) {
    const r = frugal(...args);
    assert.equal(r.code, 2);
    const lines = r.err.trimEnd().split('\n');
    assert.equal(lines.length, 1, r.err);
    assert.match(lines[0], /^frugal: .*long-context, peer-isoflop/);
  }
});
