import { defineSink } from '../../public/index.ts';
import { victoriaLogsSinkSchema, type VictoriaLogsSinkConfig } from './schema.ts';
import { VictoriaLogsSink } from './sink.ts';

export const victoriaLogsSink = defineSink<VictoriaLogsSinkConfig>({
  type: 'victorialogs',
  description: 'Writes events as NDJSON to VictoriaLogs /insert/jsonline; only a 2xx answer counts as written.',
  schema: victoriaLogsSinkSchema,
  create: (config, context) => new VictoriaLogsSink(config, context),
});

export { VictoriaLogsSink, VictoriaLogsHttpError, ingestPath, ndjson, requestHeaders } from './sink.ts';
export type { VictoriaLogsSinkConfig } from './schema.ts';
