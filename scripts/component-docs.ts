#!/usr/bin/env node
/**
 * `npm run docs:components`: writes each built-in component's configuration key table, generated
 * from the convict schema its definition carries, between `<!-- config:start -->` and
 * `<!-- config:end -->` in the component's README (src/sources/TYPE/, src/sinks/TYPE/). The prose
 * around the markers is left as written. `--check` writes nothing and exits 1 when a README is
 * not current (test/unit/docs/component-docs.test.ts does the same in `npm test`).
 *
 * Only definitions are read (through src/builtins.ts, the registration every engine uses), never
 * a component's implementation, and no default that is sensitive or depends on the machine
 * generating the docs is printed.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { homedir, hostname, tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { registerBuiltins } from '../src/builtins.ts';
import type { ConfigSchema, PluginApi, SinkDefinition, SourceDefinition } from '../src/public/index.ts';

export const ROOT = path.resolve(import.meta.dirname, '..');
export const START = '<!-- config:start -->';
export const END = '<!-- config:end -->';
const NOTE = '<!-- Generated from the schema in index.ts by `npm run docs:components`; edit the schema\'s doc strings, not this table. -->';

export interface ComponentDoc {
  readonly kind: 'source' | 'sink';
  readonly type: string;
  readonly readme: string;
  readonly current: string;
  readonly expected: string;
}

/** The built-in definitions, as registerBuiltins hands them to the engine. */
export function builtinDefinitions(): Array<{ kind: 'source' | 'sink'; definition: SourceDefinition | SinkDefinition }> {
  const found: Array<{ kind: 'source' | 'sink'; definition: SourceDefinition | SinkDefinition }> = [];
  const collector = {
    apiVersion: 1,
    registerSink: (definition: SinkDefinition) => found.push({ kind: 'sink', definition }),
    registerSource: (definition: SourceDefinition) => found.push({ kind: 'source', definition }),
  } as unknown as PluginApi;
  registerBuiltins(collector);
  return found;
}

export interface KeyRow {
  readonly key: string;
  readonly format: string;
  readonly default: string;
  readonly env: string;
  readonly sensitive: boolean;
  readonly doc: string;
}

type Leaf = { doc?: unknown; format?: unknown; default?: unknown; env?: unknown; sensitive?: unknown };

/** convict's rule: a schema entry with a `default` is a key; any other object nests keys. */
function isLeaf(entry: unknown): entry is Leaf {
  return typeof entry === 'object' && entry !== null && 'default' in entry;
}

export function keyRows(schema: ConfigSchema, machine: MachineValues = machineValues(), prefix = ''): KeyRow[] {
  const rows: KeyRow[] = [];
  for (const [name, entry] of Object.entries(schema)) {
    const key = prefix ? `${prefix}.${name}` : name;
    if (isLeaf(entry)) {
      const sensitive = entry.sensitive === true;
      rows.push({
        key,
        format: formatName(entry.format, entry.default),
        default: sensitive ? hiddenDefault(entry.default, machine) : defaultText(entry.default, machine),
        env: typeof entry.env === 'string' ? entry.env : '',
        sensitive,
        doc: typeof entry.doc === 'string' ? entry.doc : '',
      });
    } else if (typeof entry === 'object' && entry !== null && !Array.isArray(entry)) {
      rows.push(...keyRows(entry as ConfigSchema, machine, key));
    }
  }
  return rows;
}

const NAMED_FORMATS: Record<string, string> = {
  'positive-int': 'positive integer',
  nat: 'integer ≥ 0',
  int: 'integer',
  port: 'port',
  'listen-address': 'host:port',
  'string-list': 'list of strings (comma-separated from a variable)',
  object: 'mapping',
  url: 'URL',
  '*': 'any',
};

function typeOfValue(value: unknown): string {
  if (Array.isArray(value)) return 'list';
  if (value === null) return 'null';
  if (typeof value === 'object') return 'mapping';
  return typeof value;
}

