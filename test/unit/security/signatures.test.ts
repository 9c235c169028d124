import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { buildKeyRegistry, KeyRegistryError, StaticKeyRegistry, loadKeySpec } from '../../../src/security/key-registry.ts';
import {
  checkEventSignature, privateKeySigner, SIGNATURE_DOMAIN_TAG, signEvent, signingInput, verifyEventSignature,
} from '../../../src/security/signatures.ts';

const ed = generateKeyPairSync('ed25519');
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const other = generateKeyPairSync('ed25519');
const pem = (key: import('node:crypto').KeyObject) => key.export({ type: 'spki', format: 'pem' }).toString();
const AT = new Date('2026-05-01T00:00:00Z');

const registry = buildKeyRegistry([
  { id: 'ed-1', pem: pem(ed.publicKey) },
  { id: 'rsa-1', jwk: rsa.publicKey.export({ format: 'jwk' }) as Record<string, unknown> },
  { id: 'ed-bound', pem: pem(ed.publicKey), actors: ['svc-a'] },
  { id: 'ed-old', pem: pem(ed.publicKey), not_after: '2026-01-01T00:00:00Z' },
  { id: 'ed-future', pem: pem(ed.publicKey), not_before: '2027-01-01T00:00:00Z' },
], undefined, process.cwd());

const event = {
  id: '0196a8e0-0000-7000-8000-000000000001',
  time: '2026-05-01T10:00:00.123Z',
  actorId: 'svc-a',
  action: 'CREATE',
  status: 'SUCCESS',
  message: { submission: 42, note: 'a|b' },
  metadata: { z: 1, a: [true, null] },
};

describe('event signatures', () => {
  it('signs the domain tag followed by the RFC 8785 form without the signature fields', async () => {
    const signed = await signEvent(event, privateKeySigner('ed-1', ed.privateKey));
    const input = signingInput(signed).toString('utf8');
    assert.ok(input.startsWith(SIGNATURE_DOMAIN_TAG));
    assert.equal(input.slice(SIGNATURE_DOMAIN_TAG.length),
      '{"action":"CREATE","actorId":"svc-a","id":"0196a8e0-0000-7000-8000-000000000001","message":{"note":"a|b","submission":42},"metadata":{"a":[true,null],"z":1},"status":"SUCCESS","time":"2026-05-01T10:00:00.123Z"}');
    assert.deepEqual(signingInput(signed), signingInput(event));
    assert.equal(signed.signatureVersion, 1);
  });

  it('matches a fixed Ed25519 known-answer vector (docs/argus.md)', async () => {
    const seed = Buffer.alloc(32, 7);
    // PKCS#8 wrapping of a raw Ed25519 seed (RFC 8410).
    const privateKey = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]), format: 'der', type: 'pkcs8' });
    const x = createPublicKey(privateKey).export({ format: 'jwk' }).x;
    const vectorEvent = { id: 'evt-1', time: '2026-01-02T03:04:05Z', actorId: 'alice', action: 'READ' };
    const signed = await signEvent(vectorEvent, privateKeySigner('k1', privateKey));
    assert.equal(x, '6kpsY-KcUgq-9VB7Ey7F-ZVHdq6-vnuSQh7qaRRG0iw');
    assert.equal(signed.signature, KNOWN_SIGNATURE);
  });

  it('verifies Ed25519 and RS256 (and PS256) signatures', async () => {
    for (const [keyId, key, algorithm] of [['ed-1', ed.privateKey, undefined], ['rsa-1', rsa.privateKey, 'RS256'], ['rsa-1', rsa.privateKey, 'PS256']] as const) {
      const signed = await signEvent(event, privateKeySigner(keyId, key, algorithm));
      const result = verifyEventSignature(signed, registry, { actor: 'svc-a', at: AT });
      assert.equal(result.ok, true, JSON.stringify(result));
    }
  });

  it('gives a distinct reason for each way a signature fails', async () => {
    const signed = await signEvent(event, privateKeySigner('ed-1', ed.privateKey));
    const reason = (e: Record<string, unknown>, actor = 'svc-a') => {
      const r = verifyEventSignature(e as never, registry, { actor, at: AT });
      return r.ok ? 'ok' : r.reason;
    };
    assert.equal(reason({ ...signed, status: 'FAILURE' }), 'bad_signature');
    assert.equal(reason({ ...signed, message: { submission: 43, note: 'a|b' } }), 'bad_signature');
    assert.equal(reason(await signEvent(event, privateKeySigner('ed-1', other.privateKey))), 'bad_signature');
    assert.equal(reason({ ...signed, publicKeyId: 'nobody' }), 'unknown_key');
    assert.equal(reason(await signEvent(event, privateKeySigner('ed-bound', ed.privateKey)), 'svc-b'), 'key_not_allowed_for_actor');
    assert.equal(reason(await signEvent(event, privateKeySigner('ed-bound', ed.privateKey)), 'svc-a'), 'ok');
    assert.equal(reason(await signEvent(event, privateKeySigner('ed-old', ed.privateKey))), 'key_expired');
    assert.equal(reason(await signEvent(event, privateKeySigner('ed-future', ed.privateKey))), 'key_not_yet_valid');
    assert.equal(reason({ ...signed, signatureAlgorithm: 'RS256' }), 'algorithm_not_allowed');
    assert.equal(reason({ ...signed, signature: 'not base64!' }), 'malformed');
    assert.equal(reason({ ...signed, signatureVersion: 2 }), 'malformed');
    const { id: _id, ...withoutId } = signed;
    assert.equal(reason(withoutId), 'malformed');
  });

  it('applies the mode: off ignores, verify-if-present accepts unsigned, required rejects unsigned', async () => {
    const opts = { actor: 'svc-a', at: AT };
    assert.deepEqual(checkEventSignature(event, registry, 'verify-if-present', opts), { ok: true, signed: false });
    const required = checkEventSignature(event, registry, 'required', opts);
    assert.equal(required.ok === false && required.reason, 'unsigned');
    assert.deepEqual(checkEventSignature({ ...event, signature: 'x', publicKeyId: 'nope', signatureAlgorithm: 'EdDSA' }, registry, 'off', opts), { ok: true, signed: false });
    const signed = await signEvent(event, privateKeySigner('ed-1', ed.privateKey));
    assert.equal(checkEventSignature(signed, registry, 'required', opts).ok, true);
  });

  it('does not confuse field boundaries the way a pipe-joined form does', async () => {
    const a = { id: 'e', time: '2026-01-01T00:00:00Z', actorId: 'x|SERVICE', targetType: 'RESOURCE', targetId: 't' };
    const b = { id: 'e', time: '2026-01-01T00:00:00Z', actorId: 'x', targetType: 'SERVICE', targetId: 'RESOURCE|t' };
    const signed = await signEvent(a, privateKeySigner('ed-1', ed.privateKey));
    const forged = { ...b, signature: signed.signature, signatureAlgorithm: 'EdDSA', publicKeyId: 'ed-1' };
    assert.equal(verifyEventSignature(forged, registry, { actor: 'x', at: AT }).ok, false);
  });
});

