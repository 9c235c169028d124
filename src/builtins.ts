/**
 * The edge where the built-in components meet the core: the core engine knows no component, so
 * the CLI, tests and benchmarks load an app through these, which name what to register.
 */
import { createEngine, loadApp, type AppParts, type ConfigTranslator, type LoadOptions, type Loaded } from './core/app.ts';
import { ConfigError } from './core/config.ts';
import type { Engine } from './core/engine.ts';
import type { Logger } from './core/logger.ts';
import type { PluginApi } from './public/index.ts';
import { consoleSink } from './sinks/console/index.ts';
import { kafkaSink } from './sinks/kafka/index.ts';
import { postgresSink } from './sinks/postgres/index.ts';
import { s3Sink } from './sinks/s3/index.ts';
import { httpSource } from './sources/http/index.ts';
import { natsSource } from './sources/nats/index.ts';
import { isAuditstreamValues, translateAuditstreamValues } from './sources/nats/auditstream/values.ts';
import { victoriaLogsSink } from './sinks/victorialogs/index.ts';

/** Registers the built-in components through the same API a plugin gets. */
export function registerBuiltins(api: PluginApi): void {
  api.registerSource(httpSource);
  api.registerSource(natsSource);
  api.registerSink(victoriaLogsSink);
  api.registerSink(consoleSink);
  api.registerSink(postgresSink);
  api.registerSink(s3Sink);
  api.registerSink(kafkaSink);
}

/** An auditstream config/values.yml runs as the NATS → VictoriaLogs pipeline it describes. */
export const auditstreamTranslator: ConfigTranslator = (raw, file) => {
  if (!isAuditstreamValues(raw)) return undefined;
  const translated = translateAuditstreamValues(raw, file);
  if (!translated.config) throw new ConfigError(translated.problems);
  return translated.config;
};

export const BUILTIN_PARTS: AppParts = { register: registerBuiltins, translators: [auditstreamTranslator] };

export function loadBuiltinApp(options: LoadOptions): Promise<Loaded> {
  return loadApp(options, BUILTIN_PARTS);
}

export function createBuiltinEngine(options: LoadOptions, logger?: Logger): Promise<Engine> {
  return createEngine(options, BUILTIN_PARTS, logger);
}
