// WebGPU fused attention against the CPU kernel for head dimensions and shapes the parity test does not
// cover (64, 128 and ones not divisible by 4, which take the per-component load path; L not a multiple
// of the blocks, cache offsets, GQA), forward and backward. Then, optionally, timings of tile
// configurations of the FlashAttention-2 kernels (kernels/attention.ts) beside the first row-per-thread
// kernels (kernels/attention-rowwise.ts) on B = 1 causal shapes, each checked against the row-per-thread
// result on the GPU.
// Usage: node --import tsx bench/probes/webgpu-attention-probe.ts [--time L,L..:D,D..] [--heads 12]
//          [--budget-s 80] [--variants all|JSON] [--json out.json]   (exits 1 on a mismatch)
import { writeFileSync } from 'node:fs';
import { cpuBackend } from '../../src/backend/cpu/index.ts';
import { attentionBackward, attentionChunkRows, attentionForward, type AttnParams, type AttnPass, type AttnTile, attentionTile, setAttentionChunkRows, setAttentionTiles } from '../../src/backend/webgpu/kernels/attention.ts';
import { attentionBackwardRowwise, attentionForwardRowwise } from '../../src/backend/webgpu/kernels/attention-rowwise.ts';
import type { GpuBuf } from '../../src/backend/webgpu/pool.ts';
import { initWebGPU, syncWebGPU, webgpuAdapterName, webgpuRuntime } from '../../src/backend/webgpu/index.ts';
import { Rng } from '../../src/tensor/index.ts';
import { type AttnCase, attnInputs, runAttention } from '../../test/attention-run.ts';
import { timeWebGPU } from '../matmul.ts';

const TOL = 1e-4; // relative max-abs error, same as the parity test
const rng = new Rng(7);
const randn = (n: number) => Float32Array.from({ length: n }, () => rng.normal());
const arg = (name: string, dflt: string) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? process.argv[i + 1] : dflt; };

function relErr(a: Float32Array, b: Float32Array): number {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); m = Math.max(m, Math.abs(b[i])); }
  return Number.isFinite(d) ? d / Math.max(m, 1e-30) : Infinity;
}

const gpu = await initWebGPU();
const rt = webgpuRuntime();
console.error(`# ${webgpuAdapterName()}`);
const cases: AttnCase[] = [
  { b: 1, l: 70, s: 70, h: 2, hkv: 1, d: 64, causal: true },
  { b: 1, l: 20, s: 90, h: 2, hkv: 2, d: 64, causal: true },
  { b: 2, l: 33, s: 33, h: 4, hkv: 2, d: 128, causal: true },
  { b: 1, l: 40, s: 75, h: 2, hkv: 1, d: 128, causal: false },
  { b: 1, l: 67, s: 67, h: 2, hkv: 1, d: 20, causal: true },
  { b: 1, l: 9, s: 30, h: 3, hkv: 1, d: 18, causal: true },
  { b: 1, l: 12, s: 17, h: 2, hkv: 2, d: 7, causal: false },
  { b: 1, l: 5, s: 140, h: 4, hkv: 1, d: 36, causal: true },
];
let bad = 0;
const checks: Record<string, unknown>[] = [];
for (const c of cases) {
  const ins = attnInputs(c, randn);
  const ref = await runAttention(cpuBackend, c, ins);
  const got = await runAttention(gpu, c, ins);
  const errs = ['o', 'lse', 'dq', 'dk', 'dv'].map((n, i) => [n, relErr(got[i], ref[i])] as const);
  const ok = errs.every(([, e]) => e <= TOL);
  if (!ok) bad++;
  checks.push({ ...c, ok, ...Object.fromEntries(errs) });
  console.error(`${ok ? 'ok  ' : 'FAIL'} ${JSON.stringify(c)} ${errs.map(([n, e]) => `${n}=${e.toExponential(1)}`).join(' ')}`);
}

