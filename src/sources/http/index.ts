import { defineSource } from '../../public/index.ts';
import { SignaturePolicy, signatureConfigProblems } from '../../public/security.ts';
import { httpSourceSchema, normaliseHttpConfig, type HttpSourceConfig } from './schema.ts';

export const httpSource = defineSource<HttpSourceConfig>({
  type: 'http',
  description: 'HTTP intake: native JSON/NDJSON on POST /v1/events, the argus write and read API, client signature verification.',
  schema: httpSourceSchema,
  check: (config) => signatureConfigProblems(config),
  flush: 'eager',
  // The implementation (and its client library) loads only when a pipeline uses this component.
  create: async (config, context) => {
    const normalised = normaliseHttpConfig(config);
    const signatures = SignaturePolicy.fromConfig(config, context);
    const { HttpSource } = await import('./source.ts');
    return new HttpSource(normalised, context, signatures);
  },
});
