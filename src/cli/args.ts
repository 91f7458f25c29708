// Command-line options: `--name value`, `--name=value`, short aliases (`-o file`), and
// boolean flags. Every value is checked here, so a typo is a usage error (exit 2) before
// anything is loaded or computed.

/** A mistake in the command line: printed with the command's usage, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export type OptionSpec =
  | { type: 'flag'; alias?: string; help: string }
  | { type: 'int'; alias?: string; help: string; min?: number; max?: number; default?: number; metavar?: string }
  | {
      type: 'number';
      alias?: string;
      help: string;
      min?: number;
      max?: number;
      minExclusive?: boolean;
      default?: number;
      metavar?: string;
    }
  | { type: 'string'; alias?: string; help: string; default?: string; metavar?: string }
  | { type: 'choice'; alias?: string; help: string; choices: readonly string[]; default?: string; metavar?: string };

export type OptionSpecs = Record<string, OptionSpec>;

export type ParsedOptions = Record<string, string | number | boolean | undefined>;

function checkInt(flag: string, value: string, spec: { min?: number; max?: number }): number {
  // Number('') is 0 and Number('1e3') is 1000: insist on plain digits.
  if (!/^-?\d+$/.test(value)) throw new UsageError(`${flag} must be an integer, got ${JSON.stringify(value)}`);
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new UsageError(`${flag} is too large: ${value}`);
  if (spec.min !== undefined && n < spec.min) throw new UsageError(`${flag} must be >= ${spec.min}, got ${n}`);
  if (spec.max !== undefined && n > spec.max) throw new UsageError(`${flag} must be <= ${spec.max}, got ${n}`);
  return n;
}

function checkNumber(
  flag: string,
  value: string,
  spec: { min?: number; max?: number; minExclusive?: boolean },
): number {
  const n = value.trim() === '' ? NaN : Number(value);
  if (!Number.isFinite(n)) throw new UsageError(`${flag} must be a number, got ${JSON.stringify(value)}`);
  if (spec.min !== undefined && (spec.minExclusive ? n <= spec.min : n < spec.min)) {
    throw new UsageError(`${flag} must be ${spec.minExclusive ? '>' : '>='} ${spec.min}, got ${n}`);
  }
  if (spec.max !== undefined && n > spec.max) throw new UsageError(`${flag} must be <= ${spec.max}, got ${n}`);
  return n;
}

/** Parses `argv` against `specs` (keys are the long names without `--`). Defaults are filled in. */
export function parseOptions(
  argv: readonly string[],
  specs: OptionSpecs,
): { options: ParsedOptions; positional: string[] } {
  const options: ParsedOptions = {};
  const positional: string[] = [];
  const byAlias = new Map<string, string>();
  for (const [name, spec] of Object.entries(specs)) if (spec.alias) byAlias.set(spec.alias, name);

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-' || /^-\d/.test(arg)) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const flag = eq >= 0 ? arg.slice(0, eq) : arg;
    const name = flag.startsWith('--') ? flag.slice(2) : byAlias.get(flag.slice(1));
    const spec = name !== undefined ? specs[name] : undefined;
    if (name === undefined || spec === undefined) {
      const known = Object.keys(specs).map((k) => `--${k}`);
      const close = known.find((k) => k.startsWith(flag) || flag.startsWith(k));
      throw new UsageError(`unknown option ${JSON.stringify(flag)}${close ? ` (did you mean ${close}?)` : ''}`);
    }
    const label = `--${name}`;
    if (spec.type === 'flag') {
      if (eq >= 0) throw new UsageError(`${label} takes no value`);
      options[name] = true;
      continue;
    }
    let value: string | undefined;
    if (eq >= 0) value = arg.slice(eq + 1);
    else {
      value = argv[++i];
      if (value === undefined || (value.startsWith('--') && value.length > 2))
        throw new UsageError(`${label} needs a value`);
    }
    if (options[name] !== undefined) throw new UsageError(`${label} was given twice`);
    switch (spec.type) {
      case 'int':
        options[name] = checkInt(label, value, spec);
        break;
      case 'number':
        options[name] = checkNumber(label, value, spec);
        break;
      case 'choice':
        if (!spec.choices.includes(value))
          throw new UsageError(`${label} must be one of ${spec.choices.join(', ')}, got ${JSON.stringify(value)}`);
        options[name] = value;
        break;
      default:
        if (value === '') throw new UsageError(`${label} needs a non-empty value`);
        options[name] = value;
    }
  }
  for (const [name, spec] of Object.entries(specs)) {
    if (options[name] === undefined && spec.type !== 'flag' && spec.default !== undefined) options[name] = spec.default;
  }
  return { options, positional };
}

/** The options part of a help text, one line per option. */
export function describeOptions(specs: OptionSpecs): string {
  const rows = Object.entries(specs).map(([name, spec]) => {
    const metavar =
      spec.type === 'flag'
        ? ''
        : spec.type === 'choice'
          ? ` ${spec.metavar ?? spec.choices.join('|')}`
          : ` ${spec.metavar ?? (spec.type === 'string' ? 'VALUE' : 'N')}`;
    const left = `${spec.alias ? `-${spec.alias}, ` : '    '}--${name}${metavar}`;
    const def = spec.type !== 'flag' && spec.default !== undefined ? ` (default ${spec.default})` : '';
    return [left, `${spec.help}${def}`] as const;
  });
  const width = Math.min(34, Math.max(...rows.map(([l]) => l.length)) + 2);
  return rows
    .map(([l, r]) => `  ${l.padEnd(width)}${l.length >= width ? `\n  ${''.padEnd(width)}` : ''}${r}`)
    .join('\n');
}