// Tile configurations timed: each pass's variants with the other passes at their defaults.
const T = (ty: number, tx: number, ct: number, dc: number, vc: number, more: Partial<AttnTile> = {}): AttnTile => ({ ty, tx, ct, dc, vc, ...more });
const ro8 = { ro: 8 };
// The default set: the 64-row and 128-row production tiles of each pass; `--variants all` adds the
// narrower grids and resident rows timed before (bench/NOTES.md); `--variants JSON` times the given
// tiles, {"fwd": [[ty, tx, ct, dc, vc, ro?, res?, pf?, am?], ...], "dq": [...], "dkv": [...], "dqs": [...]}.
// dq variants time the backward that recomputes the scores in the dQ pass; dkv and dqs variants the one
// that stores dS (the default where the scratch allows).
const vArg = arg('variants', '');
const listed = (v: string): Record<AttnPass, AttnTile[]> => {
  const j = JSON.parse(v) as Partial<Record<AttnPass, number[][]>>;
  const tiles = (a: number[][] = []) => a.map(([ty, tx, ct, dc, vc, ro = 4, res = 0, pf = 0, am = 0]) =>
    T(ty, tx, ct, dc, vc, { ro, ...(res ? { res: true } : {}), ...(pf ? { pf: true } : {}), ...(am ? { am: true } : {}) }));
  return { fwd: tiles(j.fwd), dq: tiles(j.dq), dkv: tiles(j.dkv), dqs: tiles(j.dqs) };
};
const variants: Record<AttnPass, AttnTile[]> = vArg.startsWith('{') ? listed(vArg) : vArg === 'all' ? {
  fwd: [T(16, 16, 4, 8, 32), T(8, 16, 4, 8, 32, ro8), T(16, 16, 2, 8, 32, ro8), T(16, 8, 4, 8, 32, ro8), T(8, 16, 4, 8, 32, { ro: 8, res: true })],
  dq: [T(16, 16, 4, 4, 16), T(8, 16, 4, 4, 16, ro8), T(16, 16, 2, 4, 16, ro8), T(16, 8, 4, 4, 16, ro8)],
  dkv: [T(16, 16, 4, 2, 16), T(8, 16, 4, 2, 16, ro8), T(16, 16, 2, 2, 8, ro8), T(8, 16, 2, 4, 16, ro8), T(8, 16, 2, 2, 16, ro8)],
  dqs: [T(16, 16, 4, 1, 16, ro8), T(16, 16, 4, 1, 16), T(16, 16, 2, 1, 16, ro8), T(8, 16, 4, 1, 16, ro8)],
} : {
  fwd: [T(16, 16, 4, 8, 32), T(16, 16, 2, 8, 32, ro8)],
  dq: [attentionTile(rt, 'dq', 64, 1 << 20)],
  dkv: [T(16, 16, 4, 2, 16, { pf: true }), T(16, 16, 2, 2, 16, { pf: true })],
  dqs: [T(16, 16, 4, 1, 16, ro8), T(16, 16, 4, 1, 16)],
};

// Milliseconds per call as bench/matmul.ts's timeWebGPU measures them (batch differences, so a short
// kernel is not charged the submit-and-wait round trip), with batches of at least ~40 ms.
const timeMs = async (fn: () => void, maxReps: number): Promise<number> => (await timeWebGPU(fn, maxReps, 80)).ms;

