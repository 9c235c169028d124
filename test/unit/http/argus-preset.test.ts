import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { pluginApi } from '../../../src/core/app.ts';
import { validateConfig } from '../../../src/core/config.ts';
import { ComponentRegistry } from '../../../src/core/registry.ts';
import { registerBuiltins } from '../../../src/builtins.ts';
import { argusDatabaseUrl, argusPresetConfig, ArgusPresetError } from '../../../src/sources/http/argus/preset.ts';

const cwd = () => mkdtempSync(path.join(tmpdir(), 'preset-'));
const pipeline = (config: Record<string, unknown>) => (config.pipelines as Array<Record<string, any>>)[0]!;

describe('argus preset', () => {
  it('maps an argus Postgres deployment, URL-encoding the password as argus did', () => {
    const env = { ARGUS_API_KEY: 'k', PORT: '3005', DB_TYPE: 'postgresql', DB_HOST: 'db.internal', DB_USERNAME: 'audit', DB_PASSWORD: 'p@ss:w/rd?', DB_NAME: 'audit_db', DB_SSLMODE: 'require', DB_MAX_OPEN_CONNS: '12' };
    const { config } = argusPresetConfig(env, cwd());
    const p = pipeline(config);
    assert.equal(p.source.listen, '0.0.0.0:3005');
    assert.deepEqual(p.source.tokens, ['k']);
    assert.equal(p.source.auth_required, true);
    assert.equal(p.sinks[0].url, 'postgres://audit:p%40ss%3Aw%2Frd%3F@db.internal:5432/audit_db?sslmode=require');
    assert.equal(p.sinks[0].pool_size, 12);
    assert.equal(new URL(p.sinks[0].url).password, 'p%40ss%3Aw%2Frd%3F');
    assert.deepEqual(p.source.cors.allowed_origins, ['http://localhost:5173']);
  });

  it('uses the embedded store when DB_TYPE is unset or sqlite (persistent, unlike argus in-memory SQLite)', () => {
    const dir = cwd();
    const { config, notes } = argusPresetConfig({ DB_HOST: 'ignored' }, dir);
    const store = pipeline(config).sinks[0];
    assert.equal(store.type, 'postgres');
    assert.equal(store.url, undefined);
    assert.equal(store.checkpoint_key_generate, true);
    assert.ok(notes.some((n) => /DB_HOST is ignored/.test(n)));
    assert.ok(notes.some((n) => /every API route answers 401/.test(n)));
    writeFileSync(path.join(dir, 'audit.db'), 'SQLite format 3');
    assert.throws(() => argusPresetConfig({ DB_PATH: 'audit.db' }, dir), /DB_PATH=audit.db is a file/);
  });

  it('adds the S3 sink with argus defaults when S3_COMPLIANCE_BUCKET is set', () => {
    const { config } = argusPresetConfig({ S3_COMPLIANCE_BUCKET: 'audit-worm', S3_PREFIX: 'logs/', S3_USE_PATH_STYLE: 'true', S3_ENDPOINT: 'http://minio:9000', S3_RETENTION_DAYS: 'x' }, cwd());
    const s3 = pipeline(config).sinks[1];
    assert.deepEqual(s3, { type: 's3', name: 's3', bucket: 'audit-worm', prefix: 'logs', endpoint: 'http://minio:9000', region: 'us-east-1', force_path_style: true, lock_mode: 'COMPLIANCE', retention: '2555d' });
  });

  it('maps signatures: required needs a keys file; keys alone mean verify-if-present', () => {
    assert.throws(() => argusPresetConfig({ REQUIRE_SIGNATURES: 'true' }, cwd()), ArgusPresetError);
    const dir = cwd();
    assert.equal(pipeline(argusPresetConfig({ REQUIRE_SIGNATURES: 'true', ARGUS_SIGNATURE_KEYS_FILE: 'k.yaml' }, dir).config).source.signatures, 'required');
    assert.equal(pipeline(argusPresetConfig({ ARGUS_SIGNATURE_KEYS_FILE: 'k.yaml' }, dir).config).source.signature_keys_file, path.join(dir, 'k.yaml'));
    assert.equal(pipeline(argusPresetConfig({ ARGUS_SIGNATURE_KEYS_FILE: 'k.yaml' }, dir).config).source.signatures, 'verify-if-present');
    assert.equal(pipeline(argusPresetConfig({ REQUIRE_SIGNATURES: 'yes' }, dir).config).source.signatures, 'off');
  });

  it('rejects an explicitly named enums file that does not exist, and a bad PORT', () => {
    assert.throws(() => argusPresetConfig({ AUDIT_ENUMS_CONFIG: 'nope.yaml' }, cwd()), /AUDIT_ENUMS_CONFIG=nope.yaml: no such file/);
    assert.throws(() => argusPresetConfig({ PORT: '70000' }, cwd()), /PORT="70000" must be an integer from 1 to 65535/);
  });

  it('adds scoped tokens and a CORS list; the result validates against every component schema', () => {
    const { config } = argusPresetConfig({ ARGUS_API_KEY: 'all', ARGUS_READ_API_KEYS: 'r1, r2', ARGUS_INGEST_API_KEYS: 'w1', CORS_ALLOWED_ORIGINS: 'https://a.example, https://b.example' }, cwd());
    const p = pipeline(config);
    assert.deepEqual(p.source.tokens, ['all', { token: 'w1', scopes: ['ingest'] }, { token: 'r1', scopes: ['read'] }, { token: 'r2', scopes: ['read'] }]);
    assert.deepEqual(p.source.cors.allowed_origins, ['https://a.example', 'https://b.example']);
    const registry = new ComponentRegistry();
    registerBuiltins(pluginApi(registry, 'built-in'));
    const validated = validateConfig(config, 'preset', registry);
    assert.equal(validated.pipelines[0]!.name, 'argus');
  });

  it('builds the DSN with IPv6 hosts bracketed', () => {
    assert.equal(argusDatabaseUrl({ DB_HOST: '::1' }), 'postgres://postgres@[::1]:5432/audit_db?sslmode=disable');
  });
});
