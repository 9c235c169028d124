import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, it } from 'node:test';
import { canonicalRecord, chainHash, GENESIS_HASH } from '../../../src/security/chain.ts';
import { buildKeyRegistry } from '../../../src/security/key-registry.ts';
import { privateKeySigner, signEvent } from '../../../src/security/signatures.ts';
import { verifyStoredSignatures } from '../../../src/security/verify-signatures.ts';
import type { VerifyRow } from '../../../src/security/verify.ts';

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const registry = buildKeyRegistry([
  { id: 'k', pem: publicKey.export({ type: 'spki', format: 'pem' }).toString(), actors: ['alice'], not_after: '2026-06-01T00:00:00Z' },
], undefined, '.');

function row(actor: string, seq: number, event: Record<string, unknown>, receivedAt: string): VerifyRow {
  const canonical = canonicalRecord({ actor, seq, id: event.id as string, receivedAt, event: event as never });
  return { actor, seq, eventId: event.id as string, prevHash: GENESIS_HASH, hash: chainHash(GENESIS_HASH, canonical), canonical, eventTimeMs: Date.parse(event.time as string), receivedAtMs: Date.parse(receivedAt) };
}

async function* pages(rows: VerifyRow[]) {
  yield rows;
}

describe('re-verifying stored signatures', () => {
  it('passes signed events as stored, counts unsigned ones, and reports an edited event with its position', async () => {
    const signer = privateKeySigner('k', privateKey);
    const good = await signEvent({ id: 'e1', time: '2026-05-01T00:00:00Z', actorId: 'alice', action: 'READ' }, signer);
    const edited = { ...(await signEvent({ id: 'e2', time: '2026-05-01T00:00:01Z', actorId: 'alice', action: 'READ' }, signer)), action: 'DELETE' };
    const late = await signEvent({ id: 'e3', time: '2026-07-01T00:00:00Z', actorId: 'alice' }, signer);
    const report = await verifyStoredSignatures(pages([
      row('alice', 1, good, '2026-05-01T00:00:00.100Z'),
      row('alice', 2, edited, '2026-05-01T00:00:01.100Z'),
      row('alice', 3, { id: 'e4', time: '2026-05-01T00:00:02Z', actorId: 'alice' }, '2026-05-01T00:00:02.100Z'),
      // Received after the key expired: the server would have refused it, so it is a finding.
      row('alice', 4, late, '2026-07-01T00:00:00.100Z'),
      { ...row('alice', 5, good, '2026-05-01T00:00:00.100Z'), canonical: '{not json' },
    ]), registry);
    assert.equal(report.verified, 1);
    assert.equal(report.unsigned, 1);
    assert.deepEqual(report.findings.map((f) => [f.sequence, f.reason]), [[2, 'bad_signature'], [4, 'key_expired'], [5, 'malformed-record']]);
    assert.equal(report.findings[0]!.eventId, 'e2');
  });
});
