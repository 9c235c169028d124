// Client signatures end to end on real PostgreSQL: the SDK signs (Ed25519, RS256), the argus
// preset verifies against its key registry, what is stored verifies again later; every way a
// signature can be wrong is rejected with its own reason and counted.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import type { KeyObject } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { v7 as uuidv7 } from 'uuid';
import { HttpAuditClient } from '../../../src/client/index.ts';
import { buildKeyRegistry } from '../../../src/security/key-registry.ts';
import { privateKeySigner, signEvent, type SignatureAlgorithm } from '../../../src/security/signatures.ts';
import { verifyStoredSignatures } from '../../../src/security/verify-signatures.ts';
import type { VerifyRow } from '../../../src/security/verify.ts';
import type { TestEngine } from '../../helpers/engine.ts';
import { serverEnv } from '../../helpers/servers.ts';
import { API_KEY, argusDatabase, argusKeys, type ArgusKeys, startArgus } from './helpers.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');

/** A native event signed the way the SDK does it, then put in argus wire form (what a Go client sends). */
async function signedArgusRequest(keyId: string, key: KeyObject, over: Record<string, unknown> = {}, algorithm?: SignatureAlgorithm, tamper: Record<string, unknown> = {}) {
  const native = {
    id: uuidv7(), time: new Date().toISOString(), status: 'SUCCESS', eventType: 'DATA_FETCH', action: 'READ', actorType: 'SERVICE',
    actorId: 'svc-a', targetType: 'RESOURCE', targetId: 'doc-1', message: { fields: ['name'] }, metadata: { ip: '10.1.1.1' }, ...over,
  };
  const signed = { ...(await signEvent(native, privateKeySigner(keyId, key, algorithm))), ...tamper };
  const { time, message, ...rest } = signed as Record<string, unknown>;
  return { ...rest, timestamp: time, message: Buffer.from(JSON.stringify(message)).toString('base64') };
}

async function failureCounts(t: TestEngine): Promise<Record<string, number>> {
  const text = await (await fetch(t.url('argus') + '/metrics')).text();
  const counts: Record<string, number> = {};
  for (const match of text.matchAll(/^auditpipe_signature_failures_total\{pipeline="argus",reason="([a-z_]+)"\} (\d+)/gm)) counts[match[1]!] = Number(match[2]);
  return counts;
}

async function storedRows(db: Awaited<ReturnType<typeof argusDatabase>>, schema: string): Promise<VerifyRow[]> {
  const result = await db.sql(`SELECT actor, seq, event_id, prev_hash, hash, canonical FROM ${schema}.chain_events ORDER BY actor, seq`);
  return result.rows.map((r) => ({ actor: r.actor, seq: Number(r.seq), eventId: r.event_id, prevHash: r.prev_hash, hash: r.hash, canonical: r.canonical, eventTimeMs: 0, receivedAtMs: 0 }));
}

/** `auditpipe verify --signature-keys` on the test database, as a child process, JSON report. */
function verifyCli(database: string, keys: ArgusKeys) {
  const url = new URL(serverEnv('DATABASE_URL'));
  url.pathname = `/${database}`;
  return () => spawnSync(process.execPath, [
    path.join(ROOT, 'src/cli/main.ts'), 'verify', '--database-url', url.href, '--public-key', `${keys.checkpointKeyFile}.pub`,
    '--signature-keys', keys.keysFile, '--json',
  ], { cwd: ROOT, encoding: 'utf8' });
}

