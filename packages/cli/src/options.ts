// Command-line options: one spec per option, read from flags and from a YAML or JSON config file
// (flags win), type-checked by name, with a help text that shows every default.
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { LineCounter, parseDocument, isMap, isScalar, type Pair } from 'yaml';
import { PosttrainError, describeValue } from '@posttrain/tensor-core';

/** The value types an option can take. `?` allows null (written `null` or `none`). */
export type OptionType = 'number' | 'integer' | 'boolean' | 'string' | 'numbers' | 'strings' | 'number?' | 'integer?' | 'string?' | 'numbers?';

/** One option of a command. */
export interface OptionSpec {
  /** camelCase name: the config key; the flag is its kebab-case (`maxSteps` → `--max-steps`). */
  name: string;
  type: OptionType;
  /** undefined: not set (the library's own default applies). */
  default?: unknown;
  /** One line for `--help`. */
  description?: string;
  /** The allowed values of a string option. */
  choices?: readonly string[];
  /** Must be given (by flag or config). */
  required?: boolean;
  /** Section of `--help` the option is listed under. */
  group?: string;
}

/** A parse failure: the message names the option, what was expected and what was received. */
export class UsageError extends PosttrainError {
  constructor(message: string, help?: string) {
    super('INVALID_OPTION', message, help ? { help } : {});
    this.name = 'UsageError';
  }
}

