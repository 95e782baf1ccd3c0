// The WGSL declarations a kernel's binding list produces (no GPU needed): storage bindings numbered in
// list order with left-out optional ones skipped, read-only vs read-write from the access letter, and
// the uniform block after the storage bindings. The pipeline layout is built from the same list
// (runtime.ts), so these numbers are the ones the bind group uses.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bindingDecls, type KernelSpec } from '../../src/backend/webgpu/runtime.ts';

const spec = (withBias: boolean, uniform?: string): KernelSpec => ({
  key: 'k', uniform, code: () => '',
  bindings: [['X', 'f32', 'r'], withBias && ['BIAS', 'vec4<f32>', 'r'], ['O', 'i32', 'w']],
});

test('storage bindings are numbered in order, optional ones left out, uniform last', () => {
  assert.deepEqual(bindingDecls(spec(true, 'n: u32, alpha: f32')).split('\n'), [
    '@group(0) @binding(0) var<storage, read> X: array<f32>;',
    '@group(0) @binding(1) var<storage, read> BIAS: array<vec4<f32>>;',
    '@group(0) @binding(2) var<storage, read_write> O: array<i32>;',
    'struct P { n: u32, alpha: f32 }',
    '@group(0) @binding(3) var<uniform> p: P;',
  ]);
  assert.deepEqual(bindingDecls(spec(false, 'n: u32')).split('\n'), [
    '@group(0) @binding(0) var<storage, read> X: array<f32>;',
    '@group(0) @binding(1) var<storage, read_write> O: array<i32>;',
    'struct P { n: u32 }',
    '@group(0) @binding(2) var<uniform> p: P;',
  ]);
});

test('a kernel without a uniform block declares none', () => {
  const d = bindingDecls(spec(false));
  assert.equal(d.includes('uniform'), false);
  assert.equal(d.split('\n').length, 2);
});
