import { defineSource } from '../../public/index.ts';
import { buildKeyRegistry } from '../../security/key-registry.ts';
import { httpSourceSchema, normaliseHttpConfig, type HttpSourceConfig } from './schema.ts';
import { HttpSource } from './source.ts';

export const httpSource = defineSource<HttpSourceConfig>({
  type: 'http',
  description: 'HTTP intake: native JSON/NDJSON on POST /v1/events, the argus write and read API, client signature verification.',
  schema: httpSourceSchema,
  check: (config) => (config.signatures !== 'off' && config.signature_keys.length === 0 && !config.signature_keys_file
    ? [`signatures: ${config.signatures} needs at least one key in signature_keys or signature_keys_file`]
    : []),
  create: (config, context) => {
    const keys = config.signatures === 'off' && config.signature_keys.length === 0 && !config.signature_keys_file
      ? undefined
      : buildKeyRegistry(config.signature_keys, config.signature_keys_file || undefined, context.configDir);
    return new HttpSource(normaliseHttpConfig(config), context, keys);
  },
});

export { HttpSource };
