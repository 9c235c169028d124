/**
 * `auditpipe run --preset argus`: reads an argus deployment's environment and builds the
 * equivalent auditpipe config: the HTTP source serving argus's API on PORT, the Postgres
 * hash-chain store (a real server when DB_TYPE is postgres, the embedded one otherwise) and,
 * when S3_COMPLIANCE_BUCKET is set, the S3 Object Lock sink. docs/argus.md lists every variable
 * and what differs from argus.
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';

export class ArgusPresetError extends Error {
  override readonly name = 'ArgusPresetError';
}

export interface ArgusPreset {
  /** A config object in the shape of an auditpipe YAML file. */
  readonly config: Record<string, unknown>;
  /** Things an operator should know (logged at start). Never contains a secret. */
  readonly notes: string[];
}

const PIPELINE = 'argus';

function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw.trim());
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ArgusPresetError(`${name}=${JSON.stringify(raw)} must be an integer from ${min} to ${max}`);
  }
  return value;
}

function text(env: NodeJS.ProcessEnv, name: string, fallback: string): string {
  const raw = env[name];
  return raw === undefined || raw.trim() === '' ? fallback : raw.trim();
}

/** The PostgreSQL URL argus built from DB_HOST, DB_PORT, DB_USERNAME, DB_PASSWORD, DB_NAME, DB_SSLMODE. */
export function argusDatabaseUrl(env: NodeJS.ProcessEnv): string {
  const host = text(env, 'DB_HOST', 'localhost');
  const port = integer(env, 'DB_PORT', 5432, 1, 65535);
  const user = encodeURIComponent(text(env, 'DB_USERNAME', 'postgres'));
  const password = env.DB_PASSWORD ? `:${encodeURIComponent(env.DB_PASSWORD)}` : '';
  const name = encodeURIComponent(text(env, 'DB_NAME', 'audit_db'));
  const sslmode = encodeURIComponent(text(env, 'DB_SSLMODE', 'disable'));
  const hostPart = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return `postgres://${user}${password}@${hostPart}:${port}/${name}?sslmode=${sslmode}`;
}

/**
 * Builds the config. `env` is the process environment; relative paths (AUDIT_ENUMS_CONFIG,
 * DB_PATH, key files) are resolved against `cwd`, as argus resolved them.
 */
