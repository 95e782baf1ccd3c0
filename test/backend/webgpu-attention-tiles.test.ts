// The fused attention kernels under tile shapes other than the production ones (8 owned rows per
// thread, resident owned rows, narrow thread grids), forward and backward against the CPU kernel:
// the probe times these on real GPUs, so each must be exact everywhere, not only the defaults.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cpuBackend } from '../../src/backend/cpu/index.ts';
import { type AttnPass, type AttnTile, attentionChunkRows, attentionTile, setAttentionChunkRows, setAttentionTiles } from '../../src/backend/webgpu/kernels/attention.ts';
import { initWebGPU, webgpuAdapterName, webgpuRuntime } from '../../src/backend/webgpu/index.ts';
import { Rng } from '../../src/tensor/index.ts';
import { type AttnCase, attnInputs, runAttention } from '../attention-run.ts';
import { assertClose, DEVICE } from '../helpers.ts';

let reason = '';
const gpu = await initWebGPU().catch((e: Error) => { reason = e.message; return null; });
console.log(gpu ? `# backend: webgpu (${webgpuAdapterName()})` : `# webgpu attention tiles NOT RUN: ${reason}`);
if (!gpu && DEVICE === 'webgpu') test('webgpu backend initializes', () => assert.fail(reason));
if (!gpu) test('webgpu attention tiles (not run: no WebGPU adapter)', { skip: reason }, () => {});

const rng = new Rng(17);
const randn = (n: number) => Float32Array.from({ length: n }, () => rng.normal());

const T = (ty: number, tx: number, ct: number, dc: number, vc: number, more: Partial<AttnTile> = {}): AttnTile => ({ ty, tx, ct, dc, vc, ...more });
// Tile sets: every pass with 8 owned rows; 8 owned rows with resident rows; a narrow grid with 4;
// every pass with register prefetch. Each set runs both backwards: the one that recomputes the scores
// in the dQ pass (its dq tile), and the one where the dK/dV pass stores dS per chunk of query rows and
// dQ is one product over it (its dqs tile; chunks of one dqs block, so every case spans several).
// (The dK/dV pass keeps CT <= 2 with 8 owned rows here: larger register tiles take SwiftShader's
// compiler minutes.)
const sets: Record<string, Record<AttnPass, AttnTile>> = {
  ro8: { fwd: T(8, 8, 8, 4, 16, { ro: 8 }), dq: T(8, 8, 4, 4, 16, { ro: 8 }), dkv: T(8, 8, 2, 2, 16, { ro: 8 }), dqs: T(4, 8, 4, 1, 16, { ro: 8 }) },
  'ro8 resident': { fwd: T(4, 16, 4, 4, 32, { ro: 8, res: true }), dq: T(4, 16, 4, 4, 16, { ro: 8, res: true }), dkv: T(4, 16, 2, 4, 8, { ro: 8, res: true }), dqs: T(2, 16, 2, 1, 8, { ro: 8 }) },
  'ro4 narrow': { fwd: T(4, 8, 2, 2, 4), dq: T(2, 16, 4, 2, 8), dkv: T(8, 4, 4, 1, 8), dqs: T(4, 8, 2, 1, 4) },
  // Register prefetch: several score chunks and accumulation chunks per block, 4 and 8 rows.
  'prefetch ro4': { fwd: T(8, 8, 4, 2, 8, { pf: true }), dq: T(8, 8, 4, 2, 16, { pf: true }), dkv: T(8, 8, 2, 2, 8, { pf: true }), dqs: T(4, 8, 4, 1, 8) },
  // (8 owned rows with prefetch in dK/dV are not a default: SwiftShader's compiler takes minutes and
  // gigabytes on them.)
  'prefetch ro8': { fwd: T(4, 8, 4, 1, 16, { ro: 8, pf: true }), dq: T(4, 8, 4, 4, 8, { ro: 8, pf: true }), dkv: T(8, 8, 2, 2, 16), dqs: T(2, 8, 4, 1, 8, { ro: 8 }) },
  // Every block masked element by element with natural exp (`am`), the form the edge-only masks and
  // exp2 replaced; kept for timing beside them.
  'all masked': { fwd: T(4, 8, 2, 2, 4, { am: true }), dq: T(2, 16, 4, 2, 8, { am: true }), dkv: T(8, 4, 4, 1, 8, { am: true }), dqs: T(2, 16, 4, 1, 8) },
};
// Shapes: several blocks with a ragged last one, GQA, a cache offset, D not a multiple of 4, non-causal.
const cases: AttnCase[] = [
  { b: 1, l: 150, s: 150, h: 2, hkv: 1, d: 16, causal: true },
  { b: 2, l: 21, s: 70, h: 4, hkv: 2, d: 12, causal: true },
  { b: 1, l: 37, s: 37, h: 2, hkv: 2, d: 7, causal: true },
  { b: 1, l: 19, s: 45, h: 2, hkv: 1, d: 8, causal: false },
];

