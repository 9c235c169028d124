import { defineSource } from '../../public/index.ts';
import { checkNatsSource, natsSourceSchema, type NatsSourceConfig } from './schema.ts';

export const natsSource = defineSource<NatsSourceConfig>({
  type: 'nats',
  description: 'NATS JetStream: durable pull consumer on the WorkQueue stream {namespace}_{stream}, ack after write.',
  schema: natsSourceSchema,
  check: checkNatsSource,
  // The implementation (and its client library) loads only when a pipeline uses this component.
  create: async (config, context) => new (await import('./source.ts')).NatsSource(config, context),
});

export { deadLetterStream, deadLetterSubject, streamName, subjectName } from './schema.ts';
export type { NatsSourceConfig } from './schema.ts';