describe('client signatures (verify-if-present)', () => {
  let keys: ArgusKeys;
  let db: Awaited<ReturnType<typeof argusDatabase>>;
  let t: TestEngine;
  const post = (route: string, body: unknown) => fetch(t.url('argus') + route, { method: 'POST', headers: { authorization: `Bearer ${API_KEY}` }, body: JSON.stringify(body) });

  before(async () => {
    keys = argusKeys();
    db = await argusDatabase('argus_sig');
    t = await startArgus({ ...db.env, ARGUS_API_KEY: API_KEY, ARGUS_SIGNATURE_KEYS_FILE: keys.keysFile, AUDITPIPE_CHECKPOINT_KEY_FILE: keys.checkpointKeyFile });
  });
  after(async () => {
    await t?.stop();
    await db?.drop();
  });

  it('stores events the SDK signed with Ed25519 and with RS256, and they verify again from the store', async () => {
    const ed = new HttpAuditClient({ baseUrl: t.url('argus'), apiKey: API_KEY, batchSize: 1, signingKey: { keyId: 'svc-ed', privateKey: keys.ed.privateKey } });
    const rsa = new HttpAuditClient({ baseUrl: t.url('argus'), apiKey: API_KEY, batchSize: 1, signingKey: { keyId: 'svc-rsa', privateKey: keys.rsa.privateKey, algorithm: 'RS256' } });
    const event = (actorId: string) => ({ actorId, actorType: 'SERVICE', targetType: 'RESOURCE', status: 'SUCCESS', action: 'CREATE', message: { big: 9007199254740991, text: 'ünïcode \u2028 <&>' }, metadata: { z: 1, a: { c: [1, 2.5, null] } } });
    const results = [await ed.deliver(event('svc-a')), await rsa.deliver(event('svc-rsa'))];
    assert.deepEqual(results.map((r) => r.status), ['delivered', 'delivered'], JSON.stringify(results));
    await ed.close();
    await rsa.close();

    const record = await (await fetch(`${t.url('argus')}/api/audit-logs/${results[1]!.id}`, { headers: { authorization: `Bearer ${API_KEY}` } })).json();
    assert.equal(record.signatureAlgorithm, 'RS256');
    assert.equal(record.publicKeyId, 'svc-rsa');

    const registry = buildKeyRegistry([], keys.keysFile, process.cwd());
    const report = await verifyStoredSignatures((async function* () { yield await storedRows(db, 'auditpipe'); })(), registry);
    assert.equal(report.verified, 2);
    assert.deepEqual(report.findings, []);

    const cli = verifyCli(db.name, keys);
    // (The chain itself may still lack its first checkpoint here; only the signature part is asserted.)
    const intact = JSON.parse(cli().stdout);
    assert.equal(intact.signatures.verified, 2);
    assert.deepEqual(intact.signatures.findings, []);

    // Editing a stored event (even consistently re-hashing it) breaks its signature.
    await db.sql(`UPDATE auditpipe.chain_events SET canonical = replace(canonical, '"action":"CREATE"', '"action":"DELETE"') WHERE event_id = '${results[0]!.id}'`);
    const after = await verifyStoredSignatures((async function* () { yield await storedRows(db, 'auditpipe'); })(), registry);
    assert.deepEqual(after.findings.map((f) => [f.eventId, f.reason]), [[results[0]!.id, 'bad_signature']]);
    const tampered = cli();
    assert.equal(tampered.status, 1);
    assert.deepEqual(JSON.parse(tampered.stdout).signatures.findings.map((f: { eventId: string; reason: string }) => [f.eventId, f.reason]), [[results[0]!.id, 'bad_signature']]);
  });

  it('rejects a changed field, a wrong key, an unknown key id, a key not allowed for the actor and an expired key, each with its reason, and counts them', async () => {
    const before = await failureCounts(t);
    const cases: Array<[string, Promise<Record<string, unknown>>, string]> = [
      ['one field changed', signedArgusRequest('svc-ed', keys.ed.privateKey, {}, undefined, { targetId: 'doc-2' }), 'bad_signature'],
      ['message changed', signedArgusRequest('svc-ed', keys.ed.privateKey, {}, undefined, { message: { fields: ['salary'] } }), 'bad_signature'],
      ['wrong key', signedArgusRequest('svc-ed', keys.stranger.privateKey), 'bad_signature'],
      ['unknown key id', signedArgusRequest('nobody', keys.ed.privateKey), 'unknown_key'],
      ['key not allowed for the actor', signedArgusRequest('svc-rsa', keys.rsa.privateKey, { actorId: 'svc-a' }, 'RS256'), 'key_not_allowed_for_actor'],
      ['expired key', signedArgusRequest('svc-old', keys.ed.privateKey), 'key_expired'],
    ];
    for (const [name, pending, reason] of cases) {
      const res = await post('/api/audit-logs', await pending);
      assert.equal(res.status, 400, name);
      const body = await res.json();
      assert.match(body.details, new RegExp(`signature verification failed \\(${reason}\\)`), name);
    }
    const after = await failureCounts(t);
    const delta = (reason: string) => (after[reason] ?? 0) - (before[reason] ?? 0);
    assert.equal(delta('bad_signature'), 3);
    assert.equal(delta('unknown_key'), 1);
    assert.equal(delta('key_not_allowed_for_actor'), 1);
    assert.equal(delta('key_expired'), 1);
  });

  it('fails only the bad items of a bulk request (207) and stores the rest, unsigned ones included', async () => {
    const good = await signedArgusRequest('svc-ed', keys.ed.privateKey, { actorId: 'bulk-sig' });
    const bad = await signedArgusRequest('svc-ed', keys.ed.privateKey, { actorId: 'bulk-sig' }, undefined, { status: 'FAILURE' });
    const unsigned = { timestamp: new Date().toISOString(), status: 'SUCCESS', actorType: 'SERVICE', actorId: 'bulk-sig', targetType: 'RESOURCE' };
    const res = await post('/api/audit-logs/bulk', [good, bad, unsigned]);
    assert.equal(res.status, 207);
    const body = await res.json();
    assert.deepEqual(body.failed.map((f: any) => f.index), [1]);
    assert.match(body.failed[0].error, /bad_signature/);
    const rows = await db.sql(`SELECT count(*)::int AS n FROM auditpipe.chain_events WHERE actor = 'bulk-sig'`);
    assert.equal(rows.rows[0].n, 2);
  });

  it('reports a 207 to the SDK caller item by item', async () => {
    const failures: string[] = [];
    const client = new HttpAuditClient({ baseUrl: t.url('argus'), apiKey: API_KEY, batchSize: 3, batchIntervalMs: 60_000, onFailure: (r) => failures.push(r.id) });
    const base = { actorType: 'SERVICE', targetType: 'RESOURCE', status: 'SUCCESS', actorId: 'sdk-207' };
    const pending = [client.deliver(base), client.deliver({ ...base, status: 'PERHAPS' }), client.deliver(base)];
    const results = await Promise.all(pending);
    assert.deepEqual(results.map((r) => r.status), ['delivered', 'failed', 'delivered']);
    assert.match(results[1]!.error!, /status must be SUCCESS or FAILURE/);
    assert.deepEqual(failures, [results[1]!.id]);
    await client.close();
  });
});

