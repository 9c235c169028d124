import { defineSource } from '../../public/index.ts';
import { httpSourceSchema, normaliseHttpConfig, type HttpSourceConfig } from './schema.ts';
import { HttpSource } from './source.ts';

export const httpSource = defineSource<HttpSourceConfig>({
  type: 'http',
  description: 'HTTP intake: native JSON/NDJSON on POST /v1/events and the argus write API.',
  schema: httpSourceSchema,
  create: (config, context) => new HttpSource(normaliseHttpConfig(config), context),
});

export { HttpSource };
