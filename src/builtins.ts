import type { PluginApi } from './public/index.ts';
import { consoleSink } from './sinks/console/index.ts';
import { kafkaSink } from './sinks/kafka/index.ts';
import { postgresSink } from './sinks/postgres/index.ts';
import { s3Sink } from './sinks/s3/index.ts';
import { httpSource } from './sources/http/index.ts';
import { natsSource } from './sources/nats/index.ts';
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
