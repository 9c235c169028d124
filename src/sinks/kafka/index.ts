import { defineSink } from '../../public/index.ts';
import type { KafkaSinkSettings } from './sink.ts';

export interface KafkaSinkConfig {
  brokers: string | string[];
  topic: string;
  client_id: string;
  compression: 'none' | 'gzip';
  auto_create: boolean;
  partitions: number;
  replication_factor: number;
  tls: { enabled: boolean; ca_file: string; cert_file: string; key_file: string; reject_unauthorized: boolean };
  sasl: { mechanism: 'none' | 'plain' | 'scram-sha-256' | 'scram-sha-512'; username: string; password: string };
  connection_timeout_ms: number;
  request_timeout_ms: number;
  ack_timeout_ms: number;
  send_retries: number;
  max_request_bytes: number;
  dedup_window_events: number;
}

/** A list of brokers from a YAML list or a comma-separated string (e.g. from ${KAFKA_BROKERS}). */
function brokerList(value: unknown): string[] | undefined {
  if (typeof value === 'string') return value.split(',').map((s) => s.trim()).filter(Boolean);
  if (Array.isArray(value) && value.every((b) => typeof b === 'string')) return value.map((b) => b.trim());
  return undefined;
}

export const kafkaSinkSchema = {
  brokers: {
    doc: 'Bootstrap brokers, host:port each (a list, or one comma-separated string).',
    format: (value: unknown) => {
      const list = brokerList(value);
      if (!list || list.length === 0 || list.some((b) => !/^[^\s:]+:\d{1,5}$/.test(b))) {
        throw new Error('must be a non-empty list of host:port, e.g. [127.0.0.1:9092]');
      }
    },
    default: '' as string | string[],
  },
  topic: {
    doc: 'Topic the events go to; must exist unless auto_create is set.',
    format: (value: unknown) => {
      if (typeof value !== 'string' || !/^[A-Za-z0-9._-]{1,249}$/.test(value) || value === '.' || value === '..') {
        throw new Error('must be a Kafka topic name (1-249 characters: letters, digits, ".", "_", "-")');
      }
    },
    default: '',
  },
  client_id: { doc: 'Kafka client id (broker logs, quotas).', format: String, default: 'auditpipe' },
  compression: { doc: 'Record batch compression: none or gzip.', format: ['none', 'gzip'], default: 'none' },
  auto_create: { doc: 'Create the topic at start when it is missing, with partitions and replication_factor.', format: Boolean, default: false },
  partitions: { doc: 'Partitions of an auto-created topic.', format: 'positive-int', default: 1 },
  replication_factor: { doc: 'Replication factor of an auto-created topic.', format: 'positive-int', default: 1 },
  tls: {
    enabled: { doc: 'Connect with TLS.', format: Boolean, default: false },
    ca_file: { doc: 'PEM CA bundle (relative to the config file); empty for the system CAs.', format: String, default: '' },
    cert_file: { doc: 'PEM client certificate for mutual TLS.', format: String, default: '' },
    key_file: { doc: 'PEM client key for mutual TLS.', format: String, default: '' },
    reject_unauthorized: { doc: 'Verify the broker certificate.', format: Boolean, default: true },
  },
  sasl: {
    mechanism: { doc: 'SASL mechanism: none, plain, scram-sha-256 or scram-sha-512.', format: ['none', 'plain', 'scram-sha-256', 'scram-sha-512'], default: 'none' },
    username: { doc: 'SASL user name.', format: String, default: '' },
    password: { doc: 'SASL password (use ${VAR}).', format: String, default: '', sensitive: true },
  },
  connection_timeout_ms: { doc: 'TCP connect timeout per broker.', format: 'positive-int', default: 3000 },
  request_timeout_ms: { doc: 'Timeout of one Kafka request.', format: 'positive-int', default: 30000 },
  ack_timeout_ms: { doc: 'How long the broker may wait for all in-sync replicas (acks=all).', format: 'positive-int', default: 30000 },
  send_retries: { doc: 'Retries of one produce call inside an attempt (the broker deduplicates them).', format: 'positive-int', default: 5 },
  max_request_bytes: { doc: 'Largest chunk of a batch per produce call; keep it under the topic\'s max.message.bytes.', format: 'positive-int', default: 900_000 },
  dedup_window_events: { doc: 'Acknowledged event ids remembered so a redelivered event is not produced again (0 disables; about 100 bytes each).', format: 'nat', default: 100_000 },
};

export function kafkaSettings(config: KafkaSinkConfig): KafkaSinkSettings {
  if (config.sasl.mechanism !== 'none' && (!config.sasl.username || !config.sasl.password)) {
    throw new Error(`kafka sink: sasl.mechanism ${config.sasl.mechanism} needs sasl.username and sasl.password`);
  }
  if ((config.tls.cert_file === '') !== (config.tls.key_file === '')) {
    throw new Error('kafka sink: set both tls.cert_file and tls.key_file for mutual TLS, or neither');
  }
  return {
    brokers: brokerList(config.brokers) ?? [],
    topic: config.topic,
    clientId: config.client_id,
    compression: config.compression,
    autoCreate: config.auto_create,
    partitions: config.partitions,
    replicationFactor: config.replication_factor,
    tls: {
      enabled: config.tls.enabled,
      caFile: config.tls.ca_file,
      certFile: config.tls.cert_file,
      keyFile: config.tls.key_file,
      rejectUnauthorized: config.tls.reject_unauthorized,
    },
    sasl: config.sasl,
    connectionTimeoutMs: config.connection_timeout_ms,
    requestTimeoutMs: config.request_timeout_ms,
    ackTimeoutMs: config.ack_timeout_ms,
    sendRetries: config.send_retries,
    maxRequestBytes: config.max_request_bytes,
    dedupWindowEvents: config.dedup_window_events,
  };
}

export const kafkaSink = defineSink<KafkaSinkConfig>({
  type: 'kafka',
  description: 'Produces each event as one Kafka record (key = actor id) with an idempotent producer and acks=all.',
  schema: kafkaSinkSchema,
  // The implementation (and its client library) loads only when a pipeline uses this component.
  create: async (config, context) => {
    const settings = kafkaSettings(config);
    const { KafkaSink } = await import('./sink.ts');
    return new KafkaSink(settings, context);
  },
});