if (gpu) {
  for (const [name, tiles] of Object.entries(sets)) {
    test(`attention forward and backward with ${name} tiles = CPU`, async () => {
      setAttentionTiles(tiles);
      try {
        // The tiles asked for are the ones run (nothing shrunk away on this adapter for these D).
        for (const pass of ['fwd', 'dq', 'dkv', 'dqs'] as AttnPass[]) {
          const used = attentionTile(webgpuRuntime(), pass, 16, 300);
          assert.equal(used.ro ?? 4, tiles[pass].ro ?? 4, `${pass} owned rows`);
          assert.equal(!!used.pf, !!tiles[pass].pf, `${pass} prefetch`);
        }
        const block = (tiles.dqs.ro ?? 4) * tiles.dqs.ty;
        for (const [mode, rows] of [['recomputed', 0], ['stored dS', block]] as const) {
          setAttentionChunkRows(rows);
          for (const c of cases) {
            const p = { ...c, scale: 1 };
            assert.equal(attentionChunkRows(webgpuRuntime(), p, block), rows && Math.min(rows, c.l), `${mode}: chunk rows`);
            const ins = attnInputs(c, randn);
            const ref = await runAttention(cpuBackend, c, ins);
            const got = await runAttention(gpu, c, ins);
            ['o', 'lse', 'dq', 'dk', 'dv'].forEach((n, i) => assertClose(got[i], ref[i], 1e-4, `${name}, ${mode}: ${JSON.stringify(c)} ${n}`));
          }
        }
      } finally {
        setAttentionTiles(null);
        setAttentionChunkRows(null);
      }
    });
  }

  test('stored dS: one chunk when the scratch holds every query row, chunks of whole dQ blocks otherwise, recompute below 256 rows', () => {
    const rt = webgpuRuntime();
    const p = (b: number, l: number, h: number) => ({ b, l, s: l, h, hkv: h, d: 64, scale: 1, causal: true });
    const perRow = (b: number, l: number, h: number) => b * h * l * 4;
    const cap = Math.min(rt.maxBindingBytes, 1024 * 2 ** 20);
    // The 125M training shape: 8 x 12 heads x 1024 positions is 403 MB of dS.
    const train = attentionChunkRows(rt, p(8, 1024, 12), 128);
    assert.equal(train, 1024 * perRow(8, 1024, 12) <= cap ? 1024 : Math.floor(cap / perRow(8, 1024, 12) / 128) * 128 || 0);
    // 12 heads x 16k: 786 KB per query row.
    const long = attentionChunkRows(rt, p(1, 16384, 12), 128);
    const want = Math.floor(cap / perRow(1, 16384, 12) / 128) * 128;
    assert.equal(long, want >= 256 ? want : 0);
    assert.equal(long % 128, 0);
    setAttentionChunkRows(0);
    try { assert.equal(attentionChunkRows(rt, p(1, 64, 2), 16), 0, 'forced recompute'); } finally { setAttentionChunkRows(null); }
    setAttentionChunkRows(40);
    try { assert.equal(attentionChunkRows(rt, p(1, 100, 2), 16), 32, 'rounded down to the block'); } finally { setAttentionChunkRows(null); }
  });

  test('default tiles: 8 owned rows only on grids of at least 1024 blocks of 128 rows; prefetch', () => {
    const rt = webgpuRuntime();
    const tile = (pass: AttnPass, d: number, rows: number) => { const t = attentionTile(rt, pass, d, rows); return [t.ro ?? 4, !!t.pf]; };
    assert.deepEqual(tile('fwd', 64, 12 * 16384), [8, true], 'fwd at 12 heads x 16k');
    assert.deepEqual(tile('fwd', 64, 1024 * 128 - 1), [4, true], 'fwd under 1024 blocks');
    assert.deepEqual(tile('fwd', 128, 12 * 4096), [4, true], 'fwd at 12 heads x 4k');
    assert.deepEqual(tile('dq', 64, 12 * 16384), [4, true], 'dq');
    assert.deepEqual(tile('dkv', 64, 12 * 16384), [4, true], 'dkv, D 64, 16k');
    assert.deepEqual(tile('dkv', 128, 12 * 16384), [4, true], 'dkv, D 128, 16k');
    assert.deepEqual(tile('dkv', 256, 12 * 16384), [8, false], 'dkv, D 256, 16k');
    assert.deepEqual(tile('dkv', 128, 12 * 4096), [4, false], 'dkv, D 128, 4k');
    for (const pass of ['fwd', 'dq', 'dkv'] as AttnPass[]) assert.deepEqual(tile(pass, 64, 16383), [4, false], `${pass} on a small grid`);
  });
}
