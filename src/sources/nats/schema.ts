import type { PipelineSettings } from '../../public/index.ts';
import { signatureConfigProblems, signatureConfigSchema, type SignatureConfig } from '../../public/security.ts';

export interface NatsSourceConfig extends SignatureConfig {
  servers: string[];
  namespace: string;
  stream: string;
  consumer: string;
  token: string;
  user: string;
  password: string;
  creds_file: string;
  tls: { ca_file: string; cert_file: string; key_file: string; handshake_first: boolean };
  connect_timeout_ms: number;
  ack_wait_ms: number;
  max_deliver: number;
  max_ack_pending: number;
  nak_backoff_ms: number[];
  pull_batch: number;
  pull_expires_ms: number;
  dead_letter_subject: string;
  dead_letter_stream: string;
  stream_defaults: { replicas: number; max_age_ms: number; max_bytes: number; duplicate_window_ms: number };
  metrics_interval_ms: number;
}

/** A NATS subject token: no spaces, dots or wildcards. Stream and consumer names have the same rule. */
export const SUBJECT_TOKEN = /^[A-Za-z0-9_-]+$/;

function token(what: string) {
  return (value: unknown) => {
    if (typeof value !== 'string' || !SUBJECT_TOKEN.test(value)) {
      throw new Error(`${what} must be a non-empty name of letters, digits, "_" or "-" (it becomes part of a subject and a stream name)`);
    }
  };
}

function checkSubject(value: unknown): void {
  if (typeof value !== 'string' || (value !== '' && !/^[^\s*>]+$/.test(value)) || value.startsWith('.') || value.endsWith('.') || value.includes('..')) {
    throw new Error('must be a literal NATS subject such as alpha.logs.dlq (no spaces or wildcards), or empty for the default');
  }
}

function checkMsList(value: unknown): void {
  if (!Array.isArray(value) || value.some((item) => !Number.isInteger(item) || item < 1)) throw new Error('must be a list of positive integers (milliseconds)');
}

export const natsSourceSchema = {
  ...signatureConfigSchema,
  servers: { doc: 'NATS server URLs.', format: 'string-list', default: ['nats://127.0.0.1:4222'] },
  namespace: { doc: 'Namespace: stream {namespace}_{stream}, subject {namespace}.{stream}.', format: token('namespace'), default: 'default' },
  stream: { doc: 'Logical stream consumed.', format: token('stream'), default: 'logs' },
  consumer: { doc: 'Durable pull consumer name, shared by every process consuming this stream.', format: token('consumer'), default: 'auditpipe' },
  token: { doc: 'Token authentication.', format: String, default: '', sensitive: true },
  user: { doc: 'User for user/password authentication.', format: String, default: '' },
  password: { doc: 'Password for user/password authentication.', format: String, default: '', sensitive: true },
  creds_file: { doc: 'NATS .creds file (JWT + NKey seed); relative to the config file.', format: String, default: '' },
  tls: {
    ca_file: { doc: 'CA certificate(s) to verify the server with.', format: String, default: '' },
    cert_file: { doc: 'Client certificate (mutual TLS).', format: String, default: '' },
    key_file: { doc: 'Client private key (mutual TLS).', format: String, default: '' },
    handshake_first: { doc: 'TLS handshake before the NATS INFO (servers with handshake_first).', format: Boolean, default: false },
  },
  connect_timeout_ms: { doc: 'Timeout of the first connection; start fails after it.', format: 'positive-int', default: 10_000 },
  ack_wait_ms: { doc: 'Consumer ack wait: a message not acked (or marked working) in this time is redelivered.', format: 'positive-int', default: 30_000 },
  max_deliver: { doc: 'Deliveries before a message is dead-lettered and terminated; -1 for unlimited.', format: 'int', default: -1 },
  max_ack_pending: { doc: 'Messages delivered but not yet acked, across all processes of the consumer.', format: 'positive-int', default: 10_000 },
  nak_backoff_ms: { doc: 'Redelivery delay by delivery count after a failed write (last entry repeats); at least the pipeline nak_delay_ms.', format: checkMsList, default: [] as number[] },
  pull_batch: { doc: 'Most messages asked for in one pull; the next pull waits until the pipeline took them.', format: 'positive-int', default: 1_000 },
  pull_expires_ms: { doc: 'How long one pull waits for messages on an idle stream.', format: 'positive-int', default: 5_000 },
  dead_letter_subject: { doc: 'Subject poison messages are copied to when the pipeline has no dead_letter sink; default {namespace}.{stream}.dlq.', format: checkSubject, default: '' },
  dead_letter_stream: { doc: 'Stream created for the dead-letter subject when missing; default {namespace}_{stream}_dlq.', format: (value: unknown) => { if (value !== '') token('dead_letter_stream')(value); }, default: '' },
  stream_defaults: {
    replicas: { doc: 'Replicas of the stream when auditpipe creates it (never changed on an existing stream).', format: 'positive-int', default: 1 },
    max_age_ms: { doc: 'Max age of messages when auditpipe creates the stream; 0 keeps them until acked.', format: 'nat', default: 0 },
    max_bytes: { doc: 'Max stream size in bytes when auditpipe creates the stream; -1 for unlimited.', format: 'int', default: -1 },
    duplicate_window_ms: { doc: 'Nats-Msg-Id deduplication window when auditpipe creates the stream.', format: 'positive-int', default: 120_000 },
  },
  metrics_interval_ms: { doc: 'How often consumer pending/redelivered gauges are refreshed.', format: 'positive-int', default: 5_000 },
};

