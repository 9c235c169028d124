import type { PluginApi } from './public/index.ts';
import { consoleSink } from './sinks/console/index.ts';
import { httpSource } from './sources/http/index.ts';

/** Registers the built-in components through the same API a plugin gets. */
export function registerBuiltins(api: PluginApi): void {
  api.registerSource(httpSource);
  api.registerSink(consoleSink);
}
