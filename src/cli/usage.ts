/**
 * Command-line parsing shared by every command: `--help`/`-h` and `--version` on each, and usage
 * errors (unknown option, missing value, unexpected argument) as a {@link UsageError}, which the
 * CLI prints as one line and the command's usage, exit 64 (EX_USAGE in sysexits.h).
 */
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import { VERSION } from '../version.ts';

export const EX_USAGE = 64;
/** EX_CONFIG in sysexits.h: the configuration is invalid. */
export const EX_CONFIG = 78;

export class UsageError extends Error {
  override readonly name = 'UsageError';
  /** The command as typed after `auditpipe`, e.g. `verify`; empty for none. */
  readonly command: string;
  /** The command's usage text, printed after the reason. */
  readonly usage: string;
  constructor(command: string, message: string, usage: string) {
    super(message);
    this.command = command;
    this.usage = usage;
  }
}

/** Writes a usage error as `auditpipe COMMAND: reason`, a blank line and the usage; returns 64. */
export function reportUsageError(error: UsageError, stderr: NodeJS.WritableStream = process.stderr): number {
  stderr.write(`auditpipe${error.command ? ` ${error.command}` : ''}: ${error.message}\n\n${error.usage}`);
  return EX_USAGE;
}

const COMMON_OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const satisfies ParseArgsOptionsConfig;

export interface CommandSpec<T extends ParseArgsOptionsConfig> {
  readonly command: string;
  readonly usage: string;
  readonly options: T;
  /** Names of the positional arguments the command takes, in order (none by default). */
  readonly positionals?: readonly string[];
}

export type ParsedCommand<T extends ParseArgsOptionsConfig> =
  | { readonly done: number }
  | { readonly done?: undefined; readonly values: ReturnType<typeof parseArgs<{ options: T; allowPositionals: true }>>['values']; readonly positionals: string[] };

/**
 * Parses a command's arguments. `--help` prints its usage to stdout and `--version` the version,
 * and both end the command with exit 0 (`done`); anything malformed throws a {@link UsageError}.
 */
export function parseCommand<T extends ParseArgsOptionsConfig>(spec: CommandSpec<T>, argv: readonly string[], stdout: NodeJS.WritableStream = process.stdout): ParsedCommand<T> {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: { ...spec.options, ...COMMON_OPTIONS }, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(spec.command, parseArgsReason(error as Error & { code?: string }), spec.usage);
  }
  const values = parsed.values as Record<string, unknown>;
  if (values.help) {
    stdout.write(spec.usage);
    return { done: 0 };
  }
  if (values.version) {
    stdout.write(`${VERSION}\n`);
    return { done: 0 };
  }
  const allowed = spec.positionals ?? [];
  if (parsed.positionals.length > allowed.length) {
    const extra = parsed.positionals[allowed.length]!;
    throw new UsageError(spec.command, `unexpected argument ${JSON.stringify(extra)}`, spec.usage);
  }
  return { values: parsed.values as never, positionals: parsed.positionals };
}

/** parseArgs' messages, without the hint about `--` that does not apply to commands taking no operands. */
function parseArgsReason(error: Error & { code?: string }): string {
  if (error.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const option = /'([^']+)'/.exec(error.message)?.[1];
    return option ? `unknown option ${option}` : error.message.split('. ')[0]!;
  }
  if (error.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    const option = /--[\w-]+/.exec(error.message)?.[0];
    if (option && error.message.endsWith('argument missing')) return `option ${option} needs a value`;
    if (option && error.message.includes('does not take an argument')) return `option ${option} takes no value`;
  }
  return error.message;
}
