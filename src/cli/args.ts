// Flag parsing for the subcommands: typed flags with defaults and help text, `--name value` or
// `--name=value`, and errors that name the flag and what it accepts.
export type FlagType = 'string' | 'number' | 'int' | 'bool';
export interface FlagSpec {
  type: FlagType;
  help: string;
  default?: string | number | boolean;
  /** Placeholder shown in help (e.g. DIR). */
  arg?: string;
}
export interface CommandSpec {
  name: string;
  summary: string;
  usage: string;
  flags: Record<string, FlagSpec>;
  /** Names of positional arguments; more are refused. */
  positionals?: string[];
}

/** A mistake in how the command was called or in the files it was given: exit code 2, one line. */
export class UsageError extends Error {}

export type Flags = Record<string, string | number | boolean | undefined>;

/** Flags the user typed (as opposed to defaults), per parsed flag set. */
const EXPLICIT = new WeakMap<Flags, Set<string>>();
export function explicitFlags(flags: Flags): Set<string> {
  return EXPLICIT.get(flags) ?? new Set(Object.keys(flags).filter((k) => flags[k] !== undefined));
}

export function helpText(spec: CommandSpec): string {
  const lines = [`frugal ${spec.name}: ${spec.summary}`, '', `usage: ${spec.usage}`, '', 'options:'];
  const rows = Object.entries(spec.flags).map(([k, f]) => {
    const left = `  --${k}${f.type === 'bool' ? '' : ` ${f.arg ?? f.type.toUpperCase()}`}`;
    const def = f.default !== undefined && f.type !== 'bool' ? ` (default ${f.default})` : '';
    return [left, `${f.help}${def}`];
  });
  rows.push(['  --help', 'show this help']);
  const w = Math.max(...rows.map((r) => r[0].length)) + 2;
  for (const [l, r] of rows) lines.push(l.padEnd(w) + r);
  return lines.join('\n');
}

export function parseArgs(spec: CommandSpec, argv: string[]): { flags: Flags; positional: string[]; help: boolean } {
  const flags: Flags = {};
  const positional: string[] = [];
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      help = true;
      continue;
    }
    if (!a.startsWith('--')) {
      positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
    const f = spec.flags[name];
    if (!f) throw new UsageError(`unknown option --${name} for '${spec.name}'; see frugal ${spec.name} --help`);
    let raw: string | undefined = eq >= 0 ? a.slice(eq + 1) : undefined;
    if (f.type === 'bool') {
      if (raw !== undefined && raw !== 'true' && raw !== 'false') throw new UsageError(`--${name} takes no value (or =true/=false), got '${raw}'`);
      flags[name] = raw !== 'false';
      continue;
    }
    if (raw === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(`--${name} needs a value (${f.arg ?? f.type})`);
      raw = argv[++i];
    }
    flags[name] = convert(name, f, raw);
  }
  if (!help && positional.length > (spec.positionals?.length ?? 0)) {
    throw new UsageError(`unexpected argument '${positional[spec.positionals?.length ?? 0]}' for '${spec.name}'; see frugal ${spec.name} --help`);
  }
  EXPLICIT.set(flags, new Set(Object.keys(flags)));
  for (const [k, f] of Object.entries(spec.flags)) if (flags[k] === undefined && f.default !== undefined) flags[k] = f.default;
  return { flags, positional, help };
}

function convert(name: string, f: FlagSpec, raw: string): string | number {
  if (f.type === 'string') return raw;
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v)) throw new UsageError(`--${name} must be a number, got '${raw}'`);
  if (f.type === 'int' && !Number.isInteger(v)) throw new UsageError(`--${name} must be an integer, got '${raw}'`);
  return v;
}

/** Typed accessors that fail with the flag's name. */
export function str(flags: Flags, k: string): string | undefined {
  return flags[k] as string | undefined;
}
export function need(flags: Flags, k: string, cmd: string): string {
  const v = flags[k];
  if (v === undefined || v === '') throw new UsageError(`frugal ${cmd} needs --${k}; see frugal ${cmd} --help`);
  return String(v);
}
export function num(flags: Flags, k: string, check?: (v: number) => boolean, what = 'a valid value'): number {
  const v = flags[k] as number;
  if (check && !check(v)) throw new UsageError(`--${k} must be ${what}, got ${v}`);
  return v;
}
export const positive = (v: number) => v > 0;
export const nonNegative = (v: number) => v >= 0;
