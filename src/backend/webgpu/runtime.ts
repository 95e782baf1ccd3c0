// The command runtime: pipelines (cached by kernel key), one open command encoder that collects
// dispatches and copies until a readback, an upload or a size limit submits it, per-dispatch uniform
// buffers, and a hook that lets a capture (replay.ts) record every command it encodes.
/// <reference types="@webgpu/types" preserve="true" />
import type { DType } from '../types.ts';
import { BufferPool, GpuBuf, splitBuf, splitParts } from './pool.ts';

/**
 * One storage binding: the WGSL name, the array's element type and the access, 'r' read-only or
 * 'w' read-write. `false` in a binding list leaves an optional binding out (the rest renumber).
 */
export type Binding = readonly [name: string, elem: string, access: 'r' | 'w'];

/**
 * A kernel, described once: from `bindings` (and `uniform`) the runtime writes both the WGSL
 * declarations put before `code` and the bind group layout, so the two cannot disagree.
 */
export interface KernelSpec {
  /** Unique per WGSL source: pipelines are cached under it. */
  key: string;
  /** Storage bindings in binding order, declared as `var<storage, read | read_write> NAME: array<ELEM>`. */
  bindings: readonly (Binding | false)[];
  /** Fields of the uniform block, declared as `struct P { ... }` bound as `p` after the storage bindings. */
  uniform?: string;
  /** Builds the WGSL after the declarations (called once per key). */
  code: () => string;
  /** WGSL put before the declarations (`enable` and `diagnostic` directives must come first). */
  directives?: string;
}

function storageBindings(spec: KernelSpec): Binding[] {
  return spec.bindings.filter((b): b is Binding => b !== false);
}

/** The WGSL declarations of a kernel's bindings (group 0, in order, the uniform block last). */
export function bindingDecls(spec: KernelSpec): string {
  const b = storageBindings(spec);
  const lines = b.map(([name, elem, a], i) =>
    `@group(0) @binding(${i}) var<storage, ${a === 'w' ? 'read_write' : 'read'}> ${name}: array<${elem}>;`);
  if (spec.uniform !== undefined) lines.push(`struct P { ${spec.uniform} }`, `@group(0) @binding(${b.length}) var<uniform> p: P;`);
  return lines.join('\n');
}

interface Pipeline { pipeline: GPUComputePipeline; access: string; layout: GPUBindGroupLayout }

/** Host-side meaning of a dispatch's uniform block, for replays that change it (AdamW step and lr). */
/**
 * Marks a dispatch whose uniform block a replay may rewrite: `ReplayOverrides[name]`, when given, is
 * passed to uniformFor and the result replaces the recorded uniform (e.g. an optimizer's step count).
 */
export interface DispatchTag { name: string; uniformFor(over: unknown): Uniform }

export type Command =
  | { kind: 'dispatch'; key: string; pipeline: GPUComputePipeline; group: GPUBindGroup; wg: [number, number, number]; uniform: GPUBuffer | null; tag?: DispatchTag }
  | { kind: 'copy'; src: GPUBuffer; srcOffset: number; dst: GPUBuffer; dstOffset: number; bytes: number }
  | { kind: 'clear'; buf: GPUBuffer; bytes: number };

export interface Recorder {
  commands: Command[];
  /** Uniform buffers owned by the recorded sequence. */
  uniforms: GPUBuffer[];
  /** Scratch buffers owned by the recorded sequence. */
  temps: GpuBuf[];
  /** Index checks recorded in the sequence (their messages stay until the capture is disposed). */
  checkIds: number[];
}

const UNIFORM_BYTES = 256;
const MAX_PENDING = 512;
/** Commands per command buffer when a recorded step is replayed (submitCommands). */
const REPLAY_CHUNK = 128;

