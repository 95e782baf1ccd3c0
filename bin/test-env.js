// What the WebGPU and browser tests need on a machine that has only Node and npm: a Vulkan driver for
// Dawn and a headless Chromium. A machine with a GPU, a system SwiftShader (Debian's chromium) or an
// explicit VK_DRIVER_FILES / FRUGAL_CHROMIUM keeps using that; otherwise both come from the npm package
// @sparticuz/chromium (a dev dependency), whose brotli-compressed SwiftShader (CPU Vulkan) and
// Chromium are unpacked once with Node's own zlib.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliDecompressSync } from 'node:zlib';

const SYSTEM_SWIFTSHADER = '/usr/lib/chromium/vk_swiftshader_icd.json';
const SYSTEM_CHROMIUM = '/usr/bin/chromium';

const REPO = dirname(dirname(fileURLToPath(import.meta.url)));

function sparticuzBin() {
  const bin = join(REPO, 'node_modules', '@sparticuz', 'chromium', 'bin');
  return existsSync(bin) ? bin : null;
}

/** Files of a ustar archive (regular files only), name -> bytes. */
function untar(buf) {
  const files = new Map();
  for (let off = 0; off + 512 <= buf.length;) {
    const header = buf.subarray(off, off + 512);
    if (header.every((b) => b === 0)) break;
    const field = (a, n) => header.subarray(a, a + n).toString('latin1').replace(/\0.*$/s, '');
    const size = parseInt(field(124, 12).trim() || '0', 8);
    const name = (field(345, 155) ? `${field(345, 155)}/` : '') + field(0, 100);
    const type = field(156, 1) || '0';
    if (type === '0') files.set(name.replace(/^\.\//, ''), buf.subarray(off + 512, off + 512 + size));
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return files;
}

/** Unpacks SwiftShader once into node_modules/.cache; returns its folder or null. */
function unpackSwiftshader() {
  const bin = sparticuzBin();
  if (!bin || !existsSync(join(bin, 'swiftshader.tar.br'))) return null;
  const dir = join(REPO, 'node_modules', '.cache', 'frugal-swiftshader');
  if (existsSync(join(dir, 'vk_swiftshader_icd.json'))) return dir;
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  for (const [name, bytes] of untar(brotliDecompressSync(readFileSync(join(bin, 'swiftshader.tar.br'))))) {
    writeFileSync(join(tmp, name.split('/').pop()), bytes, { mode: 0o755 });
  }
  try {
    renameSync(tmp, dir);
  } catch {
    rmSync(tmp, { recursive: true, force: true }); // another process unpacked it first
  }
  return dir;
}

/** True when Dawn finds an adapter with the given environment (a real GPU or a configured driver). */
function dawnFindsAdapter(env) {
  const probe = "import('webgpu').then(async (m) => { const a = await m.create([]).requestAdapter(); process.exit(a ? 0 : 3); }).catch(() => process.exit(4));";
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', probe], { env, timeout: 60_000, stdio: 'ignore' });
  return r.status === 0;
}

/** Environment for the WebGPU pass: adds VK_DRIVER_FILES/LD_LIBRARY_PATH for SwiftShader when needed. */
export function webgpuEnv(base = process.env) {
  const env = { ...base, XDG_RUNTIME_DIR: base.XDG_RUNTIME_DIR ?? '/tmp' };
  if (env.VK_DRIVER_FILES) return { env, driver: `VK_DRIVER_FILES=${env.VK_DRIVER_FILES}` };
  if (existsSync(SYSTEM_SWIFTSHADER)) return { env: { ...env, VK_DRIVER_FILES: SYSTEM_SWIFTSHADER }, driver: 'system SwiftShader' };
  if (dawnFindsAdapter(env)) return { env, driver: "the machine's own Vulkan driver" };
  const dir = unpackSwiftshader();
  if (!dir) return { env, driver: 'none found (install @sparticuz/chromium or a Vulkan driver)' };
  const lib = env.LD_LIBRARY_PATH ? `${dir}:${env.LD_LIBRARY_PATH}` : dir;
  return { env: { ...env, VK_DRIVER_FILES: join(dir, 'vk_swiftshader_icd.json'), LD_LIBRARY_PATH: lib }, driver: `SwiftShader from @sparticuz/chromium (${dir})` };
}

/** Path of a headless Chromium for the browser tests (FRUGAL_CHROMIUM, Debian's, or @sparticuz/chromium's). */
export async function chromiumPath(base = process.env) {
  if (base.FRUGAL_CHROMIUM) return base.FRUGAL_CHROMIUM;
  if (existsSync(SYSTEM_CHROMIUM)) return SYSTEM_CHROMIUM;
  if (!sparticuzBin()) return null;
  const { default: chromium } = await import('@sparticuz/chromium');
  return chromium.executablePath();
}
