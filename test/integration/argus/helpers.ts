import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { writeKeyPair } from '../../../src/security/keys.ts';
import { argusPresetConfig } from '../../../src/sources/http/argus/preset.ts';
import { startEngine, type TestEngine } from '../../helpers/engine.ts';
import { serverEnv, uniqueName } from '../../helpers/servers.ts';
import { dropDatabase } from '../postgres/helpers.ts';

export const API_KEY = 'argus-test-api-key';
export const READ_KEY = 'argus-test-read-key';
export const INGEST_KEY = 'argus-test-ingest-key';

async function query(text: string, database?: string): Promise<pg.QueryResult> {
  const url = new URL(serverEnv('DATABASE_URL'));
  if (database) url.pathname = `/${database}`;
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    return await client.query(text);
  } finally {
    await client.end();
  }
}

/** A database of its own for one test file, and the argus DB_* variables that point at it. */
export async function argusDatabase(prefix: string): Promise<{ name: string; env: Record<string, string>; sql: (text: string) => Promise<pg.QueryResult>; drop: () => Promise<void> }> {
  const name = uniqueName(prefix).toLowerCase();
  await query(`CREATE DATABASE "${name}"`);
  const url = new URL(serverEnv('DATABASE_URL'));
  const env: Record<string, string> = {
    DB_TYPE: 'postgres',
    DB_HOST: url.hostname,
    DB_PORT: url.port || '5432',
    DB_USERNAME: decodeURIComponent(url.username),
    DB_PASSWORD: decodeURIComponent(url.password),
    DB_NAME: name,
    DB_SSLMODE: 'disable',
  };
  return {
    name,
    env,
    sql: (text) => query(text, name),
    drop: () => dropDatabase(name),
  };
}

/** A free loopback port (for an engine that must come back on the same address). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface ArgusKeys {
  readonly dir: string;
  readonly ed: { privateKey: KeyObject; publicKey: KeyObject };
  readonly rsa: { privateKey: KeyObject; publicKey: KeyObject };
  readonly stranger: { privateKey: KeyObject; publicKey: KeyObject };
  /** ARGUS_SIGNATURE_KEYS_FILE */
  readonly keysFile: string;
  /** AUDITPIPE_CHECKPOINT_KEY_FILE */
  readonly checkpointKeyFile: string;
}

/** Client keys (Ed25519 for any actor, RSA bound to svc-rsa, one expired) and a checkpoint key. */
export function argusKeys(): ArgusKeys {
  const dir = mkdtempSync(path.join(tmpdir(), 'argus-keys-'));
  const ed = generateKeyPairSync('ed25519');
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const stranger = generateKeyPairSync('ed25519');
  const pem = (key: KeyObject) => key.export({ type: 'spki', format: 'pem' }).toString();
  writeFileSync(path.join(dir, 'ed.pem'), pem(ed.publicKey));
  const keysFile = path.join(dir, 'keys.yaml');
  writeFileSync(keysFile, JSON.stringify({
    keys: [
      { id: 'svc-ed', pem_file: 'ed.pem' },
      { id: 'svc-rsa', jwk: { ...rsa.publicKey.export({ format: 'jwk' }), alg: 'RS256' }, actors: ['svc-rsa'] },
      { id: 'svc-old', pem_file: 'ed.pem', not_after: '2020-01-01T00:00:00Z' },
    ],
  }));
  const checkpointKeyFile = writeKeyPair(path.join(dir, 'checkpoint.key')).privateFile;
  return { dir, ed, rsa, stranger, keysFile, checkpointKeyFile };
}

/**
 * Starts an engine from the argus preset, as `auditpipe run --preset argus` builds it from
 * `env`, listening on loopback (port 0 unless given).
 */
export async function startArgus(env: Record<string, string>, port = 0): Promise<TestEngine> {
  const { config } = argusPresetConfig({ PORT: '3001', ...env }, mkdtempSync(path.join(tmpdir(), 'argus-cwd-')));
  const { data_dir: _dataDir, log_level: _level, ...rest } = config;
  const pipeline = (rest.pipelines as Array<Record<string, any>>)[0]!;
  pipeline.source.listen = `127.0.0.1:${port}`;
  return startEngine(rest);
}

/** An argus create request as the argus Go SDK sends it. */
export function argusRequest(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    timestamp: new Date().toISOString(),
    status: 'SUCCESS',
    eventType: 'USER_MANAGEMENT',
    action: 'CREATE',
    actorType: 'SERVICE',
    actorId: 'svc-a',
    targetType: 'RESOURCE',
    targetId: 'res-1',
    message: Buffer.from(JSON.stringify({ submission_id: 'sub-1' })).toString('base64'),
    metadata: { ip: '10.0.0.1' },
    ...over,
  };
}
