/** Talking to the real Kafka test broker from tests (kafkajs admin and consumer). */
import kafkajs from 'kafkajs';
import type { Admin, Kafka as KafkaClient } from 'kafkajs';
import { serverEnv } from '../../helpers/servers.ts';

const { Kafka, logLevel } = kafkajs;

export function kafkaClient(): KafkaClient {
  return new Kafka({ clientId: 'auditpipe-test', brokers: serverEnv('KAFKA_BROKERS').split(','), logLevel: logLevel.NOTHING });
}

export async function withAdmin<T>(kafka: KafkaClient, use: (admin: Admin) => Promise<T>): Promise<T> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return await use(admin);
  } finally {
    await admin.disconnect();
  }
}

export async function createTopic(kafka: KafkaClient, topic: string, partitions: number, configEntries: Array<{ name: string; value: string }> = []): Promise<void> {
  await withAdmin(kafka, async (admin) => {
    await admin.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: 1, configEntries }], waitForLeaders: true });
  });
}

/** Records in the topic: the sum of the partitions' high watermarks. */
export async function recordCount(kafka: KafkaClient, topic: string): Promise<number> {
  return withAdmin(kafka, async (admin) => {
    const offsets = await admin.fetchTopicOffsets(topic);
    return offsets.reduce((n, p) => n + Number(p.high) - Number(p.low), 0);
  });
}

export interface ConsumedRecord {
  readonly partition: number;
  readonly offset: number;
  readonly key: string | null;
  readonly value: Record<string, unknown>;
  readonly headers: Record<string, string>;
}

/** Reads every record of the topic from the beginning, up to the high watermarks measured first. */
export async function consumeAll(kafka: KafkaClient, topic: string, groupId: string): Promise<ConsumedRecord[]> {
  const expected = await recordCount(kafka, topic);
  const records: ConsumedRecord[] = [];
  if (expected === 0) return records;
  const consumer = kafka.consumer({ groupId });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      consumer.run({
        eachMessage: async ({ partition, message }) => {
          const headers: Record<string, string> = {};
          for (const [name, value] of Object.entries(message.headers ?? {})) headers[name] = String(value);
          records.push({
            partition,
            offset: Number(message.offset),
            key: message.key ? message.key.toString('utf8') : null,
            value: JSON.parse(message.value!.toString('utf8')),
            headers,
          });
          if (records.length >= expected) resolve();
        },
      }).catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  return records;
}
