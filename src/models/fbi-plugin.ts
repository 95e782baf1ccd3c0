// Registers the FBI-Linear kind: with `linear: 'fbi'` every projection of the blocks (q, k, v, o,
// gate, up, down) is binarized; embedding, LM head and norms stay full precision (built elsewhere).
import { FbiLinear } from '../nn/fbi-linear.ts';
import { type LinearPlugin, registerLinear } from './registry.ts';

const latent: LinearPlugin = (cfg, inF, outF, init) => new FbiLinear(inF, outF, { ...init, pattern: cfg.fbiScale });
let override: LinearPlugin | null = null;

/**
 * Builds something (a CausalLM) with another factory for the 'fbi' linears, e.g. linears that run
 * from packed bits, so a serving model never allocates the latent f32 weights.
 */
export function withFbiLinearFactory<T>(factory: LinearPlugin, build: () => T): T {
  const prev = override;
  override = factory;
  try {
    return build();
  } finally {
    override = prev;
  }
}

registerLinear('fbi', (cfg, inF, outF, init) => (override ?? latent)(cfg, inF, outF, init));
