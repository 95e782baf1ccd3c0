// Per-run HTML report: training-loss and validation curves as inline SVG (with axes and legends) plus
// the same charts as PNG files next to it, and an optional results table.
import { writeFileAtomic } from '../io/atomic.ts';
import { join } from 'node:path';
import { Canvas, type Rgb } from './png.ts';
import type { MetricRecord } from './metrics.ts';

export interface Series {
  name: string;
  points: [number, number][];
}
export interface ReportRun {
  name: string;
  records: MetricRecord[];
}
export interface ReportOpts {
  title: string;
  runs: ReportRun[];
  table?: { headers: string[]; rows: (string | number)[][] };
  notes?: string[];
}

const COLORS: Rgb[] = [[31, 119, 180], [214, 39, 40], [44, 160, 44], [148, 103, 189], [255, 127, 14], [23, 190, 207]];
const hex = (c: Rgb) => `#${c.map((v) => v.toString(16).padStart(2, '0')).join('')}`;
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Smooths a noisy training curve with an exponential moving average (bias-corrected). */
function ema(points: [number, number][], beta = 0.9): [number, number][] {
  let m = 0;
  return points.map(([x, y], i) => {
    m = beta * m + (1 - beta) * y;
    return [x, m / (1 - beta ** (i + 1))];
  });
}

function bounds(series: Series[]) {
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1])).filter(Number.isFinite);
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) [y0, y1] = [y0 - 1, y1 + 1];
  const pad = (y1 - y0) * 0.05;
  return { x0: Math.min(...xs, 0), x1: Math.max(...xs, 1), y0: y0 - pad, y1: y1 + pad };
}

const W = 640, H = 320, M = { l: 56, r: 16, t: 28, b: 36 };

function ticks(lo: number, hi: number, n = 5): number[] {
  return Array.from({ length: n + 1 }, (_, i) => lo + ((hi - lo) * i) / n);
}

export function svgChart(title: string, series: Series[], xLabel: string, yLabel: string): string {
  if (!series.some((s) => s.points.length)) return `<p>${esc(title)}: no data</p>`;
  const b = bounds(series);
  const sx = (x: number) => M.l + ((x - b.x0) / (b.x1 - b.x0)) * (W - M.l - M.r);
  const sy = (y: number) => H - M.b - ((y - b.y0) / (b.y1 - b.y0)) * (H - M.t - M.b);
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<text x="${W / 2}" y="16" text-anchor="middle" font-size="13">${esc(title)}</text>`,
    `<rect x="${M.l}" y="${M.t}" width="${W - M.l - M.r}" height="${H - M.t - M.b}" fill="none" stroke="#888"/>`];
  for (const y of ticks(b.y0, b.y1)) {
    parts.push(`<line x1="${M.l}" x2="${W - M.r}" y1="${sy(y)}" y2="${sy(y)}" stroke="#eee"/><text x="${M.l - 4}" y="${sy(y) + 4}" text-anchor="end">${y.toPrecision(3)}</text>`);
  }
  for (const x of ticks(b.x0, b.x1)) parts.push(`<text x="${sx(x)}" y="${H - M.b + 14}" text-anchor="middle">${Math.round(x)}</text>`);
  parts.push(`<text x="${W / 2}" y="${H - 4}" text-anchor="middle">${esc(xLabel)}</text>`,
    `<text x="12" y="${H / 2}" transform="rotate(-90 12 ${H / 2})" text-anchor="middle">${esc(yLabel)}</text>`);
  series.forEach((s, i) => {
    const c = hex(COLORS[i % COLORS.length]);
    const d = s.points.filter((p) => Number.isFinite(p[1])).map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(' ');
    parts.push(`<polyline fill="none" stroke="${c}" stroke-width="1.5" points="${d}"/>`);
    if (s.points.length < 30) for (const p of s.points) parts.push(`<circle cx="${sx(p[0])}" cy="${sy(p[1])}" r="2.5" fill="${c}"/>`);
    parts.push(`<rect x="${W - M.r - 150}" y="${M.t + 6 + i * 14}" width="10" height="10" fill="${c}"/><text x="${W - M.r - 135}" y="${M.t + 15 + i * 14}">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('');
}