function formatName(format: unknown, defaultValue: unknown): string {
  if (format === String) return 'string';
  if (format === Boolean) return 'boolean';
  if (format === Number) return 'number';
  if (format === Array) return 'list';
  if (format === Object) return 'mapping';
  if (Array.isArray(format)) return `one of ${format.map((choice) => `\`${String(choice)}\``).join(', ')}`;
  if (typeof format === 'string') return NAMED_FORMATS[format] ?? format;
  // A validating function: the type its default has, checked by the component.
  if (typeof format === 'function') return `${typeOfValue(defaultValue)}, checked`;
  return typeOfValue(defaultValue);
}

function isEmpty(value: unknown): boolean {
  return value === '' || value === undefined || value === null || (Array.isArray(value) && value.length === 0)
    || (typeof value === 'object' && value !== null && Object.keys(value).length === 0);
}

function hiddenDefault(value: unknown, machine: MachineValues): string {
  return isEmpty(value) ? defaultText(value, machine) : '(not shown: sensitive)';
}

export interface MachineValues {
  /** Strings that differ from one machine or user to another (home, host, user, directories). */
  readonly strings: readonly string[];
}

export function machineValues(): MachineValues {
  const strings = [ROOT, process.cwd(), homedir(), tmpdir(), hostname()];
  try {
    strings.push(userInfo().username);
  } catch {
    // no user name (a container's numeric uid): nothing to hide
  }
  return { strings: strings.filter((s) => s.length >= 3) };
}

function defaultText(value: unknown, machine: MachineValues): string {
  if (isEmpty(value)) return value === '' ? '`""`' : Array.isArray(value) ? '`[]`' : value === undefined || value === null ? 'none' : '`{}`';
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  // A default computed from the machine that generated the docs is not the reader's.
  if (machine.strings.some((s) => text.includes(s)) || /^\/(?:home|root|tmp|Users|var)\b/.test(text)) return '(depends on the machine)';
  return `\`${text}\``;
}

const cell = (text: string) => text.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\n/g, ' ');
/** Prose in a cell: besides, `<data_dir>` would be read as an HTML tag. */
const prose = (text: string) => cell(text).replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function keyTable(rows: readonly KeyRow[]): string {
  const lines = [
    '| key | type | default | env | sensitive | meaning |',
    '|---|---|---|---|---|---|',
    ...rows.map((row) => `| ${cell(`\`${row.key}\``)} | ${prose(row.format)} | ${cell(row.default)} | ${row.env ? cell(`\`${row.env}\``) : ''} | ${row.sensitive ? 'yes' : ''} | ${prose(row.doc)} |`),
  ];
  return lines.join('\n');
}

/** The block between the markers, markers included. */
export function generatedBlock(rows: readonly KeyRow[]): string {
  return `${START}\n${NOTE}\n\n${keyTable(rows)}\n${END}`;
}

/**
 * The README with its block replaced. A README without markers gets a "Configuration" section
 * at its end; one with a single marker or markers out of order is an error, not a guess.
 */
export function withBlock(readme: string, block: string, file: string): string {
  const start = readme.indexOf(START);
  const end = readme.indexOf(END);
  if (start === -1 && end === -1) return `${readme.trimEnd()}\n\n## Configuration\n\n${block}\n`;
  if (start === -1 || end === -1 || end < start || readme.indexOf(START, start + 1) !== -1 || readme.indexOf(END, end + 1) !== -1) {
    throw new Error(`${file}: expected one ${START} followed by one ${END}`);
  }
  return readme.slice(0, start) + block + readme.slice(end + END.length);
}

export function componentDocs(root = ROOT): ComponentDoc[] {
  const machine = machineValues();
  return builtinDefinitions().map(({ kind, definition }) => {
    const readme = path.join(root, 'src', kind === 'source' ? 'sources' : 'sinks', definition.type, 'README.md');
    let current: string;
    try {
      current = readFileSync(readme, 'utf8');
    } catch {
      throw new Error(`built-in ${kind} "${definition.type}" has no README at ${path.relative(root, readme)}`);
    }
    const expected = withBlock(current, generatedBlock(keyRows(definition.schema, machine)), path.relative(root, readme));
    return { kind, type: definition.type, readme, current, expected };
  });
}

if (import.meta.main) {
  const check = process.argv.includes('--check');
  const stale: string[] = [];
  for (const doc of componentDocs()) {
    const name = path.relative(ROOT, doc.readme);
    if (doc.current === doc.expected) continue;
    if (check) {
      stale.push(name);
    } else {
      writeFileSync(doc.readme, doc.expected);
      process.stdout.write(`wrote ${name}\n`);
    }
  }
  if (stale.length > 0) {
    process.stderr.write(`not current: ${stale.join(', ')}; run npm run docs:components\n`);
    process.exitCode = 1;
  }
}
