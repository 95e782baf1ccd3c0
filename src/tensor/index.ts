import { registerBackend } from '../backend/registry.ts';
import { cpuBackend } from '../backend/cpu/index.ts';

registerBackend(cpuBackend);

export * from './tensor.ts';
export * from './autograd.ts';
export * from './scope.ts';
export { Rng } from './rng.ts';
