#!/usr/bin/env node
import { enableCompileCache } from './compile-cache.ts';
import type { createBuiltinEngine } from '../builtins.ts';
import { ConfigError } from '../core/config.ts';
import { createLogger } from '../core/logger.ts';
import { VERSION } from '../version.ts';
import { EX_CONFIG, parseCommand, reportUsageError, UsageError } from './usage.ts';

const HELP = `auditpipe ${VERSION}: tamper-evident audit-log pipelines

Usage:
  auditpipe run [--config FILE] [--plugins FILE]   start the configured pipelines
  auditpipe validate [--config FILE] [--plugins FILE]
                                                    check a config; exit 0 when valid, 78 when not
  auditpipe verify [--config FILE] [--pipeline NAME] [--actor A] [--public-key FILE] [--json]
                                                    check the hash chains and signed checkpoints
                                                    offline; exit 0 intact, 1 findings, 2 cannot
                                                    verify (also --database-url URL or --data-dir
                                                    DIR; auditpipe verify --help for details)
  auditpipe run --preset argus [--plugins FILE]     serve the argus API from an argus deployment's
                                                    environment (docs/argus.md); also validate
  auditpipe keygen --out FILE                       write an Ed25519 checkpoint key pair
  auditpipe version                                 print the version (also --version)
  auditpipe help [COMMAND]                          this text, or a command's usage (also --help)

Every command takes --help (-h) and --version. A usage error (unknown command or option, a
missing value, an unexpected argument) prints the reason and the usage and exits 64.
The default config is config/auditpipe.yml. Environment: AUDITPIPE_HTTP_PORT,
AUDITPIPE_DATA_DIR, AUDITPIPE_LOG_LEVEL, AUDITPIPE_HTTP_TOKENS, and any \${VAR} the config names.
Compiled modules are cached in $XDG_CACHE_HOME/auditpipe (or ~/.cache/auditpipe), private to the
user; AUDITPIPE_COMPILE_CACHE=off turns that off.
`;

const RUN_HELP = `Usage: auditpipe run [--config FILE] [--plugins FILE]
       auditpipe run --preset argus [--plugins FILE]

Starts the configured pipelines and serves until SIGTERM or SIGINT (a second signal exits at
once). Exit 0 after a clean shutdown, 64 on a usage error, 78 when the configuration is invalid.

  -c, --config FILE   the config (default config/auditpipe.yml)
  --plugins FILE      the plugins list (default: the config's plugins_file, else ./plugins.json)
  --preset NAME       build the config from a deployment's environment instead (argus: docs/argus.md)
`;

const VALIDATE_HELP = `Usage: auditpipe validate [--config FILE] [--plugins FILE]
       auditpipe validate --preset argus [--plugins FILE]

Checks a config against every component's schema without starting anything. Exit 0 when valid,
64 on a usage error, 78 with each problem (file, pipeline, key) when it is not.

  -c, --config FILE   the config (default config/auditpipe.yml)
  --plugins FILE      the plugins list (default: the config's plugins_file, else ./plugins.json)
  --preset NAME       check the config built from a deployment's environment (argus)
`;

const VERSION_HELP = `Usage: auditpipe version

Prints the version (also: auditpipe --version, or --version after any command).
`;

const HELP_HELP = `Usage: auditpipe help [COMMAND]

Prints the overview, or the usage of COMMAND (run, validate, verify, keygen, version, help).
`;

const APP_OPTIONS = {
  config: { type: 'string', short: 'c', default: 'config/auditpipe.yml' },
  plugins: { type: 'string' },
  preset: { type: 'string' },
} as const;

const COMMANDS = ['run', 'validate', 'verify', 'keygen', 'version', 'help'] as const;
type Command = (typeof COMMANDS)[number];
const isCommand = (word: string): word is Command => (COMMANDS as readonly string[]).includes(word);

async function usageOf(command: Command): Promise<string> {
  switch (command) {
    case 'run': return RUN_HELP;
    case 'validate': return VALIDATE_HELP;
    case 'verify': return (await import('./verify.ts')).VERIFY_HELP;
    case 'keygen': return (await import('./keygen.ts')).KEYGEN_HELP;
    case 'version': return VERSION_HELP;
    case 'help': return HELP_HELP;
  }
}