export function argusPresetConfig(env: NodeJS.ProcessEnv, cwd: string = process.cwd()): ArgusPreset {
  const notes: string[] = [];
  const port = integer(env, 'PORT', 3001, 1, 65535);
  const resolve = (file: string) => path.resolve(cwd, file);

  // Tokens: argus's one key for everything, plus optional scoped keys it never had.
  const tokens: unknown[] = [];
  if (env.ARGUS_API_KEY) tokens.push(env.ARGUS_API_KEY);
  else if (env.ARGUS_AUTH_TOKEN) {
    tokens.push(env.ARGUS_AUTH_TOKEN);
    notes.push('ARGUS_AUTH_TOKEN (the pre-rename name) is used because ARGUS_API_KEY is not set');
  }
  const scoped = (name: string, scope: 'ingest' | 'read') => {
    for (const token of (env[name] ?? '').split(',').map((t) => t.trim()).filter(Boolean)) tokens.push({ token, scopes: [scope] });
  };
  scoped('ARGUS_INGEST_API_KEYS', 'ingest');
  scoped('ARGUS_READ_API_KEYS', 'read');
  if (tokens.length === 0) notes.push('ARGUS_API_KEY is empty: every API route answers 401 (fail closed, as argus)');

  // Enums: argus fell back to defaults silently when its file was missing; here only the
  // default path may be missing, an explicitly named file must exist.
  let enumsFile = '';
  if (env.AUDIT_ENUMS_CONFIG) {
    enumsFile = resolve(env.AUDIT_ENUMS_CONFIG);
    if (!existsSync(enumsFile)) throw new ArgusPresetError(`AUDIT_ENUMS_CONFIG=${env.AUDIT_ENUMS_CONFIG}: no such file (${enumsFile})`);
  } else if (existsSync(resolve('configs/enums.yaml'))) {
    enumsFile = resolve('configs/enums.yaml');
  } else {
    notes.push('no configs/enums.yaml: the built-in argus enums apply');
  }

  // Signatures: argus had no way to load keys (its registry stayed empty and rejected every
  // signed event). ARGUS_SIGNATURE_KEYS_FILE names a key file; without it nothing is verified.
  const keysFile = env.ARGUS_SIGNATURE_KEYS_FILE ? resolve(env.ARGUS_SIGNATURE_KEYS_FILE) : '';
  const requireSignatures = env.REQUIRE_SIGNATURES === 'true';
  if (requireSignatures && !keysFile) {
    throw new ArgusPresetError('REQUIRE_SIGNATURES=true needs ARGUS_SIGNATURE_KEYS_FILE (a YAML/JSON key list or JWKS); argus had no key registry at all and rejected every event');
  }
  const signatures = requireSignatures ? 'required' : keysFile ? 'verify-if-present' : 'off';
  if (signatures === 'off') notes.push('no ARGUS_SIGNATURE_KEYS_FILE: client signatures are stored but not verified');

  const origins = (env.CORS_ALLOWED_ORIGINS ?? 'http://localhost:5173').split(',').map((o) => o.trim()).filter(Boolean);

  const source: Record<string, unknown> = {
    type: 'http',
    listen: `${text(env, 'ARGUS_LISTEN_HOST', '0.0.0.0')}:${port}`,
    tokens,
    auth_required: true,
    request_timeout_ms: 15_000,
    argus: { enums_file: enumsFile, metrics: true },
    service_name: 'argus',
    build_time: text(env, 'ARGUS_BUILD_TIME', 'unknown'),
    git_commit: text(env, 'ARGUS_GIT_COMMIT', 'unknown'),
    signatures,
    signature_keys_file: keysFile,
    cors: { allowed_origins: origins },
  };

  const dbType = (env.DB_TYPE ?? '').trim().toLowerCase();
  const store: Record<string, unknown> = { type: 'postgres', name: 'postgres', schema: text(env, 'DB_SCHEMA', 'auditpipe') };
  if (dbType === 'postgres' || dbType === 'postgresql') {
    store.url = argusDatabaseUrl(env);
    store.pool_size = integer(env, 'DB_MAX_OPEN_CONNS', 25);
  } else {
    if (dbType !== '' && dbType !== 'sqlite') notes.push(`DB_TYPE=${dbType} is not postgres: using the embedded store (argus fell back to SQLite)`);
    if (env.DB_HOST) notes.push('DB_HOST is ignored unless DB_TYPE=postgres (as in argus)');
    if (env.DB_PATH) {
      const dir = resolve(env.DB_PATH);
      if (existsSync(dir) && !statSync(dir).isDirectory()) {
        throw new ArgusPresetError(`DB_PATH=${env.DB_PATH} is a file (argus's SQLite database?); auditpipe's embedded store is a directory: point DB_PATH at a new directory`);
      }
      store.path = dir;
    }
    // argus defaulted to in-memory SQLite and lost everything on restart; the embedded store persists.
    store.checkpoint_key_generate = true;
  }
  if (env.AUDITPIPE_CHECKPOINT_KEY_FILE) store.checkpoint_key_file = resolve(env.AUDITPIPE_CHECKPOINT_KEY_FILE);

  const sinks: Array<Record<string, unknown>> = [store];
  if (env.S3_COMPLIANCE_BUCKET) {
    const days = env.S3_RETENTION_DAYS && /^\d+$/.test(env.S3_RETENTION_DAYS) && Number(env.S3_RETENTION_DAYS) > 0 ? Number(env.S3_RETENTION_DAYS) : 2555;
    sinks.push({
      type: 's3',
      name: 's3',
      bucket: env.S3_COMPLIANCE_BUCKET,
      prefix: text(env, 'S3_PREFIX', 'audit-logs').replace(/\/+$/, ''),
      endpoint: text(env, 'S3_ENDPOINT', ''),
      region: text(env, 'S3_REGION', 'us-east-1'),
      force_path_style: env.S3_USE_PATH_STYLE === 'true',
      lock_mode: text(env, 'S3_OBJECT_LOCK_MODE', 'COMPLIANCE'),
      retention: `${days}d`,
    });
  }

  return {
    config: {
      data_dir: text(env, 'AUDITPIPE_DATA_DIR', resolve('data')),
      log_level: text(env, 'AUDITPIPE_LOG_LEVEL', 'info'),
      shutdown_timeout_ms: 30_000,
      pipelines: [{
        name: PIPELINE,
        actor_field: 'actorId',
        batch: { max_events: 1000, interval_ms: 20 },
        nak_delay_ms: 1000,
        source,
        sinks,
      }],
    },
    notes,
  };
}
