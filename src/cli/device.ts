// --device and --threads, shared by the subcommands that run a model: the CPU thread count is set
// before any kernel runs, and WebGPU is started up front so an unavailable device is one clear error.
import { setCpuThreads } from '../backend/cpu/threads.ts';
import { initWebGPU } from '../backend/webgpu/index.ts';
import type { DeviceName } from '../backend/types.ts';
import { type FlagSpec, type Flags, UsageError } from './args.ts';

export const DEVICE_FLAGS: Record<string, FlagSpec> = {
  device: { type: 'string', arg: 'cpu|webgpu', help: 'where the model runs (webgpu: Dawn on the GPU; an unavailable GPU is an error)', default: 'cpu' },
  threads: { type: 'int', help: 'CPU threads for the native kernels (default: all cores)' },
};

const MAX_THREADS = 1024;

/** Applies --threads and brings up --device; returns the device name. */
export async function useDevice(f: Flags): Promise<DeviceName> {
  const d = String(f.device ?? 'cpu');
  if (d !== 'cpu' && d !== 'webgpu') throw new UsageError(`--device must be cpu or webgpu, got '${d}'`);
  if (f.threads !== undefined) {
    const n = f.threads as number;
    // The system refuses to start absurd numbers of threads (the native pool would abort).
    if (!(Number.isInteger(n) && n >= 1 && n <= MAX_THREADS)) throw new UsageError(`--threads must be an integer from 1 to ${MAX_THREADS}, got ${n}`);
    setCpuThreads(n);
  }
  if (d === 'webgpu') {
    try {
      await initWebGPU();
    } catch (e) {
      throw new UsageError(`--device webgpu is unavailable: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  return d;
}
