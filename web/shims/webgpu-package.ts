// Browser stand-in for the 'webgpu' npm package (Dawn for Node): browsers use navigator.gpu, so this
// is reached only when the browser has no WebGPU, and then says so.
export function create(): never {
  throw new Error('this browser does not expose navigator.gpu: WebGPU is disabled or unsupported (Chrome/Edge 113+, or start Chromium with --enable-unsafe-webgpu)');
}
export const globals = {};
