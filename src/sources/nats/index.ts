import { defineSource } from '../../public/index.ts';
import { checkNatsSource, natsSourceSchema, type NatsSourceConfig } from './schema.ts';
import { NatsSource } from './source.ts';

export const natsSource = defineSource<NatsSourceConfig>({
  type: 'nats',
  description: 'NATS JetStream: durable pull consumer on the WorkQueue stream {namespace}_{stream}, ack after write.',
  schema: natsSourceSchema,
  check: checkNatsSource,
  create: (config, context) => new NatsSource(config, context),
});

export { NatsSource };
export { deadLetterStream, deadLetterSubject, streamName, subjectName } from './schema.ts';
export type { NatsSourceConfig } from './schema.ts';
