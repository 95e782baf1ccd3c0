// frugal experiment NAME: small, fixed comparisons on the embedded corpus. Each experiment trains its
// models, prints one results table and writes report.html (training curves, the experiment's own
// chart, the table and how the numbers were made) in its run folder.
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { runLongContext, type ExperimentOpts, type ExperimentOutcome } from '../experiments/long-context.ts';
import { runPeerIsoflop } from '../experiments/peer-isoflop.ts';
import { ensureDir, promoteDir, stagingPath, writeFileAtomic } from '../io/atomic.ts';
import { pngChart, svgChart } from '../train/report.ts';
import { type CommandSpec, type Flags, str, UsageError } from './args.ts';
import { interruptFlag, prepareRunDir, reportFor } from './common.ts';

const EXPERIMENTS: Record<string, { what: string; run: (o: ExperimentOpts) => Promise<ExperimentOutcome> }> = {
  'long-context': { what: 'perplexity by position of equal-size attention, TTT-Linear and TTT-MLP models', run: runLongContext },
  'peer-isoflop': { what: 'dense vs PEER validation perplexity at matched training FLOPs', run: runPeerIsoflop },
};

export const spec: CommandSpec = {
  name: 'experiment',
  summary: `run a fixed comparison on the embedded corpus: ${Object.entries(EXPERIMENTS).map(([k, e]) => `${k} (${e.what})`).join('; ')}`,
  usage: `frugal experiment ${Object.keys(EXPERIMENTS).join('|')} [--quick] [--out DIR]`,
  positionals: ['NAME'],
  flags: {
    quick: { type: 'bool', help: 'the same experiment at a much smaller size (seconds; used by the tests)' },
    out: { type: 'string', arg: 'DIR', help: 'run folder (default runs/experiment-NAME-<time>)' },
    seed: { type: 'int', help: 'seed for initialization and data order', default: 0 },
    quiet: { type: 'bool', help: 'no progress output' },
    overwrite: { type: 'bool', help: 'replace what --out already holds (once the new experiment has finished)' },
  },
};

export async function run(f: Flags, positional: string[]): Promise<number> {
  const names = Object.keys(EXPERIMENTS).join(', ');
  const name = positional[0];
  if (!name) throw new UsageError(`frugal experiment needs a name: ${names}`);
  const exp = EXPERIMENTS[name];
  if (!exp) throw new UsageError(`unknown experiment '${name}'; experiments: ${names}`);
  const seed = f.seed as number;
  if (!Number.isInteger(seed) || seed < 0) throw new UsageError(`--seed must be an integer >= 0, got ${seed}`);
  const final = prepareRunDir(str(f, 'out'), `experiment-${name}`, f);
  // With --overwrite the experiment runs beside the old results and replaces them when it is done.
  const replacing = readdirSync(final).length > 0;
  const out = replacing ? stagingPath(final) : final;
  ensureDir(out);
  const stop = interruptFlag();
  let r: ExperimentOutcome;
  let report: string;
  try {
    r = await exp.run({ quick: Boolean(f.quick), out, seed, quiet: Boolean(f.quiet), shouldStop: stop.requested });
    writeExperimentReport(out, r);
    if (replacing) promoteDir(out, final);
    report = join(final, 'report.html');
  } finally {
    stop.dispose();
    if (replacing) rmSync(out, { recursive: true, force: true });
  }
  console.log(`\n${r.title}`);
  for (const n of r.notes) console.log(n);
  printTable(r.table.headers, r.table.rows);
  if (r.interrupted) console.log('interrupted: the table holds the runs that finished');
  console.log(`report: ${report}`);
  return r.interrupted ? 130 : 0;
}

/** The standard run report plus the experiment's chart (inline SVG and a PNG) above the training curves. */
function writeExperimentReport(out: string, r: ExperimentOutcome): string {
  const path = reportFor(out, r.title, r.runs, r.table);
  const c = r.chart;
  writeFileAtomic(join(out, c.file), pngChart(c.series));
  const section = `<h2>${escapeHtml(c.title)}</h2>${svgChart(c.title, c.series, c.xLabel, c.yLabel)}\n` +
    `<p>PNG version: <a href="${c.file}">${c.file}</a></p>\n${r.notes.map((n) => `<p>${escapeHtml(n)}</p>`).join('\n')}\n`;
  const html = readFileSync(path, 'utf8');
  // The generic report has no slot for extra charts: place ours before its first training chart.
  const at = html.indexOf('<h2>');
  writeFileAtomic(path, at >= 0 ? html.slice(0, at) + section + html.slice(at) : html.replace('</body>', `${section}</body>`));
  return path;
}

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function printTable(headers: string[], rows: string[][]): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log(line(headers));
  for (const r of rows) console.log(line(r));
}
