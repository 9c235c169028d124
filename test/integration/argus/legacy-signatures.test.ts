// argus Go SDK (pipe-joined, "argus-legacy") signatures end to end on real PostgreSQL: the argus
// API verifies them only under a key marked argus-legacy, stores the verified form with the
// event, and `auditpipe verify --signature-keys` re-verifies the stored rows (and names a changed one).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { sign } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { v7 as uuidv7 } from 'uuid';
import { argusLegacyParts, privateKeySigner, signEvent } from '../../../src/security/signatures.ts';
import type { TestEngine } from '../../helpers/engine.ts';
import { serverEnv, uniqueName } from '../../helpers/servers.ts';
import { API_KEY, argusDatabase, argusKeys, type ArgusKeys, startArgus } from './helpers.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');

function nativeEvent(actorId: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: uuidv7(), time: new Date().toISOString(), status: 'SUCCESS', eventType: 'DATA_FETCH', action: 'READ', actorType: 'SERVICE',
    actorId, targetType: 'RESOURCE', targetId: 'doc-1', message: { fields: ['name'] }, metadata: { ip: '10.1.1.1' }, ...over,
  };
}

/** The argus wire form of a native event: `timestamp`, base64 `message` (as the Go SDK sends it). */
function wire(event: Record<string, unknown>): Record<string, unknown> {
  const { time, message, ...rest } = event;
  return { ...rest, timestamp: time, message: Buffer.from(JSON.stringify(message)).toString('base64') };
}

/**
 * Signed over the pipe-joined form, as the argus Go SDK signs (also when a field holds "|", as the
 * SDK does); `tamper` is applied after signing.
 */
function legacySigned(keys: ArgusKeys, keyId: string, event: Record<string, unknown>, tamper: Record<string, unknown> = {}) {
  const signature = sign(null, Buffer.from(argusLegacyParts(event as never).join('|')), keys.ed.privateKey).toString('base64');
  return wire({ ...event, signature, signatureAlgorithm: 'EdDSA', publicKeyId: keyId, ...tamper });
}

describe('argus legacy signatures on PostgreSQL, re-verified by auditpipe verify', () => {
  let keys: ArgusKeys;
  let keysFile: string;
  let db: Awaited<ReturnType<typeof argusDatabase>>;
  let t: TestEngine;
  const actor = uniqueName('legacy-actor');
  const post = (body: unknown) => fetch(t.url('argus') + '/api/audit-logs', { method: 'POST', headers: { authorization: `Bearer ${API_KEY}` }, body: JSON.stringify(body) });
  const count = async () => (await db.sql('SELECT count(*)::int AS n FROM auditpipe.chain_events')).rows[0].n as number;
  const verifyCli = () => {
    const url = new URL(serverEnv('DATABASE_URL'));
    url.pathname = `/${db.name}`;
    return spawnSync(process.execPath, [
      path.join(ROOT, 'src/cli/main.ts'), 'verify', '--database-url', url.href, '--public-key', `${keys.checkpointKeyFile}.pub`,
      '--signature-keys', keysFile, '--json',
    ], { cwd: ROOT, encoding: 'utf8' });
  };

  before(async () => {
    keys = argusKeys();
    keysFile = path.join(keys.dir, 'legacy-keys.yaml');
    writeFileSync(keysFile, JSON.stringify({ keys: [{ id: 'go-sdk', pem_file: 'ed.pem', format: 'argus-legacy' }, { id: 'modern', pem_file: 'ed.pem' }] }));
    db = await argusDatabase('argus_legacy');
    t = await startArgus({ ...db.env, ARGUS_API_KEY: API_KEY, ARGUS_SIGNATURE_KEYS_FILE: keysFile, AUDITPIPE_CHECKPOINT_KEY_FILE: keys.checkpointKeyFile });
  });
  after(async () => {
    await t?.stop();
    await db?.drop();
  });

  it('stores a legacy-signed and an rfc8785-signed event, refuses the bad ones with their reasons, and verify re-checks and then names a changed row', async () => {
    const legacyEvent = nativeEvent(actor);
    const legacy = await post(legacySigned(keys, 'go-sdk', legacyEvent));
    assert.equal(legacy.status, 201);
    assert.equal((await legacy.json()).signatureFormat, 'argus-legacy');

    // As the Go SDK sends it: no id (the legacy form does not cover one; the server assigns it).
    const { id: _unused, ...idless } = nativeEvent(actor);
    const goSdk = await post(legacySigned(keys, 'go-sdk', idless));
    assert.equal(goSdk.status, 201);
    const goSdkRecord = await goSdk.json();
    assert.equal(goSdkRecord.signatureFormat, 'argus-legacy');
    assert.equal(typeof goSdkRecord.id, 'string');
    const idlessModern = await post(wire({ ...idless, signature: 'AAAA', signatureAlgorithm: 'EdDSA', publicKeyId: 'modern' }));
    assert.equal(idlessModern.status, 400, 'an RFC 8785 signature still needs the client id');
    assert.match((await idlessModern.json()).details, /must carry its own "id"/);

    const modern = await post(wire(await signEvent(nativeEvent(actor) as never, privateKeySigner('modern', keys.ed.privateKey)) as never));
    assert.equal(modern.status, 201);
    assert.equal((await modern.json()).signatureFormat, undefined);

    const refused: Array<[string, Record<string, unknown>, string]> = [
      ['tampered', legacySigned(keys, 'go-sdk', nativeEvent(actor), { targetId: 'doc-2' }), 'bad_signature'],
      ['ambiguous', legacySigned(keys, 'go-sdk', nativeEvent('x|SERVICE', { targetType: 'RESOURCE', targetId: 't' })), 'ambiguous_legacy_form'],
      ['legacy form, key not marked', legacySigned(keys, 'modern', nativeEvent(actor)), 'legacy_form_not_allowed'],
    ];
    for (const [name, body, reason] of refused) {
      const res = await post(body);
      assert.equal(res.status, 400, name);
      assert.match((await res.json()).details, new RegExp(`signature verification failed \\(${reason}\\)`), name);
    }
    assert.equal(await count(), 3);
    const stored = await db.sql(`SELECT canonical FROM auditpipe.chain_events WHERE event_id = '${legacyEvent.id}'`);
    assert.match(stored.rows[0].canonical, /"signatureFormat":"argus-legacy"/);

    // (The chain may still lack its first checkpoint here; only the signature part is asserted.)
    const intact = JSON.parse(verifyCli().stdout);
    assert.equal(intact.signatures.verified, 3);
    assert.deepEqual(intact.signatures.findings, []);

    await db.sql(`UPDATE auditpipe.chain_events SET canonical = replace(canonical, '"targetId":"doc-1"', '"targetId":"doc-9"') WHERE event_id = '${legacyEvent.id}'`);
    const tampered = verifyCli();
    assert.equal(tampered.status, 1);
    const findings = JSON.parse(tampered.stdout).signatures.findings;
    assert.deepEqual(findings.map((f: { eventId: string; reason: string }) => [f.eventId, f.reason]), [[legacyEvent.id, 'bad_signature']]);
  });
});