export function streamName(config: Pick<NatsSourceConfig, 'namespace' | 'stream'>): string {
  return `${config.namespace}_${config.stream}`;
}

export function subjectName(config: Pick<NatsSourceConfig, 'namespace' | 'stream'>): string {
  return `${config.namespace}.${config.stream}`;
}

export function deadLetterSubject(config: NatsSourceConfig): string {
  return config.dead_letter_subject || `${subjectName(config)}.dlq`;
}

export function deadLetterStream(config: NatsSourceConfig): string {
  return config.dead_letter_stream || `${streamName(config)}_dlq`;
}

/** Settings that cannot work together with the pipeline's batching; each problem names both sides. */
export function checkNatsSource(config: NatsSourceConfig, pipeline: PipelineSettings): string[] {
  const problems: string[] = signatureConfigProblems(config);
  const held = pipeline.batch.intervalMs + pipeline.maxSinkTimeoutMs;
  if (held >= config.ack_wait_ms) {
    problems.push(`key "ack_wait_ms" (${config.ack_wait_ms}) must be greater than batch.interval_ms (${pipeline.batch.intervalMs}) + the longest required sink retry.timeout_ms (${pipeline.maxSinkTimeoutMs}) = ${held}, or messages are redelivered while still being written`);
  }
  if (pipeline.batch.maxEvents > config.max_ack_pending) {
    problems.push(`key "max_ack_pending" (${config.max_ack_pending}) must be at least batch.max_events (${pipeline.batch.maxEvents}), or a full batch can never be delivered`);
  }
  if (config.pull_batch > config.max_ack_pending) {
    problems.push(`key "pull_batch" (${config.pull_batch}) must be at most max_ack_pending (${config.max_ack_pending})`);
  }
  if (config.max_deliver === 0 || config.max_deliver < -1) problems.push(`key "max_deliver" (${config.max_deliver}) must be -1 (unlimited) or a positive number`);
  if ((config.user === '') !== (config.password === '')) problems.push('keys "user" and "password" must be set together');
  const auths = [config.token !== '', config.user !== '', config.creds_file !== ''].filter(Boolean).length;
  if (auths > 1) problems.push('set only one of "token", "user"/"password" and "creds_file"');
  if ((config.tls.cert_file === '') !== (config.tls.key_file === '')) problems.push('keys "tls.cert_file" and "tls.key_file" must be set together');
  if (deadLetterSubject(config) === subjectName(config)) problems.push('key "dead_letter_subject" must differ from the consumed subject');
  return problems;
}