const rows: Record<string, unknown>[] = [];
const json = arg('json', '');
const result = () => ({ adapter: webgpuAdapterName(), tol: TOL, checks, rows, flops_formula: 'fwd = 4*B*H*L*L*D/2 (causal), bwd = 2.5*fwd' });
const spec = arg('time', '');
if (spec) {
  const t0 = performance.now(), budgetMs = Number(arg('budget-s', '80')) * 1000;
  const [lens, dims] = spec.split(':').map((s) => s.split(',').map(Number));
  const H = Number(arg('heads', '12'));
  for (const D of dims) for (const L of lens) {
    if (performance.now() - t0 > budgetMs) { rows.push({ L, D, skipped: 'time budget' }); continue; }
    const p: AttnParams = { b: 1, l: L, s: L, h: H, hkv: H, d: D, scale: 1 / Math.sqrt(D), causal: true };
    const n = L * H * D, up = () => gpu.upload(randn(n)) as GpuBuf, zero = () => gpu.upload(new Float32Array(n)) as GpuBuf;
    const [q, k, v, g] = [up(), up(), up(), up()];
    const [o, dq, dk, dv] = [zero(), zero(), zero(), zero()];
    const lse = gpu.upload(new Float32Array(H * L)) as GpuBuf;
    const read = async (b: GpuBuf) => (await gpu.read(b)).slice() as Float32Array;
    // Calls per timed batch at most.
    const reps = 64;
    // The row-per-thread kernels: reference outputs and times.
    const fwdOld = () => attentionForwardRowwise(rt, q, k, v, o, lse, p);
    const bwdOld = () => attentionBackwardRowwise(rt, q, k, v, o, g, lse, dq, dk, dv, p);
    // The GPU's first kernels after idling run at low clocks: a second of work before any timing.
    if (!rows.length) for (const w0 = performance.now(); performance.now() - w0 < 1000;) { fwdOld(); await syncWebGPU(); }
    const oldFwdMs = await timeMs(fwdOld, reps);
    const refO = await read(o), refL = await read(lse);
    const oldBwdMs = await timeMs(bwdOld, reps);
    const refDq = await read(dq), refDk = await read(dk), refDv = await read(dv);
    const row: Record<string, unknown> = { L, D, H, old_fwd_ms: +oldFwdMs.toFixed(3), old_bwd_ms: +oldBwdMs.toFixed(3) };
    console.error(`L=${L} D=${D}: row-per-thread fwd ${oldFwdMs.toFixed(2)} ms, bwd ${oldBwdMs.toFixed(2)} ms`);
    const timed: Record<string, unknown>[] = [];
    for (const pass of ['fwd', 'dq', 'dkv', 'dqs'] as AttnPass[]) {
      for (const tile of variants[pass]) {
        if (performance.now() - t0 > budgetMs) { timed.push({ pass, tile, skipped: 'time budget' }); continue; }
        setAttentionTiles({ [pass]: tile });
        setAttentionChunkRows(pass === 'dq' ? 0 : null);
        const used = attentionTile(rt, pass, D, H * L);
        let ms: number, errs: Record<string, number>;
        if (pass === 'fwd') {
          ms = await timeMs(() => attentionForward(rt, q, k, v, o, lse, p), reps);
          errs = { o: relErr(await read(o), refO), lse: relErr(await read(lse), refL) };
          // The backward variants below read o and lse: restore the reference ones' inputs exactly.
          attentionForwardRowwise(rt, q, k, v, o, lse, p);
        } else {
          ms = await timeMs(() => attentionBackward(rt, q, k, v, o, g, lse, dq, dk, dv, p), reps);
          errs = { dq: relErr(await read(dq), refDq), dk: relErr(await read(dk), refDk), dv: relErr(await read(dv), refDv) };
        }
        const ok = Object.values(errs).every((e) => e <= TOL);
        if (!ok) bad++;
        const dqs = pass === 'dqs' ? used : attentionTile(rt, 'dqs', D, H * L);
        const chunk = pass === 'fwd' ? undefined : attentionChunkRows(rt, p, (dqs.ro ?? 4) * dqs.ty);
        timed.push({ pass, tile: used, ...(chunk === undefined ? {} : { chunk_rows: chunk }), ms: +ms.toFixed(3), ok, ...errs });
        console.error(`  ${pass} ${JSON.stringify(used)}${chunk === undefined ? '' : ` chunk ${chunk}`}: ${ms.toFixed(2)} ms ${ok ? 'ok' : 'MISMATCH'} ${JSON.stringify(errs)}`);
      }
    }
    setAttentionTiles(null);
    setAttentionChunkRows(null);
    row.variants = timed;
    rows.push(row);
    if (json) writeFileSync(json, JSON.stringify(result(), null, 1)); // partial results survive a time limit
    for (const b of [q, k, v, g, o, dq, dk, dv, lse]) gpu.free(b);
  }
}
if (json) writeFileSync(json, JSON.stringify(result(), null, 1));
else console.log(JSON.stringify(result(), null, 1));
process.exit(bad ? 1 : 0);
