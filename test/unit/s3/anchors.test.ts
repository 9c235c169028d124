import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, it } from 'node:test';
import canonicalize from 'canonicalize';
import { FIRST_PREVIOUS, headsRoot, signCheckpoint, sortHeads, type SignedCheckpoint } from '../../../src/security/checkpoint.ts';
import { anchorEvidence, compareAnchors, parseAnchoredObject, type AnchoredCheckpoint } from '../../../src/sinks/s3/anchors.ts';
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

describe('anchored heads', () => {
  const heads = sortHeads([{ actor: 'bob', seq: 2, hash: 'b'.repeat(64) }, { actor: 'alice', seq: 3, hash: 'a'.repeat(64) }]);
  const signed = signCheckpoint({ origin: 'auditpipe/test', number: 1, time: '2026-11-22T14:00:00.000Z', actors: 2, events: 5, root: headsRoot(heads), previous: FIRST_PREVIOUS }, keys.privateKey, 'k1');
  const withHeads = { ...signed, heads: heads.map((h) => [h.actor, h.seq, h.hash]) };
  const parse = (value: unknown) => {
    const body = Buffer.from(canonicalize(value)!, 'utf8');
    return parseAnchoredObject('k/1', 'v1', body, sha256Hex(body));
  };

  it('parse back when they match the signed root', () => {
    const parsed = parse(withHeads);
    assert.ok('checkpoint' in parsed, JSON.stringify(parsed));
    assert.deepEqual(parsed.checkpoint.heads, heads);
  });

  it('are malformed when they do not match the signed root, or are not sorted heads', () => {
    const altered = { ...withHeads, heads: [['alice', 3, 'c'.repeat(64)], withHeads.heads[1]] };
    const parsed = parse(altered);
    assert.ok('finding' in parsed && parsed.finding.kind === 'anchor-malformed' && /signed root/.test(parsed.finding.detail), JSON.stringify(parsed));
    const unsorted = parse({ ...withHeads, heads: [...withHeads.heads].reverse() });
    assert.ok('finding' in unsorted && /sorted/.test(unsorted.finding.detail), JSON.stringify(unsorted));
    const notHeads = parse({ ...withHeads, heads: 'x' });
    assert.ok('finding' in notHeads && notHeads.finding.kind === 'anchor-malformed');
  });

  it('become claims only from checkpoints validly signed by the trusted key', () => {
    const good = parse(withHeads);
    assert.ok('checkpoint' in good);
    const trusted = { publicKey: keys.publicKey, keyId: 'k1' };
    const evidence = anchorEvidence({ checkpoints: [good.checkpoint], findings: [] }, [signed], trusted, 's3://b/p/');
    assert.deepEqual(evidence.findings, []);
    assert.deepEqual(evidence.claims, [{ checkpoint: 1, heads }]);
    assert.deepEqual(anchorEvidence({ checkpoints: [good.checkpoint], findings: [] }, [signed], undefined, 's3://b/p/').claims, []);
    const forged = signCheckpoint({ ...signed }, otherKeys.privateKey, 'k1');
    const forgedParsed = parse({ ...forged, heads: withHeads.heads });
    assert.ok('checkpoint' in forgedParsed);
    const rejected = anchorEvidence({ checkpoints: [forgedParsed.checkpoint], findings: [] }, [forged], trusted, 's3://b/p/');
    assert.deepEqual(rejected.claims, []);
    assert.deepEqual(rejected.findings.map((f) => [f.kind, f.actor, f.checkpoint]), [['anchor-signature', null, 1]]);
  });
});