async function main(argv: string[]): Promise<number> {
  enableCompileCache();
  const first = argv[0];
  // Without a command word the options are run's; --help and --version then mean the overview.
  if (first === undefined || first.startsWith('-')) {
    const parsed = parseCommand({ command: '', usage: HELP, options: APP_OPTIONS }, argv);
    if (parsed.done !== undefined) return parsed.done;
    return runCommand(parsed.values);
  }
  if (!isCommand(first)) throw new UsageError('', `unknown command ${JSON.stringify(first)}`, HELP);
  const args = argv.slice(1);
  switch (first) {
    // These two take options of their own. Commands load what they use: the engine with every
    // built-in component takes a second to load, which `verify` and `keygen` do not need.
    case 'verify': return (await import('./verify.ts')).verifyCommand(args);
    case 'keygen': return (await import('./keygen.ts')).keygenCommand(args);
    case 'help': {
      const parsed = parseCommand({ command: 'help', usage: HELP_HELP, options: {}, positionals: ['COMMAND'] }, args);
      if (parsed.done !== undefined) return parsed.done;
      const topic = parsed.positionals[0];
      if (topic === undefined) {
        process.stdout.write(HELP);
        return 0;
      }
      if (!isCommand(topic)) throw new UsageError('help', `unknown command ${JSON.stringify(topic)}`, HELP_HELP);
      process.stdout.write(await usageOf(topic));
      return 0;
    }
    case 'version': {
      const parsed = parseCommand({ command: 'version', usage: VERSION_HELP, options: {} }, args);
      if (parsed.done !== undefined) return parsed.done;
      process.stdout.write(`${VERSION}\n`);
      return 0;
    }
    case 'validate': {
      const parsed = parseCommand({ command: 'validate', usage: VALIDATE_HELP, options: APP_OPTIONS }, args);
      if (parsed.done !== undefined) return parsed.done;
      const values = await checkPreset('validate', parsed.values, VALIDATE_HELP);
      const load = { configFile: values.config!, pluginsFile: values.plugins };
      const { config, plugins } = values.preset
        ? await (await import('./preset.ts')).loadPreset(values.preset, values.plugins)
        : await (await import('../builtins.ts')).loadBuiltinApp(load);
      process.stdout.write(`${config.file}: valid (${config.pipelines.length} pipeline${config.pipelines.length === 1 ? '' : 's'}: ${config.pipelines.map((p) => p.name).join(', ')}${plugins.length ? `; plugins: ${plugins.join(', ')}` : ''})\n`);
      return 0;
    }
    case 'run': {
      const parsed = parseCommand({ command: 'run', usage: RUN_HELP, options: APP_OPTIONS }, args);
      if (parsed.done !== undefined) return parsed.done;
      return runCommand(await checkPreset('run', parsed.values, RUN_HELP));
    }
  }
}

type AppValues = { config?: string; plugins?: string; preset?: string };

/** An unknown --preset is a usage error, found before anything is loaded. */
async function checkPreset<T extends AppValues>(command: string, values: T, usage: string): Promise<T> {
  if (values.preset === undefined) return values;
  const { PRESETS } = await import('./preset.ts');
  if (!(PRESETS as readonly string[]).includes(values.preset)) {
    throw new UsageError(command, `unknown preset ${JSON.stringify(values.preset)} (known: ${PRESETS.join(', ')})`, usage);
  }
  return values;
}

function runCommand(values: AppValues): Promise<number> {
  const load = { configFile: values.config!, pluginsFile: values.plugins };
  return run(async () => (values.preset
    ? (await import('./preset.ts')).createPresetEngine(values.preset, values.plugins)
    : (await import('../builtins.ts')).createBuiltinEngine(load)));
}

async function run(makeEngine: () => ReturnType<typeof createBuiltinEngine>): Promise<number> {
  const engine = await makeEngine();
  await engine.start();
  return new Promise<number>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals += 1;
      if (signals > 1) {
        process.stderr.write(`second ${signal}: exiting now\n`);
        resolve(130);
        return;
      }
      engine.stop().then(() => resolve(0), (error: unknown) => {
        process.stderr.write(`shutdown failed: ${(error as Error).message}\n`);
        resolve(1);
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Sockets a library forgot to close must not keep a finished process alive.
    setTimeout(() => process.exit(code), 500).unref();
  },
  (error: unknown) => {
    if (error instanceof UsageError) {
      process.exitCode = reportUsageError(error);
    } else if (error instanceof ConfigError) {
      process.stderr.write(`invalid configuration:\n${error.problems.map((p) => `  - ${p}`).join('\n')}\n`);
      process.exitCode = EX_CONFIG;
    } else {
      const logger = createLogger();
      logger.fatal({ err: error }, (error as Error)?.message ?? 'failed');
      process.stderr.write(`auditpipe: ${(error as Error)?.message ?? error}\n`);
      process.exitCode = 1;
    }
    setTimeout(() => process.exit(), 200).unref();
  },
);
