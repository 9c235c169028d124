import { defineSource } from '../../public/index.ts';
import { SignaturePolicy, signatureConfigProblems } from '../../public/security.ts';
import { httpSourceSchema, normaliseHttpConfig, type HttpSourceConfig } from './schema.ts';
import { HttpSource } from './source.ts';

export const httpSource = defineSource<HttpSourceConfig>({
  type: 'http',
  description: 'HTTP intake: native JSON/NDJSON on POST /v1/events, the argus write and read API, client signature verification.',
  schema: httpSourceSchema,
  check: (config) => signatureConfigProblems(config),
  create: (config, context) => new HttpSource(normaliseHttpConfig(config), context, SignaturePolicy.fromConfig(config, context)),
});

export { HttpSource };
