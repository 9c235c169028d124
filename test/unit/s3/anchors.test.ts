import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, it } from 'node:test';
import canonicalize from 'canonicalize';
import { FIRST_PREVIOUS, signCheckpoint, type SignedCheckpoint } from '../../../src/security/checkpoint.ts';
import { compareAnchors, parseAnchoredObject, type AnchoredCheckpoint } from '../../../src/sinks/s3/anchors.ts';
import { sha256Hex } from '../../../src/sinks/s3/object.ts';

const keys = generateKeyPairSync('ed25519');
const otherKeys = generateKeyPairSync('ed25519');

function checkpoint(number: number, root: string, key = keys.privateKey, keyId = 'k1'): SignedCheckpoint {
  return signCheckpoint({ origin: 'auditpipe/test', number, time: '2026-11-22T14:00:00.000Z', actors: 1, events: number, root, previous: FIRST_PREVIOUS }, key, keyId);
}

function anchored(signed: SignedCheckpoint): AnchoredCheckpoint {
  const body = Buffer.from(canonicalize(signed)!, 'utf8');
  const parsed = parseAnchoredObject(`k/${signed.number}`, 'v1', body, sha256Hex(body));
  assert.ok('checkpoint' in parsed, JSON.stringify(parsed));
  return parsed.checkpoint;
}

describe('anchored checkpoint objects', () => {
  it('parse back to the signed checkpoint', () => {
    const signed = checkpoint(1, 'a'.repeat(64));
    const a = anchored(signed);
    assert.equal(a.text, signed.text);
    assert.equal(a.hash, signed.hash);
    assert.equal(a.number, 1);
  });

  it('are malformed when the stored hash, the JSON, the text or its hash is wrong', () => {
    const signed = checkpoint(1, 'a'.repeat(64));
    const body = Buffer.from(canonicalize(signed)!, 'utf8');
    const kind = (result: ReturnType<typeof parseAnchoredObject>) => ('finding' in result ? result.finding.kind : 'ok');
    assert.equal(kind(parseAnchoredObject('k', 'v', body, 'f'.repeat(64))), 'anchor-malformed');
    const notJson = Buffer.from('{nope');
    assert.equal(kind(parseAnchoredObject('k', 'v', notJson, sha256Hex(notJson))), 'anchor-malformed');
    const badText = Buffer.from(canonicalize({ ...signed, text: signed.text.replace('number 1', 'number 2') })!);
    assert.equal(kind(parseAnchoredObject('k', 'v', badText, sha256Hex(badText))), 'anchor-malformed');
  });
});

describe('comparing anchors with the store', () => {
  const trusted = { publicKey: keys.publicKey, keyId: 'k1' };
  const original = [checkpoint(1, 'a'.repeat(64)), checkpoint(2, 'b'.repeat(64))];

  it('finds nothing when the store holds the anchored checkpoints', () => {
    assert.deepEqual(compareAnchors(original.map(anchored), original, trusted), []);
  });

  it('reports a store whose checkpoints were rewritten, even re-signed with the right key', () => {
    const rewritten = [original[0]!, checkpoint(2, 'c'.repeat(64))];
    const findings = compareAnchors(original.map(anchored), rewritten, trusted);
    assert.deepEqual(findings.map((f) => [f.kind, f.checkpoint]), [['anchor-mismatch', 2]]);
  });

  it('reports checkpoints deleted from the store', () => {
    const findings = compareAnchors(original.map(anchored), [original[0]!], trusted);
    assert.deepEqual(findings.map((f) => [f.kind, f.checkpoint]), [['anchor-missing-in-store', 2]]);
  });

  it('reports an anchored checkpoint not signed by the trusted key', () => {
    const forged = checkpoint(3, 'd'.repeat(64), otherKeys.privateKey, 'k1');
    const findings = compareAnchors([anchored(forged)], [forged], trusted);
    assert.deepEqual(findings.map((f) => f.kind), ['anchor-signature']);
  });
});
