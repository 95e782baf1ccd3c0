// Fused attention against the plain float64 reference that materializes the softmax
// (src/backend/reference/attention.ts), on every
// dispatch path (child processes rerun this file with FRUGAL_NO_AVX512 / FRUGAL_NO_AVX2), plus a
// central-difference check of the gradients.
// Tolerance: max |native - reference| <= 1e-4 * max(1, max |reference|) per tensor. float32
// storage, float32 accumulation over at most a few hundred terms and the polynomial exp2
// (relative error ~2e-7) stay near 1e-6; a masking or indexing slip moves values by O(1).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { attentionBackward, attentionForward, attentionIsa } from '../../src/backend/cpu/attention.ts';
import { nativeAddon } from '../../src/backend/cpu/native.ts';
import { attentionReferenceBackward, attentionReferenceForward } from '../../src/backend/reference/attention.ts';

interface Shape { B: number; L: number; S: number; H: number; Hkv: number; D: number; causal: boolean; scale?: number }

let seed = 777;
function rand(): number {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 2 ** 31 - 1;
}
const randArray = (n: number) => Float32Array.from({ length: n }, rand);

type Arr = ArrayLike<number>;
const scaleOf = (s: Shape) => s.scale ?? 1 / Math.sqrt(s.D);
const dims = (s: Shape) => ({ b: s.B, l: s.L, s: s.S, h: s.H, hkv: s.Hkv, d: s.D, scale: scaleOf(s), causal: s.causal });
// The float64 reference that materializes the softmax (src/backend/reference/attention.ts).
const refForward = (s: Shape, q: Arr, k: Arr, v: Arr) => attentionReferenceForward(dims(s), q, k, v);
const refBackward = (s: Shape, q: Arr, k: Arr, v: Arr, dO: Arr) => attentionReferenceBackward(dims(s), q, k, v, dO);

function assertClose(name: string, got: Arr, want: Arr, tol = 1e-4): void {
  let scale = 1, worst = 0, at = -1;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]);
    if (!(e <= worst)) { worst = e; at = i; }
  }
  assert.ok(worst <= tol * scale, `${name}: max error ${worst} at ${at} (got ${got[at]}, want ${want[at]}) > ${tol * scale}`);
}

function runNative(s: Shape, q: Float32Array, k: Float32Array, v: Float32Array, dO: Float32Array) {
  const o = new Float32Array(q.length), lse = new Float32Array(s.B * s.H * s.L);
  const dq = new Float32Array(q.length).fill(NaN), dk = new Float32Array(k.length).fill(NaN), dv = new Float32Array(v.length).fill(NaN);
  const scale = scaleOf(s);
  attentionForward(q, k, v, o, lse, s.B, s.L, s.S, s.H, s.Hkv, s.D, scale, s.causal);
  attentionBackward(q, k, v, o, dO, lse, dq, dk, dv, s.B, s.L, s.S, s.H, s.Hkv, s.D, scale, s.causal);
  return { o, lse, dq, dk, dv };
}

const shapes: Shape[] = [
  { B: 2, L: 37, S: 37, H: 4, Hkv: 2, D: 16, causal: true },
  { B: 1, L: 20, S: 70, H: 3, Hkv: 1, D: 64, causal: true },     // prefill after a cache: S != L
  { B: 1, L: 33, S: 50, H: 2, Hkv: 2, D: 80, causal: false },
  { B: 1, L: 130, S: 130, H: 2, Hkv: 1, D: 64, causal: true },   // several query and key blocks
  { B: 1, L: 9, S: 5, H: 4, Hkv: 4, D: 20, causal: false, scale: 0.7 },  // D not a multiple of 16
  // Up to 4 query rows take the per-row decode path (keys and values read in place).
  { B: 1, L: 1, S: 150, H: 4, Hkv: 2, D: 64, causal: true },   // one decoded token against a cache
  { B: 2, L: 3, S: 40, H: 3, Hkv: 1, D: 20, causal: true },    // a few rows, D not a multiple of 16
  { B: 1, L: 4, S: 4, H: 2, Hkv: 2, D: 32, causal: false, scale: 0.3 },
  { B: 1, L: 2, S: 9, H: 2, Hkv: 1, D: 128, causal: true },
  { B: 1, L: 1, S: 5, H: 1, Hkv: 1, D: 16, causal: true },
];

