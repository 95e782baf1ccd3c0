// frugal pack: stores an FBI model with its binarized weights as packed sign bits.
import { type CommandSpec, type Flags, UsageError } from './args.ts';

export const spec: CommandSpec = {
  name: 'pack',
  summary: 'pack an FBI checkpoint into the 1-bit serving format (sign bits + scales)',
  usage: 'frugal pack --model DIR --out DIR',
  flags: {
    model: { type: 'string', arg: 'DIR', help: 'FBI checkpoint folder' },
    out: { type: 'string', arg: 'DIR', help: 'folder for the packed model' },
  },
};

export async function run(_f: Flags): Promise<number> {
  throw new UsageError('pack: not available in this build (the packed 1-bit model format is not built in yet)');
}