/** The same chart as a PNG: frame, grid lines at the SVG's ticks, one colored polyline per series. */
export function pngChart(series: Series[]): Uint8Array {
  const cv = new Canvas(W, H);
  if (!series.some((s) => s.points.length)) return cv.toPng();
  const b = bounds(series);
  const sx = (x: number) => M.l + ((x - b.x0) / (b.x1 - b.x0)) * (W - M.l - M.r);
  const sy = (y: number) => H - M.b - ((y - b.y0) / (b.y1 - b.y0)) * (H - M.t - M.b);
  for (const y of ticks(b.y0, b.y1)) cv.line(M.l, sy(y), W - M.r, sy(y), [235, 235, 235]);
  cv.line(M.l, M.t, W - M.r, M.t, [136, 136, 136]);
  cv.line(M.l, H - M.b, W - M.r, H - M.b, [136, 136, 136]);
  cv.line(M.l, M.t, M.l, H - M.b, [136, 136, 136]);
  cv.line(W - M.r, M.t, W - M.r, H - M.b, [136, 136, 136]);
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length];
    const pts = s.points.filter((p) => Number.isFinite(p[1]));
    for (let k = 1; k < pts.length; k++) cv.line(sx(pts[k - 1][0]), sy(pts[k - 1][1]), sx(pts[k][0]), sy(pts[k][1]), c, 2);
    // Legend swatch (names are in the HTML version).
    for (let dy = 0; dy < 8; dy++) cv.line(W - M.r - 20, M.t + 6 + i * 12 + dy, W - M.r - 8, M.t + 6 + i * 12 + dy, c);
  });
  return cv.toPng();
}

function lossSeries(runs: ReportRun[]): Series[] {
  return runs.map((r) => ({
    name: r.name,
    points: ema(r.records.filter((x) => x.type === 'step').map((x) => [x.step, (x as { loss: number }).loss] as [number, number])),
  }));
}
function evalSeries(runs: ReportRun[]): Series[] {
  return runs.map((r) => ({
    name: r.name,
    points: r.records.filter((x) => x.type === 'eval').map((x) => [x.step, (x as { val_loss: number }).val_loss] as [number, number]),
  }));
}

/** Writes report.html, loss.png and eval.png into dir; returns the HTML path. */
export function writeReport(dir: string, o: ReportOpts): string {
  const loss = lossSeries(o.runs);
  const ev = evalSeries(o.runs);
  writeFileAtomic(join(dir, 'loss.png'), pngChart(loss));
  writeFileAtomic(join(dir, 'eval.png'), pngChart(ev));
  const table = o.table
    ? `<table><tr>${o.table.headers.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>${o.table.rows
      .map((r) => `<tr>${r.map((c) => `<td>${esc(String(c))}</td>`).join('')}</tr>`).join('')}</table>`
    : '';
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>${esc(o.title)}</title>
<style>body{font-family:sans-serif;max-width:720px;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}</style>
</head><body><h1>${esc(o.title)}</h1>${table}
${(o.notes ?? []).map((n) => `<p>${esc(n)}</p>`).join('\n')}
<h2>Training loss (EMA-smoothed)</h2>${svgChart('training loss', loss, 'step', 'loss (nats/token)')}
<h2>Validation loss</h2>${svgChart('validation loss', ev, 'step', 'loss (nats/token)')}
<p>PNG versions: <a href="loss.png">loss.png</a>, <a href="eval.png">eval.png</a>; raw numbers in each run's metrics.jsonl.</p>
</body></html>
`;
  const path = join(dir, 'report.html');
  writeFileAtomic(path, html);
  return path;
}