/** Packs uniform fields as 32-bit words in declaration order (the WGSL struct must match). */
export class Uniform {
  private readonly words: number[] = [];
  private readonly kinds: ('f' | 'i' | 'u')[] = [];
  f(...v: number[]): this { for (const x of v) { this.words.push(x); this.kinds.push('f'); } return this; }
  i(...v: number[]): this { for (const x of v) { this.words.push(x); this.kinds.push('i'); } return this; }
  u(...v: number[]): this { for (const x of v) { this.words.push(x); this.kinds.push('u'); } return this; }
  bytes(): ArrayBuffer {
    const n = Math.max(4, Math.ceil(this.words.length / 4) * 4);
    const buf = new ArrayBuffer(n * 4);
    const f = new Float32Array(buf), i = new Int32Array(buf), u = new Uint32Array(buf);
    this.words.forEach((w, j) => {
      if (this.kinds[j] === 'f') f[j] = w;
      else if (this.kinds[j] === 'i') i[j] = w;
      else u[j] = w >>> 0;
    });
    return buf;
  }
}

export class Runtime {
  readonly pool: BufferPool;
  private readonly pipelines = new Map<string, Pipeline>();
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private pending = 0;
  private uniformsInFlight: GPUBuffer[] = [];
  private uniformFree: GPUBuffer[] = [];
  private tempsInFlight: GpuBuf[] = [];
  recorder: Recorder | null = null;
  readonly maxWorkgroups: number;
  readonly maxWorkgroupStorage: number;
  readonly maxInvocations: number;
  /** The int8 subgroup-matrix path when the device has it and its self-check passed (see kernels/subgroup-int8.ts). */
  int8Mma: { spelling: 'template' | 'bool'; sg: number } | null = null;
  private lost: string | null = null;
  private error: string | null = null;

  /** Largest buffer bound to a kernel, in bytes; larger tensors are split into parts (see alloc). */
  readonly maxBindingBytes: number;

