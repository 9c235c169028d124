import { defineSink } from '../../public/index.ts';
import { victoriaLogsSinkSchema, type VictoriaLogsSinkConfig } from './schema.ts';

export const victoriaLogsSink = defineSink<VictoriaLogsSinkConfig>({
  type: 'victorialogs',
  description: 'Writes events as NDJSON to VictoriaLogs /insert/jsonline; only a 2xx answer counts as written.',
  schema: victoriaLogsSinkSchema,
  // The implementation (and its client library) loads only when a pipeline uses this component.
  create: async (config, context) => new (await import('./sink.ts')).VictoriaLogsSink(config, context),
});

export type { VictoriaLogsSinkConfig } from './schema.ts';
