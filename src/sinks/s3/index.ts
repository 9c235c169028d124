import { defineSink } from '../../public/index.ts';
import { parseRetention } from './object.ts';
import type { LockMode, S3SinkSettings } from './sink.ts';

export interface S3SinkConfig {
  bucket: string;
  prefix: string;
  endpoint: string;
  region: string;
  force_path_style: boolean;
  access_key_id: string;
  secret_access_key: string;
  session_token: string;
  lock_mode: LockMode;
  retention: string;
  legal_hold: boolean;
  checksum: 'sha256' | 'md5';
  dedup: 'if-none-match' | 'head-first';
  anchor_checkpoints: boolean;
  connect_timeout_ms: number;
  anchor_timeout_ms: number;
}

export const s3SinkSchema = {
  bucket: {
    doc: 'Bucket with Object Lock enabled (checked at start).',
    format: (value: unknown) => {
      if (typeof value !== 'string' || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(value)) {
        throw new Error('must be an S3 bucket name (3-63 characters: lower-case letters, digits, dots, hyphens)');
      }
    },
    default: '',
  },
  prefix: {
    doc: 'Key prefix; objects go to {prefix}/{pipeline}/{yyyy}/{mm}/{dd}/{hh}/….',
    format: (value: unknown) => {
      if (typeof value !== 'string' || value.length > 256) throw new Error('must be a string of at most 256 characters');
    },
    default: 'auditpipe',
  },
  endpoint: { doc: 'S3 endpoint URL (MinIO, versitygw, …); empty for AWS (or AWS_ENDPOINT_URL_S3).', format: String, default: '' },
  region: { doc: 'Region; empty to take AWS_REGION / the AWS config.', format: String, default: '' },
  force_path_style: { doc: 'Path-style URLs (bucket in the path), as most self-hosted servers need.', format: Boolean, default: false },
  access_key_id: { doc: 'Access key; empty for the standard AWS credential chain (AWS_ACCESS_KEY_ID, profile, role).', format: String, default: '', sensitive: true },
  secret_access_key: { doc: 'Secret key, with access_key_id.', format: String, default: '', sensitive: true },
  session_token: { doc: 'Session token for temporary credentials, with access_key_id.', format: String, default: '', sensitive: true },
  lock_mode: { doc: 'Object Lock mode of every object: COMPLIANCE (nobody can delete before retain-until) or GOVERNANCE.', format: ['COMPLIANCE', 'GOVERNANCE'], default: 'COMPLIANCE' },
  retention: {
    doc: 'Retention per object: retain-until = write time + this; a number and a unit s, m, h, d or y (365 days), e.g. 30d, 7y.',
    format: (value: unknown) => {
      if (typeof value !== 'string' || parseRetention(value) === undefined) throw new Error('must be a positive duration like 90s, 12h, 30d or 7y');
    },
    default: '365d',
  },
  legal_hold: { doc: 'Also put a legal hold on every object (needs s3:PutObjectLegalHold).', format: Boolean, default: false },
  checksum: { doc: 'Body checksum sent with each PUT: sha256 (x-amz-checksum-sha256) or md5 (Content-MD5, for servers without the newer checksums).', format: ['sha256', 'md5'], default: 'sha256' },
  dedup: {
    doc: 'How a retried batch avoids a second object: if-none-match (conditional PUT; the server must honour If-None-Match) or head-first (HEAD, then PUT; racy between concurrent writers).',
    format: ['if-none-match', 'head-first'],
    default: 'if-none-match',
  },
  anchor_checkpoints: { doc: 'Also write the pipeline\'s signed hash-chain checkpoints as locked objects under {prefix}/{pipeline}/checkpoints/.', format: Boolean, default: true },
  connect_timeout_ms: { doc: 'TCP connect timeout.', format: 'positive-int', default: 5000 },
  anchor_timeout_ms: { doc: 'Timeout of one checkpoint upload.', format: 'positive-int', default: 30000 },
};

/** Config keys → settings; the checks convict cannot express per key. */
export function s3Settings(config: S3SinkConfig): S3SinkSettings {
  if (!config.bucket) throw new Error('s3 sink: "bucket" is required');
  const hasKey = Boolean(config.access_key_id);
  if (hasKey !== Boolean(config.secret_access_key)) {
    throw new Error('s3 sink: set both "access_key_id" and "secret_access_key", or neither (to use the AWS credential chain)');
  }
  return {
    bucket: config.bucket,
    prefix: config.prefix,
    endpoint: config.endpoint,
    region: config.region,
    forcePathStyle: config.force_path_style,
    credentials: hasKey ? { accessKeyId: config.access_key_id, secretAccessKey: config.secret_access_key, sessionToken: config.session_token } : undefined,
    lockMode: config.lock_mode,
    retentionSeconds: parseRetention(config.retention)!,
    legalHold: config.legal_hold,
    checksum: config.checksum,
    dedup: config.dedup,
    connectTimeoutMs: config.connect_timeout_ms,
    anchorTimeoutMs: config.anchor_timeout_ms,
  };
}

export const s3Sink = defineSink<S3SinkConfig>({
  type: 's3',
  description: 'Writes each batch as one gzipped NDJSON object under S3 Object Lock, and anchors signed checkpoints.',
  schema: s3SinkSchema,
  // The implementation (and its client library) loads only when a pipeline uses this component.
  create: async (config, context) => {
    const settings = s3Settings(config);
    const { S3Sink } = await import('./sink.ts');
    const sink = new S3Sink(settings, context);
    if (config.anchor_checkpoints) sink.registerAnchor();
    return sink;
  },
});