  constructor(readonly device: GPUDevice, maxBindingBytes?: number) {
    const lim = device.limits;
    const adapterMax = Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize);
    if (maxBindingBytes !== undefined && !(Number.isInteger(maxBindingBytes) && maxBindingBytes >= 256)) {
      throw new Error(`webgpu: maxBindingBytes must be an integer >= 256, got ${maxBindingBytes}`);
    }
    // A multiple of 4 (whole f32/i32 values).
    this.maxBindingBytes = Math.floor(Math.min(adapterMax, maxBindingBytes ?? adapterMax) / 4) * 4;
    this.pool = new BufferPool(device, this.maxBindingBytes);
    this.maxWorkgroups = lim.maxComputeWorkgroupsPerDimension;
    this.maxWorkgroupStorage = lim.maxComputeWorkgroupStorageSize;
    this.maxInvocations = lim.maxComputeInvocationsPerWorkgroup;
    device.lost.then((info) => { this.lost = `${info.reason}: ${info.message}`; });
    // Validation errors are asynchronous: keep the first and raise it at the next readback.
    device.onuncapturederror = (e: GPUUncapturedErrorEvent) => { this.error ??= e.error.message; };
  }

  /**
   * A buffer of `length` values. Above the binding limit it is split into parts holding whole rows of
   * `rowWidth` values (a tensor's last dimension), so row-wise kernels bind one part per dispatch.
   */
  alloc(length: number, dtype: DType, rowWidth = 1): GpuBuf {
    if (this.lost) throw new Error(`webgpu: the device was lost (${this.lost})`);
    if (Math.max(1, length) * 4 <= this.maxBindingBytes) return this.pool.acquire(length, dtype);
    const maxValues = this.maxBindingBytes / 4, w = Math.max(1, rowWidth);
    if (w > maxValues) throw new Error(`webgpu: rows of ${w} values (${w * 4} bytes) exceed this adapter's binding limit of ${this.maxBindingBytes} bytes`);
    const partLength = Math.floor(maxValues / w) * w;
    const parts: GpuBuf[] = [];
    try {
      for (let at = 0; at < length; at += partLength) parts.push(this.pool.acquire(Math.min(partLength, length - at), dtype));
    } catch (e) {
      for (const q of parts) this.pool.release(q);
      throw e;
    }
    return splitBuf(parts, length, dtype, partLength);
  }

  /** b, when it is one buffer: a split tensor (above the binding limit) goes only to the kernels that take parts. */
  whole(b: GpuBuf, what: string): GpuBuf {
    if (b.parts) throw new Error(`webgpu: ${what} cannot take a tensor of ${b.length * 4} bytes, above the adapter's binding limit of ${this.maxBindingBytes} bytes (split tensors go to the PEER, AdamW, sum-of-squares, upload and readback paths only)`);
    return b;
  }

  pipeline(spec: KernelSpec): Pipeline {
    let p = this.pipelines.get(spec.key);
    if (p) return p;
    const access = storageBindings(spec).map((b) => b[2]).join('');
    const entries: GPUBindGroupLayoutEntry[] = [...access].map((a, i) => ({
      binding: i, visibility: GPUShaderStage.COMPUTE, buffer: { type: a === 'w' ? 'storage' : 'read-only-storage' },
    }));
    if (spec.uniform !== undefined) entries.push({ binding: access.length, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } });
    const groupLayout = this.device.createBindGroupLayout({ entries });
    const layout = this.device.createPipelineLayout({ bindGroupLayouts: [groupLayout] });
    const module = this.device.createShaderModule({ code: `${spec.directives ?? ''}${bindingDecls(spec)}\n${spec.code()}`, label: spec.key });
    // The bind group layout is kept: getBindGroupLayout() per dispatch costs several microseconds.
    p = { pipeline: this.device.createComputePipeline({ layout, compute: { module, entryPoint: 'main' }, label: spec.key }), access, layout: groupLayout };
    this.pipelines.set(spec.key, p);
    return p;
  }

  private enc(): GPUCommandEncoder {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    return this.encoder;
  }
  private endPass(): void {
    if (this.pass) { this.pass.end(); this.pass = null; }
  }

  private uniformBuffer(data: ArrayBuffer): GPUBuffer {
    if (data.byteLength > UNIFORM_BYTES) throw new Error('internal: uniform block too large');
    const b = this.recorder ? null : this.uniformFree.pop();
    const u = b ?? this.device.createBuffer({ size: UNIFORM_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    // The buffer is unused by any unsubmitted command, so the queue-ordered write lands before the dispatch.
    this.device.queue.writeBuffer(u, 0, data);
    if (this.recorder) this.recorder.uniforms.push(u);
    else this.uniformsInFlight.push(u);
    return u;
  }

  /** Encodes one dispatch; a read-only binding that aliases a written one is read from a copy. */
  dispatch(spec: KernelSpec, bufs: GpuBuf[], uniform: Uniform | null, wg: [number, number?, number?], tag?: DispatchTag): void {
    const [x, y = 1, z = 1] = wg;
    if (x === 0 || y === 0 || z === 0) return;
    if (x > this.maxWorkgroups || y > this.maxWorkgroups || z > this.maxWorkgroups) {
      throw new Error(`webgpu: ${spec.key} needs ${x}x${y}x${z} workgroups, above this adapter's ${this.maxWorkgroups} per dimension`);
    }
    const { pipeline, access, layout } = this.pipeline(spec);
    if (bufs.length !== access.length || (uniform !== null) !== (spec.uniform !== undefined)) {
      throw new Error(`internal: ${spec.key} declares ${access.length} storage bindings${spec.uniform !== undefined ? ' and a uniform' : ''}, dispatched with ${bufs.length}${uniform ? ' and a uniform' : ''}`);
    }
    for (const b of bufs) this.whole(b, spec.key.split(':')[0]);
    const gpuBufs = bufs.map((b) => b.buffer);
    for (let i = 0; i < bufs.length; i++) {
      if (access[i] !== 'r') continue;
      const clash = bufs.some((o, j) => j !== i && access[j] === 'w' && o.buffer === bufs[i].buffer);
      if (clash) {
        const t = this.temp(bufs[i].length, bufs[i].dtype);
        this.copyBytes(bufs[i].buffer, 0, t.buffer, 0, bufs[i].length * 4);
        gpuBufs[i] = t.buffer;
      }
    }
    const entries: GPUBindGroupEntry[] = gpuBufs.map((b, i) => ({ binding: i, resource: { buffer: b } }));
    const ub = uniform ? this.uniformBuffer(uniform.bytes()) : null;
    if (ub) entries.push({ binding: gpuBufs.length, resource: { buffer: ub } });
    const group = this.device.createBindGroup({ layout, entries });
    this.encodeDispatch(pipeline, group, [x, y, z]);
    this.recorder?.commands.push({ kind: 'dispatch', key: spec.key, pipeline, group, wg: [x, y, z], uniform: ub, tag });
    this.tick();
  }

  private encodeDispatch(p: GPUComputePipeline, g: GPUBindGroup, wg: [number, number, number]): void {
    if (!this.pass) this.pass = this.enc().beginComputePass();
    this.pass.setPipeline(p);
    this.pass.setBindGroup(0, g);
    this.pass.dispatchWorkgroups(wg[0], wg[1], wg[2]);
  }

  copyBytes(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    if (bytes === 0) return;
    this.endPass();
    this.enc().copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
    this.recorder?.commands.push({ kind: 'copy', src, srcOffset, dst, dstOffset, bytes });
    this.tick();
  }

  clear(b: GpuBuf): void {
    if (b.parts) { for (const q of b.parts) this.clear(q); return; }
    this.endPass();
    this.enc().clearBuffer(b.buffer, 0, b.bytes);
    this.recorder?.commands.push({ kind: 'clear', buf: b.buffer, bytes: b.bytes });
    this.tick();
  }

  /** A scratch buffer that returns to the pool once the current commands are submitted. */
  temp(length: number, dtype: DType): GpuBuf {
    const t = this.alloc(length, dtype);
    if (this.recorder) this.recorder.temps.push(t);
    else this.tempsInFlight.push(t);
    return t;
  }

  private tick(): void {
    if (++this.pending >= MAX_PENDING && !this.recorder) this.flush();
  }

  get hasPending(): boolean {
    return this.encoder !== null;
  }

  /** Submits everything encoded so far. */
  flush(): void {
    if (!this.encoder) return;
    this.endPass();
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.pending = 0;
    this.uniformFree.push(...this.uniformsInFlight);
    this.uniformsInFlight = [];
    for (const t of this.tempsInFlight) this.pool.release(t);
    this.tempsInFlight = [];
  }

  /** Re-encodes recorded commands and submits them, REPLAY_CHUNK commands per command buffer. */
  submitCommands(cmds: Command[]): void {
    this.flush();
    // Submitted in command buffers of REPLAY_CHUNK commands: the GPU runs the first ones while the
    // rest are encoded, instead of idling until the whole step is.
    for (let i0 = 0; i0 < cmds.length; i0 += REPLAY_CHUNK) {
      const enc = this.device.createCommandEncoder();
      let pass: GPUComputePassEncoder | null = null;
      for (const c of cmds.slice(i0, i0 + REPLAY_CHUNK)) {
        if (c.kind === 'dispatch') {
          if (!pass) pass = enc.beginComputePass();
          pass.setPipeline(c.pipeline);
          pass.setBindGroup(0, c.group);
          pass.dispatchWorkgroups(c.wg[0], c.wg[1], c.wg[2]);
          continue;
        }
        if (pass) { pass.end(); pass = null; }
        if (c.kind === 'copy') enc.copyBufferToBuffer(c.src, c.srcOffset, c.dst, c.dstOffset, c.bytes);
        else enc.clearBuffer(c.buf, 0, c.bytes);
      }
      if (pass) pass.end();
      this.device.queue.submit([enc.finish()]);
    }
  }

  write(b: GpuBuf, data: ArrayBufferView, dstOffsetBytes = 0): void {
    // Pending commands may still read this storage: submit them first so the write is ordered after.
    this.flush();
    if (!b.parts) {
      this.device.queue.writeBuffer(b.buffer, dstOffsetBytes, data.buffer, data.byteOffset, data.byteLength);
      return;
    }
    // Split storage: each part gets the overlapping byte range.
    const end = dstOffsetBytes + data.byteLength;
    for (const q of splitParts(b)) {
      const lo = Math.max(dstOffsetBytes, q.start * 4), hi = Math.min(end, (q.start + q.length) * 4);
      if (hi <= lo) continue;
      this.device.queue.writeBuffer(q.buf.buffer, lo - q.start * 4, data.buffer, data.byteOffset + lo - dstOffsetBytes, hi - lo);
    }
  }

  // Validation (Backend.raiseIf): each check's result (count, position, value) is merged on the
  // device into one accumulator that keeps the first failure and its check id, so pending checks
  // hold no buffers. The next read maps the accumulator with the data and raises that check's
  // message. Messages of checks recorded in a captured step are kept (a replay merges them again).
  private checkAcc: GpuBuf | null = null;
  private checkSeq = 1;
  private readonly messages = new Map<number, (value: number) => string>();
  private readonly pinnedMessages = new Map<number, (value: number) => string>();
  deferCheck(found: GpuBuf, message: (value: number) => string): void {
    if (!this.checkAcc) {
      this.checkAcc = this.alloc(4, 'i32');
      this.clear(this.checkAcc);
    }
    const id = this.checkSeq++;
    if (this.recorder) {
      this.pinnedMessages.set(id, message);
      this.recorder.checkIds.push(id);
    } else {
      this.messages.set(id, message);
      // Many checks without a readback: keep the newest messages (a dropped one reads generically).
      if (this.messages.size > 4096) this.messages.delete(this.messages.keys().next().value!);
    }
    this.dispatch({ key: 'mergeCheck', bindings: [['F', 'i32', 'r'], ['A', 'i32', 'w']], uniform: 'id: i32', code: () => `
@compute @workgroup_size(1)
fn main() {
  if (A[0] == 0 && F[0] > 0) { A[0] = F[0]; A[1] = F[1]; A[2] = F[2]; A[3] = p.id; }
}` }, [found, this.checkAcc], new Uniform().i(id), [1]);
  }

  /** Drops the messages of a disposed capture's checks. */
  unpinChecks(ids: readonly number[]): void {
    for (const id of ids) this.pinnedMessages.delete(id);
  }

  async read(b: GpuBuf): Promise<Float32Array | Int32Array> {
    if (b.parts) {
      // Split storage: part by part (a staging buffer is bounded like any other), into one array.
      const out = b.dtype === 'f32' ? new Float32Array(b.length) : new Int32Array(b.length);
      for (const q of splitParts(b)) out.set(await this.read(q.buf), q.start);
      return out;
    }
    const acc = this.checkAcc, upTo = this.checkSeq;
    const all = await this.readMany(acc ? [acc, b] : [b]);
    if (acc) {
      const [count, , value, id] = all[0];
      // Checks merged before the copy are settled; later ones (other tasks) stay pending.
      for (const k of [...this.messages.keys()]) if (k < upTo && k !== id) this.messages.delete(k);
      if (count > 0) {
        const message = this.messages.get(id) ?? this.pinnedMessages.get(id);
        this.messages.delete(id);
        this.clear(acc);
        throw new Error(message ? message(value) : `an index check failed (value ${value})`);
      }
    }
    return all[all.length - 1];
  }

  /** Copies several buffers into one staging buffer and maps it once. */
  private async readMany(bufs: GpuBuf[]): Promise<(Float32Array | Int32Array)[]> {
    const offsets: number[] = [];
    let total = 0;
    for (const b of bufs) { offsets.push(total); total += b.length * 4; }
    const staging = this.device.createBuffer({ size: Math.max(4, total), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.flush();
    const enc = this.device.createCommandEncoder();
    bufs.forEach((b, i) => { if (b.length) enc.copyBufferToBuffer(b.buffer, 0, staging, offsets[i], b.length * 4); });
    this.device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    if (this.error) { staging.destroy(); throw new Error(`webgpu: a kernel failed: ${this.error}`); }
    const copy = staging.getMappedRange().slice(0);
    staging.unmap();
    staging.destroy();
    return bufs.map((b, i) => (b.dtype === 'f32' ? new Float32Array(copy, offsets[i], b.length) : new Int32Array(copy, offsets[i], b.length)));
  }

  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    // Raises a failed index check, if any (reading the accumulator alone).
    if (this.checkAcc) await this.read(this.checkAcc);
  }

  /** Workgroup grid for `groups` workgroups: x up to the per-dimension limit, the rest in y. */
  grid(groups: number): [number, number] {
    if (groups <= this.maxWorkgroups) return [Math.max(groups, 0), 1];
    const y = Math.ceil(groups / this.maxWorkgroups);
    return [Math.ceil(groups / y), y];
  }
}
