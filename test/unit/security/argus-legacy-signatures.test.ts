import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { describe, it } from 'node:test';
import { buildKeyRegistry, KeyRegistryError } from '../../../src/security/key-registry.ts';
import { withVerifiedFormat } from '../../../src/security/signature-policy.ts';
import { argusLegacySigningInput, signEvent, privateKeySigner, verifyEventSignature } from '../../../src/security/signatures.ts';
import { verifyStoredSignatures } from '../../../src/security/verify-signatures.ts';
import { toEvent } from '../../../src/core/event.ts';

const ed = generateKeyPairSync('ed25519');
const pem = ed.publicKey.export({ type: 'spki', format: 'pem' }).toString();
const registry = buildKeyRegistry([
  { id: 'legacy', pem, format: 'argus-legacy' },
  { id: 'modern', pem },
], undefined, process.cwd());
const AT = new Date('2026-05-01T00:00:00Z');

const base = {
  id: '0196a8e0-0000-7000-8000-000000000009',
  time: '2026-05-01T10:00:00Z',
  eventType: 'DATA_FETCH', action: 'READ', status: 'SUCCESS',
  actorType: 'SERVICE', actorId: 'svc-a', targetType: 'RESOURCE', targetId: 't-1',
  message: { n: 1 },
  metadata: { z: '<x>', a: 1 },
};

// The pipe-joined string as the argus Go SDK documents it (seeds-in-depth §2.9), written out by hand.
const expected = `|2026-05-01T10:00:00Z|DATA_FETCH|READ|SUCCESS|SERVICE|svc-a|RESOURCE|t-1|${Buffer.from('{"n":1}').toString('base64')}|{"a":1,"z":"\\u003cx\\u003e"}`;

function legacySigned(event: Record<string, unknown>, keyId: string, text: string) {
  return { ...event, signature: sign(null, Buffer.from(text, 'utf8'), ed.privateKey).toString('base64'), signatureAlgorithm: 'EdDSA', publicKeyId: keyId };
}

describe('argus legacy signatures', () => {
  it('builds the pipe-joined form in the Go SDK order', () => {
    assert.equal(argusLegacySigningInput(base).toString('utf8'), expected);
  });
  it('accepts a valid legacy signature from a key marked argus-legacy and reports the form', () => {
    const result = verifyEventSignature(legacySigned(base, 'legacy', expected) as never, registry, { actor: 'svc-a', at: AT });
    assert.deepEqual(result, { ok: true, signed: true, keyId: 'legacy', algorithm: 'EdDSA', format: 'argus-legacy' });
  });
  it('refuses a tampered legacy-signed event', () => {
    const tampered = { ...legacySigned(base, 'legacy', expected), targetId: 't-2' };
    const result = verifyEventSignature(tampered as never, registry, { actor: 'svc-a', at: AT });
    assert.equal(result.ok, false);
    assert.equal(!result.ok && result.reason, 'bad_signature');
  });
  it('refuses a legacy signature from a key not marked argus-legacy, saying why', () => {
    const result = verifyEventSignature(legacySigned(base, 'modern', expected) as never, registry, { actor: 'svc-a', at: AT });
    assert.equal(!result.ok && result.reason, 'legacy_form_not_allowed');
  });
  it('refuses an ambiguous legacy event (a "|" inside a joined field)', () => {
    const ambiguous = { ...base, actorId: 'x|SERVICE', targetType: 'RESOURCE', targetId: 't' };
    const text = `|2026-05-01T10:00:00Z|DATA_FETCH|READ|SUCCESS|SERVICE|x|SERVICE|RESOURCE|t|${Buffer.from('{"n":1}').toString('base64')}|{"a":1,"z":"\\u003cx\\u003e"}`;
    const result = verifyEventSignature(legacySigned(ambiguous, 'legacy', text) as never, registry, { actor: 'x|SERVICE', at: AT });
    assert.equal(!result.ok && result.reason, 'ambiguous_legacy_form');
  });
  it('rejects an unknown key format in the registry', () => {
    assert.throws(() => buildKeyRegistry([{ id: 'k', pem, format: 'pipes' }], undefined, process.cwd()), KeyRegistryError);
  });
});

/** One stored chain row as the verifier reads it (only what verifyStoredSignatures looks at). */
function row(event: Record<string, unknown>, seq = 1) {
  return { actor: 'svc-a', seq, eventId: String(event.id), prevHash: '', hash: '', eventTimeMs: 0, receivedAtMs: 0,
    canonical: JSON.stringify({ actor: 'svc-a', event, id: event.id, receivedAt: AT.toISOString(), seq }) };
}
async function reverify(...events: Array<Record<string, unknown>>) {
  return verifyStoredSignatures((async function* () { yield events.map((e, i) => row(e, i + 1)); })(), registry);
}

describe('the verified signature form on the stored event', () => {
  const legacy = legacySigned(base, 'legacy', expected);
  const options = { actorField: 'actorId' };
  it('stamps signatureFormat argus-legacy after a legacy verification, and drops a client-sent one otherwise', () => {
    const stamped = withVerifiedFormat(toEvent(legacy, options), { ok: true, format: 'argus-legacy' }, 'verify-if-present');
    assert.equal(stamped.data.signatureFormat, 'argus-legacy');
    assert.equal(JSON.parse(stamped.json).signatureFormat, 'argus-legacy');
    const forged = withVerifiedFormat(toEvent({ ...base, signatureFormat: 'argus-legacy' }, options), { ok: true }, 'verify-if-present');
    assert.equal(forged.data.signatureFormat, undefined);
  });
  it('re-verifies a stored legacy row and a stored rfc8785 row without the field (older rows)', async () => {
    const modern = await signEvent({ ...base, id: 'evt-modern' }, privateKeySigner('modern', ed.privateKey));
    const report = await reverify({ ...legacy, signatureFormat: 'argus-legacy' }, modern);
    assert.equal(report.verified, 2);
    assert.deepEqual(report.findings, []);
  });
  it('names a tampered stored legacy row, and a row whose recorded form differs from the key', async () => {
    const report = await reverify({ ...legacy, signatureFormat: 'argus-legacy', targetId: 't-9' }, { ...legacy, id: 'evt-unmarked' });
    assert.deepEqual(report.findings.map((f) => [f.eventId, f.reason]), [[base.id, 'bad_signature'], ['evt-unmarked', 'format_mismatch']]);
  });
});
