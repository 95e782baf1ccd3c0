// Backends register themselves here; ops look them up by device name. No silent fallback: asking for
// an unavailable backend throws with the reason.
import type { Backend, DeviceName } from './types.ts';

const backends = new Map<DeviceName, Backend>();
const unavailable = new Map<DeviceName, string>();

export function registerBackend(b: Backend): void {
  backends.set(b.name, b);
  unavailable.delete(b.name);
}

export function markUnavailable(name: DeviceName, reason: string): void {
  unavailable.set(name, reason);
}

export function getBackend(name: DeviceName): Backend {
  const b = backends.get(name);
  if (b) return b;
  const why = unavailable.get(name);
  throw new Error(
    why
      ? `backend '${name}' is unavailable: ${why}`
      : `backend '${name}' is not initialized (for webgpu call 'await initWebGPU()' first)`,
  );
}

export function hasBackend(name: DeviceName): boolean {
  return backends.has(name);
}