const expectedIsa = process.env.FRUGAL_EXPECT_ISA;
test(`dispatch path is the one asked for (${expectedIsa ?? 'native'})`, () => {
  if (expectedIsa) assert.equal(attentionIsa(), expectedIsa);
  else assert.ok(['avx512', 'avx2', 'scalar'].includes(attentionIsa()));
});

for (const s of shapes) {
  test(`forward and backward match the float64 reference: ${JSON.stringify(s)} (${attentionIsa()})`, () => {
    const q = randArray(s.B * s.L * s.H * s.D), k = randArray(s.B * s.S * s.Hkv * s.D);
    const v = randArray(k.length), dO = randArray(q.length);
    // Larger scores make the softmax peaky, which stresses the running max.
    for (let i = 0; i < q.length; i++) q[i] *= 3;
    const got = runNative(s, q, k, v, dO);
    const ref = refForward(s, q, k, v);
    assertClose('o', got.o, ref.o);
    assertClose('lse', got.lse, ref.lse);
    const g = refBackward(s, q, k, v, dO);
    assertClose('dq', got.dq, g.dq);
    assertClose('dk', got.dk, g.dk);
    assertClose('dv', got.dv, g.dv);
  });
}

test('gradients match central differences of the reference forward', () => {
  const s: Shape = { B: 1, L: 3, S: 5, H: 2, Hkv: 1, D: 3, causal: true };
  const q = randArray(s.L * s.H * s.D), k = randArray(s.S * s.D), v = randArray(s.S * s.D), w = randArray(q.length);
  // loss = sum(o * w), so dL/do = w.
  const loss = (qq: Arr, kk: Arr, vv: Arr) => refForward(s, qq, kk, vv).o.reduce((a, x, i) => a + x * w[i], 0);
  const got = runNative(s, q, k, v, w);
  const h = 1e-5;
  const fd = (which: 0 | 1 | 2) => {
    const base = [Float64Array.from(q), Float64Array.from(k), Float64Array.from(v)];
    const out = new Float64Array(base[which].length);
    for (let i = 0; i < out.length; i++) {
      const x = base[which][i];
      base[which][i] = x + h; const up = loss(base[0], base[1], base[2]);
      base[which][i] = x - h; const dn = loss(base[0], base[1], base[2]);
      base[which][i] = x;
      out[i] = (up - dn) / (2 * h);
    }
    return out;
  };
  // Float64 central differences are exact to ~1e-9 here; the float32 kernel sets the tolerance.
  assertClose('dq vs finite differences', got.dq, fd(0), 1e-5);
  assertClose('dk vs finite differences', got.dk, fd(1), 1e-5);
  assertClose('dv vs finite differences', got.dv, fd(2), 1e-5);
});

test('bad shapes give one clear error', () => {
  const a = new Float32Array(2 * 4 * 8), lse = new Float32Array(8);
  assert.throws(() => attentionForward(a, a, a, a, lse, 1, 4, 4, 2, 3, 8, 1, true), /multiple of Hkv/);
  assert.throws(() => attentionForward(a, a, a, a, lse, 1, 4, 2, 2, 2, 8, 1, true), /causal attention needs S >= L/);
  assert.throws(() => attentionForward(a, a, a, a, new Float32Array(3), 1, 4, 4, 2, 2, 8, 1, true), /lse has 3 elements, expected 8/);
});

const features = nativeAddon().cpuFeatures() as { avx512: boolean; avx2: boolean };
const children: Array<[string, Record<string, string>]> = [];
if (!expectedIsa && features.avx512) children.push([features.avx2 ? 'avx2' : 'scalar', { FRUGAL_NO_AVX512: '1' }]);
if (!expectedIsa && (features.avx512 || features.avx2)) children.push(['scalar', { FRUGAL_NO_AVX512: '1', FRUGAL_NO_AVX2: '1' }]);
for (const [isa, env] of children) {
  test(`the ${isa} path passes the same checks (child process)`, () => {
    // NODE_TEST_CONTEXT would make the child report to this runner instead of running its tests.
    const { NODE_TEST_CONTEXT: _, ...parentEnv } = process.env;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', fileURLToPath(import.meta.url)], {
      env: { ...parentEnv, ...env, FRUGAL_EXPECT_ISA: isa }, encoding: 'utf8',
    });
    assert.equal(r.status, 0, `child with ${JSON.stringify(env)} failed:\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, new RegExp(`# pass ${shapes.length + 3}\\b`), `child did not run its checks:\n${r.stdout}`);
  });
}
