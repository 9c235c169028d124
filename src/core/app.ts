import { existsSync } from 'node:fs';
import path from 'node:path';
import { API_VERSION, defineSink, defineSource, sharedMetric, type PluginApi } from '../public/index.ts';
import { PermanentError } from './component.ts';
import { readConfigFile, validateConfig, type AppConfig } from './config.ts';
import { Engine } from './engine.ts';
import { InvalidEventError, toEvent } from './event.ts';
import { createLogger, type Logger } from './logger.ts';
import { loadPlugins } from './plugins.ts';
import { ComponentRegistry } from './registry.ts';

export function pluginApi(registry: ComponentRegistry, origin: string): PluginApi {
  return {
    apiVersion: API_VERSION,
    registerSink: (definition) => registry.registerSink(definition, origin),
    registerSource: (definition) => registry.registerSource(definition, origin),
    PermanentError,
    toEvent,
    InvalidEventError,
    defineSink,
    defineSource,
    sharedMetric,
  };
}

/**
 * Turns a foreign config dialect (e.g. auditstream's values.yml) into an auditpipe config. Returns
 * undefined when the file is not in its dialect; throws ConfigError when it is but cannot be read.
 */
export type ConfigTranslator = (raw: Record<string, unknown>, file: string) => Record<string, unknown> | undefined;

/** What the edge (src/builtins.ts, a test) gives the core: components to register, dialects to read. */
export interface AppParts {
  readonly register: (api: PluginApi) => void;
  readonly translators?: readonly ConfigTranslator[];
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

/** Registers the given components and plugins, then reads and validates the config against their schemas. */
export async function loadApp(options: LoadOptions, parts: AppParts): Promise<Loaded> {
  const registry = new ComponentRegistry();
  parts.register(pluginApi(registry, 'built-in'));
  let raw = readConfigFile(options.configFile, options.env);
  for (const translate of parts.translators ?? []) {
    const translated = translate(raw, options.configFile);
    if (translated) { raw = translated; break; }
  }
  const fromConfig = typeof raw.plugins_file === 'string' && raw.plugins_file
    ? path.resolve(path.dirname(path.resolve(options.configFile)), raw.plugins_file)
    : undefined;
  const pluginsFile = options.pluginsFile ?? fromConfig ?? (existsSync('plugins.json') ? path.resolve('plugins.json') : undefined);
  const plugins = pluginsFile ? await loadPlugins(pluginsFile, (origin) => pluginApi(registry, origin)) : [];
  const config = validateConfig(raw, options.configFile, registry);
  return { config, registry, plugins };
}

export async function createEngine(options: LoadOptions, parts: AppParts, logger?: Logger): Promise<Engine> {
  const { config, registry, plugins } = await loadApp(options, parts);
  const log = logger ?? createLogger(config.logLevel);
  if (plugins.length > 0) log.info({ plugins }, 'plugins loaded');
  return new Engine(config, registry, log);
}
