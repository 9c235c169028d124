import { existsSync } from 'node:fs';
import path from 'node:path';
import { registerBuiltins } from '../builtins.ts';
import { API_VERSION, type PluginApi } from '../public/index.ts';
import { PermanentError } from './component.ts';
import { ConfigError, readConfigFile, validateConfig, type AppConfig } from './config.ts';
import { Engine } from './engine.ts';
import { InvalidEventError, toEvent } from './event.ts';
import { createLogger, type Logger } from './logger.ts';
import { loadPlugins } from './plugins.ts';
import { ComponentRegistry } from './registry.ts';
import { isAuditstreamValues, translateAuditstreamValues } from '../sources/nats/auditstream.ts';

export function pluginApi(registry: ComponentRegistry, origin: string): PluginApi {
  return {
    apiVersion: API_VERSION,
    registerSink: (definition) => registry.registerSink(definition, origin),
    registerSource: (definition) => registry.registerSource(definition, origin),
    PermanentError,
    toEvent,
    InvalidEventError,
  };
}

export interface LoadOptions {
  readonly configFile: string;
  /** plugins.json; defaults to the config's `plugins_file`, else ./plugins.json when present. */
  readonly pluginsFile?: string;
  readonly env?: NodeJS.ProcessEnv;
}

export interface Loaded {
  readonly config: AppConfig;
  readonly registry: ComponentRegistry;
  readonly plugins: string[];
}

/** Registers built-ins and plugins, then reads and validates the config against their schemas. */
export async function loadApp(options: LoadOptions): Promise<Loaded> {
  const registry = new ComponentRegistry();
  registerBuiltins(pluginApi(registry, 'built-in'));
  let raw = readConfigFile(options.configFile, options.env);
  if (isAuditstreamValues(raw)) {
    // An auditstream config/values.yml runs as the NATS → VictoriaLogs pipeline it describes.
    const translated = translateAuditstreamValues(raw, options.configFile);
    if (!translated.config) throw new ConfigError(translated.problems);
    raw = translated.config;
  }
  const fromConfig = typeof raw.plugins_file === 'string' && raw.plugins_file
    ? path.resolve(path.dirname(path.resolve(options.configFile)), raw.plugins_file)
    : undefined;
  const pluginsFile = options.pluginsFile ?? fromConfig ?? (existsSync('plugins.json') ? path.resolve('plugins.json') : undefined);
  const plugins = pluginsFile ? await loadPlugins(pluginsFile, (origin) => pluginApi(registry, origin)) : [];
  const config = validateConfig(raw, options.configFile, registry);
  return { config, registry, plugins };
}

export async function createEngine(options: LoadOptions, logger?: Logger): Promise<Engine> {
  const { config, registry, plugins } = await loadApp(options);
  const log = logger ?? createLogger(config.logLevel);
  if (plugins.length > 0) log.info({ plugins }, 'plugins loaded');
  return new Engine(config, registry, log);
}
