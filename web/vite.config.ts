// Vite build of the browser playground. The engine is imported straight from src/; the Node-only
// pieces it touches are swapped for browser stand-ins (web/shims): the Node built-ins that Node-only
// modules of the engine import for file access, and Dawn's 'webgpu' package (browsers have navigator.gpu).
// Checkpoint folders under the repository's runs/ are served at /runs/ by the dev and preview
// servers, so a model trained with the CLI loads by URL (e.g. /runs/train-.../model/).
import { createReadStream, existsSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig, type Plugin } from 'vite';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..');
const shim = (name: string) => join(here, 'shims', name);

/** Serves files of the repository's runs/ folder (checkpoints written by the CLI) at /runs/. */
function serveRuns(): Plugin {
  const root = join(repo, 'runs');
  const handler = (req: IncomingMessage, res: ServerResponse, next: () => void) => {
    const url = decodeURIComponent((req.url ?? '').split('?')[0]);
    if (!url.startsWith('/runs/')) return next();
    const path = resolve(root, `.${url.slice('/runs'.length)}`);
    if (!path.startsWith(root + sep) || !existsSync(path) || !statSync(path).isFile()) {
      res.statusCode = 404;
      res.end(`not found: ${url}`);
      return;
    }
    res.setHeader('content-type', path.endsWith('.json') ? 'application/json' : 'application/octet-stream');
    createReadStream(path).pipe(res);
  };
  return {
    name: 'frugal-serve-runs',
    configureServer: (server) => void server.middlewares.use(handler),
    configurePreviewServer: (server) => void server.middlewares.use(handler),
  };
}

export default defineConfig({
  root: here,
  base: './',
  plugins: [serveRuns()],
  resolve: {
    alias: [
      { find: /^node:(fs|module|url|crypto|zlib)$/, replacement: shim('node-unavailable.ts') },
      { find: /^node:path$/, replacement: shim('node-path.ts') },
      { find: /^node:os$/, replacement: shim('node-os.ts') },
      { find: /^webgpu$/, replacement: shim('webgpu-package.ts') },
    ],
  },
  // The engine runs in a module worker (web/worker.ts), bundled with the same aliases as the page.
  worker: { format: 'es' },
  build: {
    outDir: join(here, 'dist'),
    emptyOutDir: true,
    target: 'es2022',
    // The engine is one chunk on purpose: the page needs all of it before it can do anything.
    chunkSizeWarningLimit: 2000,
  },
  server: { host: '127.0.0.1', port: 5173, fs: { allow: [repo] } },
  preview: { host: '127.0.0.1', port: 4173 },
});