describe('key registry', () => {
  it('loads PEM files, JWKs and JWKS files relative to their directory', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'keys-'));
    writeFileSync(path.join(dir, 'ed.pem'), pem(ed.publicKey));
    writeFileSync(path.join(dir, 'jwks.json'), JSON.stringify({ keys: [{ ...rsa.publicKey.export({ format: 'jwk' }), kid: 'rsa-from-jwks', alg: 'RS256', actors: ['svc-a'] }] }));
    const loaded = buildKeyRegistry([{ id: 'ed-file', pem_file: 'ed.pem' }], 'jwks.json', dir);
    assert.deepEqual(loaded.ids().sort(), ['ed-file', 'rsa-from-jwks']);
    assert.deepEqual(loaded.get('rsa-from-jwks')!.algorithms, ['RS256']);
    assert.deepEqual([...loaded.get('rsa-from-jwks')!.actors!], ['svc-a']);
  });

  it('rejects private keys, short RSA keys, unknown keys, duplicates and bad times, naming the key', () => {
    const dir = process.cwd();
    const privatePem = ed.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    assert.throws(() => loadKeySpec({ id: 'p', pem: privatePem }, 0, dir), /private key/);
    assert.throws(() => loadKeySpec({ id: 'j', jwk: ed.privateKey.export({ format: 'jwk' }) as Record<string, unknown> }, 0, dir), /private key material/);
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 });
    assert.throws(() => loadKeySpec({ id: 'weak', pem: pem(weak.publicKey) }, 0, dir), /too short/);
    assert.throws(() => loadKeySpec({ id: 'x', pem: pem(ed.publicKey), colour: 'red' } as never, 0, dir), /unknown key "colour"/);
    assert.throws(() => loadKeySpec({ id: 'x', pem: pem(ed.publicKey), not_after: 'tomorrow' }, 0, dir), /not_after must be an RFC 3339/);
    assert.throws(() => loadKeySpec({ id: 'x' }, 0, dir), /exactly one of pem, pem_file, jwk/);
    assert.throws(() => loadKeySpec({ id: 'x', pem_file: 'missing.pem' }, 0, dir), /cannot read pem_file/);
    assert.throws(() => new StaticKeyRegistry([loadKeySpec({ id: 'd', pem: pem(ed.publicKey) }, 0, dir), loadKeySpec({ id: 'd', pem: pem(ed.publicKey) }, 1, dir)]), KeyRegistryError);
  });
});

const KNOWN_SIGNATURE = 'Z0/ov4d4b84K1d5yhmKkgpUiqO4RVzXQLm1GkjrOXR/i3RfRwWwvvxa+BIIGBufEG7aEcCCMzcBgZss6JEkuBw==';

describe('signature policy (what a source applies)', () => {
  it('shares one failure counter per registry across sources and counts each reason', async () => {
    const { Registry } = await import('prom-client');
    const { SignaturePolicy } = await import('../../../src/security/signature-policy.ts');
    const metrics = new Registry();
    const http = new SignaturePolicy('required', registry, { pipeline: 'p1' as never, metrics });
    const nats = new SignaturePolicy('verify-if-present', registry, { pipeline: 'p2' as never, metrics });
    assert.equal(http.check(event, 'svc-a', AT).ok, false);
    assert.equal(nats.check(event, 'svc-a', AT).ok, true);
    const signed = await signEvent(event, privateKeySigner('ed-1', ed.privateKey));
    const verdict = nats.check({ ...signed, action: 'DELETE' }, 'svc-a', AT);
    assert.equal(verdict.ok === false && verdict.reason, 'bad_signature');
    const text = await metrics.metrics();
    assert.match(text, /auditpipe_signature_failures_total\{pipeline="p1",reason="unsigned"\} 1/);
    assert.match(text, /auditpipe_signature_failures_total\{pipeline="p2",reason="bad_signature"\} 1/);
    assert.match(text, /auditpipe_signature_failures_total\{pipeline="p2",reason="unknown_key"\} 0/);
    assert.throws(() => new SignaturePolicy('required', new StaticKeyRegistry(), { pipeline: 'p3' as never, metrics }), /needs at least one key/);
  });
});
