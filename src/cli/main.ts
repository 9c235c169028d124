#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { enableCompileCache } from './compile-cache.ts';
import type { createBuiltinEngine } from '../builtins.ts';
import { ConfigError } from '../core/config.ts';
import { createLogger } from '../core/logger.ts';
import { VERSION } from '../version.ts';

const HELP = `auditpipe ${VERSION}: tamper-evident audit-log pipelines

Usage:
  auditpipe run [--config FILE] [--plugins FILE]   start the configured pipelines
  auditpipe validate [--config FILE] [--plugins FILE]
                                                    check a config; exit 0 when valid
  auditpipe verify [--config FILE] [--pipeline NAME] [--actor A] [--public-key FILE] [--json]
                                                    check the hash chains and signed checkpoints
                                                    offline; exit 0 intact, 1 findings, 2 usage
                                                    (also --database-url URL or --data-dir DIR;
                                                    auditpipe verify --help for details)
  auditpipe run --preset argus [--plugins FILE]     serve the argus API from an argus deployment's
                                                    environment (docs/argus.md); also validate
  auditpipe keygen --out FILE                       write an Ed25519 checkpoint key pair
  auditpipe version                                 print the version
  auditpipe --help                                  this text

The default config is config/auditpipe.yml. Environment: AUDITPIPE_HTTP_PORT,
AUDITPIPE_DATA_DIR, AUDITPIPE_LOG_LEVEL, AUDITPIPE_HTTP_TOKENS, and any \${VAR} the config names.
Compiled modules are cached in $XDG_CACHE_HOME/auditpipe (or ~/.cache/auditpipe), private to the
user; AUDITPIPE_COMPILE_CACHE=off turns that off.
`;

async function main(argv: string[]): Promise<number> {
  enableCompileCache();
  // These two take options of their own. Commands load what they use: the engine with every
  // built-in component takes a second to load, which `verify` and `keygen` do not need.
  if (argv[0] === 'verify') return (await import('./verify.ts')).verifyCommand(argv.slice(1));
  if (argv[0] === 'keygen') return (await import('./keygen.ts')).keygenCommand(argv.slice(1));
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c', default: 'config/auditpipe.yml' },
      plugins: { type: 'string' },
      preset: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const command = positionals[0] ?? (values.help ? 'help' : 'run');
  const load = { configFile: values.config!, pluginsFile: values.plugins };
  switch (command) {
    case 'help':
      process.stdout.write(HELP);
      return 0;
    case 'version':
      process.stdout.write(`${VERSION}\n`);
      return 0;
    case 'validate': {
      const { config, plugins } = values.preset
        ? await (await import('./preset.ts')).loadPreset(values.preset, values.plugins)
        : await (await import('../builtins.ts')).loadBuiltinApp(load);
      process.stdout.write(`${config.file}: valid (${config.pipelines.length} pipeline${config.pipelines.length === 1 ? '' : 's'}: ${config.pipelines.map((p) => p.name).join(', ')}${plugins.length ? `; plugins: ${plugins.join(', ')}` : ''})\n`);
      return 0;
    }
    case 'run':
      return run(async () => (values.preset
        ? (await import('./preset.ts')).createPresetEngine(values.preset, values.plugins)
        : (await import('../builtins.ts')).createBuiltinEngine(load)));
    default:
      process.stderr.write(`unknown command "${command}"\n\n${HELP}`);
      return 2;
  }
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
    if (error instanceof ConfigError) {
      process.stderr.write(`invalid configuration:\n${error.problems.map((p) => `  - ${p}`).join('\n')}\n`);
      process.exitCode = 78;
    } else {
      const logger = createLogger();
      logger.fatal({ err: error }, (error as Error)?.message ?? 'failed');
      process.stderr.write(`auditpipe: ${(error as Error)?.message ?? error}\n`);
      process.exitCode = 1;
    }
    setTimeout(() => process.exit(), 200).unref();
  },
);
