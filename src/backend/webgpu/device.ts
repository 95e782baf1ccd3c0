// Device acquisition: Dawn through the `webgpu` package in Node, navigator.gpu in browsers. The device
// is requested with the adapter's maximum limits so large buffers and workgroups are usable.
/// <reference types="@webgpu/types" preserve="true" />

export interface AcquireOpts {
  /** 'high-performance' by default. */
  powerPreference?: GPUPowerPreference;
  /** Dawn toggles for create() in Node, e.g. ['enable-dawn-features=allow_unsafe_apis']. */
  dawnOptions?: string[];
  /** Optional features to request where the adapter offers them (e.g. 'chromium-experimental-subgroup-matrix'). */
  features?: string[];
  /**
   * Tensors above this many bytes are stored split into parts of whole rows (default and maximum: the
   * adapter's storage binding limit; a lower value makes small tensors split, for tests).
   */
  maxBindingBytes?: number;
}

export interface Acquired {
  device: GPUDevice;
  adapterName: string;
  /** Releases Node's Dawn instance reference (nothing to do in browsers). */
  gpu: GPU;
}

async function gpuEntry(opts: AcquireOpts): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  if (typeof process === 'undefined' || !process.versions?.node) {
    throw new Error('this browser does not expose navigator.gpu (WebGPU is disabled or unsupported)');
  }
  let mod: { create: (o: string[]) => GPU; globals: object };
  try {
    // Named at run time so bundlers for browsers leave Dawn (an optional Node-only dependency) out.
    const dawn = 'webgpu';
    mod = (await import(/* @vite-ignore */ dawn)) as unknown as typeof mod;
  } catch (e) {
    throw new Error(`the 'webgpu' package (Dawn for Node) could not be loaded: ${(e as Error).message}; run 'npm install webgpu' (an optional dependency of frugal-lm)`);
  }
  // Dawn's classes (GPUBufferUsage, ...) are expected as globals by WebGPU code.
  for (const [k, v] of Object.entries(mod.globals)) {
    if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  }
  return mod.create(opts.dawnOptions ?? []);
}

/**
 * FRUGAL_WEBGPU_SUBGROUP_MATRIX=1 (Node) asks Dawn for its experimental int8 subgroup matrices (tensor
 * cores; used by packed FBI prefill when a self-check passes). Dawn lists the feature only with its
 * unsafe APIs allowed, so the variable turns those on too.
 */
function withEnvFeatures(opts: AcquireOpts): AcquireOpts {
  const env = typeof process !== 'undefined' ? process.env?.FRUGAL_WEBGPU_SUBGROUP_MATRIX : undefined;
  if (env === undefined || env === '' || env === '0') return opts;
  if (env !== '1') throw new Error(`FRUGAL_WEBGPU_SUBGROUP_MATRIX must be 0 or 1, got ${JSON.stringify(env)}`);
  return {
    ...opts,
    dawnOptions: [...new Set([...(opts.dawnOptions ?? []), 'enable-dawn-features=allow_unsafe_apis'])],
    features: [...new Set([...(opts.features ?? []), 'chromium-experimental-subgroup-matrix', 'subgroups'])],
  };
}

/** FRUGAL_WEBGPU_MAX_BINDING=BYTES (Node) lowers the size above which tensors are split (see maxBindingBytes). */
export function withEnvBindingLimit(opts: AcquireOpts): AcquireOpts {
  const env = typeof process !== 'undefined' ? process.env?.FRUGAL_WEBGPU_MAX_BINDING : undefined;
  if (env === undefined || env === '' || opts.maxBindingBytes !== undefined) return opts;
  const v = Number(env);
  if (!Number.isInteger(v) || v < 256) throw new Error(`FRUGAL_WEBGPU_MAX_BINDING must be a byte count >= 256, got ${JSON.stringify(env)}`);
  return { ...opts, maxBindingBytes: v };
}

export async function acquireDevice(options: AcquireOpts = {}): Promise<Acquired> {
  const opts = withEnvFeatures(options);
  const gpu = await gpuEntry(opts);
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
  if (!adapter) {
    const hint = typeof process !== 'undefined' && process.versions?.node
      ? ' (on a machine without a GPU install SwiftShader, e.g. Debian chromium, and set VK_DRIVER_FILES=/usr/lib/chromium/vk_swiftshader_icd.json)'
      : '';
    throw new Error(`no WebGPU adapter was found${hint}`);
  }
  const limits: Record<string, number> = {};
  const wanted = [
    'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup',
    'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupSizeY', 'maxComputeWorkgroupSizeZ', 'maxComputeWorkgroupsPerDimension',
    'maxStorageBuffersPerShaderStage',
  ] as const;
  for (const k of wanted) {
    const v = (adapter.limits as unknown as Record<string, number>)[k];
    if (typeof v === 'number') limits[k] = v;
  }
  const features: GPUFeatureName[] = [];
  if (adapter.features.has('timestamp-query')) features.push('timestamp-query');
  for (const f of opts.features ?? []) if (adapter.features.has(f) && !features.includes(f as GPUFeatureName)) features.push(f as GPUFeatureName);
  const device = await adapter.requestDevice({ requiredLimits: limits, requiredFeatures: features });
  const info = adapter.info;
  const adapterName = [info?.vendor, info?.architecture, info?.description].filter(Boolean).join(' ') || 'unknown adapter';
  return { device, adapterName, gpu };
}
