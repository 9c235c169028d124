import { defineSink } from '../../public/index.ts';
import { SCHEMA_NAME } from './schema-name.ts';
import type { PostgresSinkConfig } from './sink.ts';

export const postgresSinkSchema = {
  url: {
    doc: 'PostgreSQL connection URL (postgres://user:pass@host:5432/db). Empty: the embedded PGlite store under the data directory.',
    format: String,
    default: '',
    sensitive: true,
  },
  path: { doc: 'Embedded store directory (relative to the config file); default <data_dir>/chain/<pipeline>.', format: String, default: '' },
  schema: {
    doc: 'Database schema holding the chain tables; pipelines sharing a database use distinct schemas.',
    format: (value: unknown) => {
      if (typeof value !== 'string' || !SCHEMA_NAME.test(value)) throw new Error('must be a lowercase SQL identifier (letters, digits, _; at most 63)');
    },
    default: 'auditpipe',
  },
  pool_size: { doc: 'Connections to PostgreSQL for statements and transactions (at least the pipeline\'s batch.max_in_flight); the appends\' one-message writes use one more of their own.', format: 'positive-int', default: 8 },
  statement_timeout_ms: { doc: 'Server-side bound on one statement and on an idle transaction.', format: 'positive-int', default: 30_000 },
  checkpoint_interval_ms: { doc: 'How often a signed checkpoint of all chain heads is written, idle or not (also at shutdown).', format: 'positive-int', default: 60_000 },
  checkpoint_origin: { doc: 'Name of this store in checkpoints; default auditpipe/<pipeline>.', format: String, default: '' },
  checkpoint_key_file: { doc: 'Ed25519 private key (PEM) signing checkpoints; create with "auditpipe keygen --out FILE".', format: String, default: '' },
  checkpoint_key_env: { doc: 'Environment variable holding the key (PEM or base64 of PEM) when no file is set.', format: String, default: 'AUDITPIPE_CHECKPOINT_KEY' },
  checkpoint_key_generate: {
    doc: 'Without a configured key, generate one under <data_dir>/keys on first start. For the embedded default only; production must configure a key.',
    format: Boolean,
    default: false,
  },
};

export const postgresSink = defineSink<PostgresSinkConfig>({
  type: 'postgres',
  description: 'Tamper-evident store: per-actor hash chains in PostgreSQL (or embedded PGlite) with signed checkpoints.',
  schema: postgresSinkSchema,
  chainStore: true,
  // The implementation (and its client library) loads only when a pipeline uses this component.
  create: async (config, ctx) => new (await import('./sink.ts')).PostgresChainSink(config, ctx),
});