describe('client signatures (REQUIRE_SIGNATURES=true)', () => {
  it('rejects an unsigned event and stores a signed one', async () => {
    const keys = argusKeys();
    const db = await argusDatabase('argus_sigreq');
    const t = await startArgus({ ...db.env, ARGUS_API_KEY: API_KEY, REQUIRE_SIGNATURES: 'true', ARGUS_SIGNATURE_KEYS_FILE: keys.keysFile, AUDITPIPE_CHECKPOINT_KEY_FILE: keys.checkpointKeyFile });
    try {
      const post = (body: unknown) => fetch(t.url('argus') + '/api/audit-logs', { method: 'POST', headers: { authorization: `Bearer ${API_KEY}` }, body: JSON.stringify(body) });
      const unsigned = await post({ timestamp: new Date().toISOString(), status: 'SUCCESS', actorType: 'SERVICE', actorId: 'svc-a', targetType: 'RESOURCE' });
      assert.equal(unsigned.status, 400);
      assert.match((await unsigned.json()).details, /\(unsigned\)/);
      const signed = await post(await signedArgusRequest('svc-ed', keys.ed.privateKey));
      assert.equal(signed.status, 201);
      const rows = await db.sql('SELECT count(*)::int AS n FROM auditpipe.chain_events');
      assert.equal(rows.rows[0].n, 1);
      const text = await (await fetch(t.url('argus') + '/metrics')).text();
      assert.match(text, /auditpipe_signature_failures_total\{pipeline="argus",reason="unsigned"\} 1/);
    } finally {
      await t.stop();
      await db.drop();
    }
  });
});