/** `maxSteps` → `max-steps`. */
export function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** `max-steps`, `max_steps` or `maxSteps` → `maxSteps`. */
export function camel(name: string): string {
  return name.replace(/[-_]+([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** Edit distance with adjacent transpositions (optimal string alignment), for "did you mean". */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The candidate nearest to `word` when it is close enough to be a likely typo (distance ≤ max(2, ⅓ of its length)). */
export function nearest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

const expectedOf: Record<OptionType, string> = {
  number: 'a number',
  integer: 'an integer',
  boolean: 'true or false',
  string: 'a string',
  numbers: 'a list of numbers',
  strings: 'a list of strings',
  'number?': 'a number or null',
  'integer?': 'an integer or null',
  'string?': 'a string or null',
  'numbers?': 'a list of numbers or null',
};

/** A value's type in words, for "got …". */
function received(value: unknown): string {
  return `${describeValue(value)} (${value === null ? 'null' : Array.isArray(value) ? 'a list' : typeof value})`;
}

/**
 * Checks (from a config file) or converts (from a flag's text) `value` to `spec`'s type; throws a
 * {@link UsageError} naming `where` (e.g. `--lr` or `config.yaml: lr (line 3)`).
 */
export function coerce(spec: OptionSpec, value: unknown, where: string, fromText: boolean): unknown {
  const fail = (): never => {
    const choices = spec.choices ? ` (one of ${spec.choices.join(', ')})` : '';
    throw new UsageError(`${where}: expected ${expectedOf[spec.type]}${choices}; got ${received(value)}`);
  };
  const nullable = spec.type.endsWith('?');
  const base = spec.type.replace('?', '') as 'number' | 'integer' | 'boolean' | 'string' | 'numbers' | 'strings';
  if (value === null || (fromText && nullable && (value === 'null' || value === 'none'))) return nullable ? null : fail();
  const one = (v: unknown, kind: 'number' | 'integer' | 'string'): unknown => {
    if (kind === 'string') return typeof v === 'string' || (fromText && typeof v === 'number') ? String(v) : fail();
    const n = typeof v === 'number' ? v : fromText && typeof v === 'string' && v.trim() !== '' ? Number(v) : Number.NaN;
    if (!Number.isFinite(n) || (kind === 'integer' && !Number.isInteger(n))) fail();
    return n;
  };
  switch (base) {
    case 'boolean':
      if (typeof value === 'boolean') return value;
      if (fromText && (value === 'true' || value === 'false')) return value === 'true';
      return fail();
    case 'number':
    case 'integer':
      return one(value, base);
    case 'string': {
      const s = one(value, 'string') as string;
      if (spec.choices && !spec.choices.includes(s)) fail();
      return s;
    }
    case 'numbers':
    case 'strings': {
      const items = Array.isArray(value) ? value : fromText && typeof value === 'string' ? value.split(',').map((s) => s.trim()) : fail();
      return (items as unknown[]).map((v) => one(v, base === 'numbers' ? 'number' : 'string'));
    }
  }
}

/** What {@link readConfigFile} returns: each key (camelCase) with its value and line. */
export type ConfigEntries = Map<string, { value: unknown; key: string; line: number | undefined }>;

/**
 * Reads a YAML (`.yaml`, `.yml`) or JSON (`.json`) config file: a mapping of option names (camelCase,
 * snake_case or kebab-case) to values. A syntax error names the file, line and column.
 */
export function readConfigFile(path: string): ConfigEntries {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(`--config: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, 'give the path of a YAML or JSON file');
  }
  const ext = extname(path).toLowerCase();
  const entries: ConfigEntries = new Map();
  if (ext === '.json') {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      const message = (error as Error).message;
      const at = /position (\d+)/.exec(message);
      const offset = at ? Number(at[1]) : undefined;
      const where = offset === undefined ? '' : `:${lineColumn(text, offset).join(':')}`;
      throw new UsageError(`${path}${where}: invalid JSON (${message})`);
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new UsageError(`${path}: expected a JSON object of options; got ${received(value)}`);
    for (const [key, v] of Object.entries(value)) entries.set(camel(key), { value: v, key, line: undefined });
    return entries;
  }
  if (ext !== '.yaml' && ext !== '.yml') throw new UsageError(`--config: expected a .yaml, .yml or .json file; got ${path}`);
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  if (doc.errors.length > 0) {
    const error = doc.errors[0];
    const pos = error.linePos?.[0] ?? lines.linePos(error.pos[0]);
    throw new UsageError(`${path}:${pos.line}:${pos.col}: YAML syntax error: ${error.message.split('\n')[0]}`);
  }
  if (doc.contents === null) return entries;
  if (!isMap(doc.contents)) throw new UsageError(`${path}: expected a mapping of option names to values; got ${received(doc.toJS())}`);
  for (const pair of doc.contents.items as Pair[]) {
    const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
    const line = isScalar(pair.key) && pair.key.range ? lines.linePos(pair.key.range[0]).line : undefined;
    const value =
      pair.value && typeof (pair.value as { toJSON?: unknown }).toJSON === 'function' ? (pair.value as { toJSON(): unknown }).toJSON() : isScalar(pair.value) ? pair.value.value : pair.value;
    entries.set(camel(key), { value: value ?? null, key, line });
  }
  return entries;
}

function lineColumn(text: string, offset: number): [number, number] {
  const before = text.slice(0, offset).split('\n');
  return [before.length, before[before.length - 1].length + 1];
}

/** What {@link parseOptions} returns: each option's value (absent: not set) and which flags were given. */
export interface ParsedOptions {
  values: Record<string, unknown>;
  /** Names given on the command line or in the config file. */
  given: Set<string>;
  /** `--help` was asked for. */
  help: boolean;
}

/**
 * Parses `argv` (after the command) against `specs`: `--name value`, `--name=value`, `--flag` /
 * `--no-flag` for booleans, repeated flags for lists, and `--config file` whose entries come first
 * (flags override them). Unknown flags and config keys are rejected by name with the nearest
 * option suggested; values are type-checked; required options are checked last.
 */
export function parseOptions(command: string, specs: readonly OptionSpec[], argv: readonly string[]): ParsedOptions {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const flagNames = specs.map((s) => `--${kebab(s.name)}`);
  const values: Record<string, unknown> = {};
  const given = new Set<string>();
  const fromFlags: Record<string, unknown> = {};
  let help = false;
  let config: string | undefined;
  const lists = new Map<string, unknown[]>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') {
      help = true;
      continue;
    }
    if (!arg.startsWith('--')) throw new UsageError(`${command}: unexpected argument ${JSON.stringify(arg)}: options are written --name value`, `posttrain ${command} --help lists them`);
    const eq = arg.indexOf('=');
    let flag = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    let text: string | undefined = eq >= 0 ? arg.slice(eq + 1) : undefined;
    let negated = false;
    if (!byName.has(camel(flag)) && flag.startsWith('no-') && byName.get(camel(flag.slice(3)))?.type === 'boolean') {
      flag = flag.slice(3);
      negated = true;
    }
    const name = camel(flag);
    if (name === 'config') {
      config = text ?? argv[++i];
      if (config === undefined) throw new UsageError('--config: expected a file path after it; got nothing');
      continue;
    }
    const spec = byName.get(name);
    if (!spec) {
      const guess = nearest(`--${flag}`, flagNames);
      throw new UsageError(`${command}: unknown option --${flag}${guess ? `; did you mean ${guess}?` : ''}`, `posttrain ${command} --help lists every option`);
    }
    if (spec.type === 'boolean' && text === undefined) {
      const next = argv[i + 1];
      if (!negated && (next === 'true' || next === 'false')) {
        text = next;
        i += 1;
      } else {
        fromFlags[name] = !negated;
        continue;
      }
    }
    if (text === undefined) {
      text = argv[++i];
      if (text === undefined) throw new UsageError(`--${kebab(name)}: expected ${expectedOf[spec.type]} after it; got nothing`);
    }
    const value = coerce(spec, text, `--${kebab(name)}`, true);
    if (spec.type === 'numbers' || spec.type === 'strings') {
      const list = lists.get(name) ?? [];
      list.push(...(value as unknown[]));
      lists.set(name, list);
      fromFlags[name] = list;
    } else {
      fromFlags[name] = negated ? !value : value;
    }
  }
  if (config !== undefined) {
    for (const [name, entry] of readConfigFile(config)) {
      const where = `${config}: ${entry.key}${entry.line ? ` (line ${entry.line})` : ''}`;
      const spec = byName.get(name);
      if (!spec) {
        const guess = nearest(
          entry.key,
          [...byName.keys()].flatMap((n) => [n, n.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)]),
        );
        throw new UsageError(`${where}: unknown option ${JSON.stringify(entry.key)}${guess ? `; did you mean ${JSON.stringify(guess)}?` : ''}`, `posttrain ${command} --help lists every option`);
      }
      values[name] = coerce(spec, entry.value, where, false);
      given.add(name);
    }
  }
  for (const [name, value] of Object.entries(fromFlags)) {
    values[name] = value;
    given.add(name);
  }
  for (const spec of specs) if (!(spec.name in values) && spec.default !== undefined) values[spec.name] = spec.default;
  if (!help) {
    for (const spec of specs) {
      if (spec.required && values[spec.name] === undefined)
        throw new UsageError(`${command}: --${kebab(spec.name)} is required${spec.description ? ` (${spec.description})` : ''}`, `posttrain ${command} --help lists every option`);
    }
  }
  return { values, given, help };
}

/** `--help` text of a command: its summary, then each option's flag, type, default and description, grouped. */
export function helpText(command: string, summary: string, specs: readonly OptionSpec[]): string {
  const lines = [`posttrain ${command}: ${summary}`, '', `usage: posttrain ${command} [--config file.yaml] [--option value ...]`, ''];
  const groups = new Map<string, OptionSpec[]>();
  for (const spec of specs) groups.set(spec.group ?? 'options', [...(groups.get(spec.group ?? 'options') ?? []), spec]);
  const show = (v: unknown) => (v === undefined ? '' : v === null ? 'null' : Array.isArray(v) ? (v.length ? v.join(',') : 'none') : String(v));
  for (const [group, list] of groups) {
    lines.push(`${group}:`);
    for (const spec of list) {
      const type = spec.choices ? spec.choices.join('|') : spec.type;
      const flag = `  --${kebab(spec.name)} <${type}>`;
      const def = spec.required ? '(required)' : spec.default !== undefined ? `(default ${show(spec.default)})` : '';
      lines.push(`${flag.padEnd(42)} ${[spec.description, def.trim()].filter(Boolean).join(' ')}`.trimEnd());
    }
    lines.push('');
  }
  lines.push('Every option is also a key of --config (camelCase or snake_case); flags override the file. --debug prints stack traces.');
  return lines.join('\n');
}
