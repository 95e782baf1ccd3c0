// Loads the native CPU addon: the prebuilt binary shipped in the package (prebuilds/<platform>-<arch>/,
// one build for all x86-64 since the AVX-512/AVX2/portable choice is made at run time), or the one
// compiled from source by `npm install` (build/Release), found by node-gyp-build. Each kernel family
// declares the functions it uses in its own file; this module only finds and loads the binary.
// Node built-ins are taken at run time (process.getBuiltinModule), so this module imports nothing
// Node-only and the browser entry can include the CPU backend, which then reports itself unavailable.

type NodeRequire = (id: string) => unknown;
interface NodeProcess {
  versions?: { node?: string };
  platform?: string;
  arch?: string;
  getBuiltinModule?: (id: string) => unknown;
}

const proc = (globalThis as { process?: NodeProcess }).process;

/** The package root: two folders above this file's folder (src|dist)/backend/cpu. */
function packageRoot(getModule: (id: string) => unknown): string {
  const { fileURLToPath } = getModule('node:url') as { fileURLToPath: (u: string) => string };
  const { join, dirname } = getModule('node:path') as { join: (...p: string[]) => string; dirname: (p: string) => string };
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
}

let loaded: Record<string, any> | null = null;
export function nativeAddon(): Record<string, any> {
  if (loaded) return loaded;
  if (!proc?.versions?.node) {
    throw new Error('the native CPU backend is not available in browsers; use WebGPU (device "webgpu")');
  }
  const getModule = proc.getBuiltinModule;
  if (!getModule) throw new Error(`the native CPU backend needs Node >= 20.16 (this is Node ${proc.versions.node})`);
  const { createRequire } = getModule('node:module') as { createRequire: (u: string) => NodeRequire };
  const require = createRequire(import.meta.url);
  const root = packageRoot(getModule);
  const gypBuild = require('node-gyp-build') as { resolve: (dir: string) => string };
  let path: string;
  try {
    path = gypBuild.resolve(root);
  } catch {
    throw new Error(
      `no native CPU addon for ${proc.platform}-${proc.arch}: the package ships prebuilt binaries for linux-x64 only; ` +
      'elsewhere it is compiled at install, which needs a C++17 compiler, make and python3 (then run `npm rebuild frugal-lm`)',
    );
  }
  loaded = require(path) as Record<string, any>;
  return loaded;
}
