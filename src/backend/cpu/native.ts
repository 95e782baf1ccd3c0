// Loads the native CPU addon built by `npm install` (node-gyp). Each kernel family declares the
// functions it uses in its own file; this module only finds and loads the binary.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const candidates = [join(root, 'build', 'Release', 'frugal.node'), join(root, 'build', 'Debug', 'frugal.node')];

let loaded: Record<string, any> | null = null;
export function nativeAddon(): Record<string, any> {
  if (loaded) return loaded;
  const path = candidates.find((p) => existsSync(p));
  if (!path) throw new Error('the native CPU addon is not built: run `npm install` (needs g++, make, python3)');
  loaded = createRequire(import.meta.url)(path) as Record<string, any>;
  return loaded;
}
