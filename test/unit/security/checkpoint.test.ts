import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import {
  checkpointHash, formatCheckpoint, headLeaf, headsRoot, merkleRoot, parseCheckpoint, signCheckpoint, sortHeads,
  verifyCheckpointSignature, type CheckpointBody,
} from '../../../src/security/checkpoint.ts';
import { keyId, loadPrivateKeyEnv, loadPrivateKeyFile, loadPublicKeyFile, writeKeyPair } from '../../../src/security/keys.ts';

const sha = (...parts: Buffer[]) => createHash('sha256').update(Buffer.concat(parts)).digest();

/** RFC 6962 §2.1, written as the RFC states it (recursive split at the largest power of two < n). */
function rfc6962(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return sha();
  if (leaves.length === 1) return sha(Buffer.from([0]), leaves[0]!);
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return sha(Buffer.from([1]), rfc6962(leaves.slice(0, k)), rfc6962(leaves.slice(k)));
}

test('Merkle root equals the RFC 6962 recursive definition for 0..40 leaves', () => {
  const leaves = Array.from({ length: 40 }, (_, i) => Buffer.from(`leaf-${i}`));
  for (let n = 0; n <= 40; n += 1) assert.deepEqual(merkleRoot(leaves.slice(0, n)), rfc6962(leaves.slice(0, n)), `n=${n}`);
  assert.equal(merkleRoot([]).toString('hex'), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
});

test('head leaves are length-prefixed, sorted by UTF-8 bytes, and every head changes the root', () => {
  const leaf = headLeaf({ actor: 'ab', seq: 258, hash: '11'.repeat(32) });
  assert.equal(leaf.toString('hex'), `00000002${Buffer.from('ab').toString('hex')}0000000000000102${'11'.repeat(32)}`);
  const heads = sortHeads([{ actor: 'é', seq: 1, hash: 'aa'.repeat(32) }, { actor: 'z', seq: 2, hash: 'bb'.repeat(32) }, { actor: '', seq: 3, hash: 'cc'.repeat(32) }]);
  assert.deepEqual(heads.map((h) => h.actor), ['', 'z', 'é']);
  const root = headsRoot(heads);
  assert.notEqual(headsRoot([heads[0]!, { ...heads[1]!, seq: 3 }, heads[2]!]), root);
  assert.notEqual(headsRoot([heads[0]!, heads[1]!]), root);
});

const body: CheckpointBody = { origin: 'auditpipe/test', number: 3, time: '2026-01-02T03:04:05.678Z', actors: 2, events: 10, root: 'ab'.repeat(32), previous: 'cd'.repeat(32) };

test('checkpoint text round-trips and is strict', () => {
  const text = formatCheckpoint(body);
  assert.equal(text, `auditpipe checkpoint v1\norigin auditpipe/test\nnumber 3\ntime 2026-01-02T03:04:05.678Z\nactors 2\nevents 10\nroot ${'ab'.repeat(32)}\nprevious ${'cd'.repeat(32)}\n`);
  assert.deepEqual(parseCheckpoint(text), body);
  assert.throws(() => parseCheckpoint(text.replace('number 3', 'number 03')), /not a v1 checkpoint/);
  assert.throws(() => parseCheckpoint(text + 'extra\n'), /not a v1 checkpoint/);
  assert.throws(() => parseCheckpoint(text.replace('events 10', 'events -1')), /not a v1 checkpoint/);
  assert.throws(() => formatCheckpoint({ ...body, origin: 'has space' }), /origin/);
});

test('signed checkpoints verify with the right key only, and any change breaks them', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const other = generateKeyPairSync('ed25519');
  const signed = signCheckpoint(body, privateKey, keyId(publicKey));
  assert.equal(signed.hash, checkpointHash(signed.text));
  assert.equal(verifyCheckpointSignature(signed.text, signed.signature, publicKey), true);
  assert.equal(verifyCheckpointSignature(signed.text, signed.signature, other.publicKey), false);
  assert.equal(verifyCheckpointSignature(signed.text.replace('events 10', 'events 11'), signed.signature, publicKey), false);
  assert.equal(verifyCheckpointSignature(signed.text, 'AAAA', publicKey), false);
  const forged = signCheckpoint(body, other.privateKey, keyId(publicKey));
  assert.equal(verifyCheckpointSignature(forged.text, forged.signature, publicKey), false);
});

test('keygen writes a 0600 private key and a public key; both load; env accepts PEM or its base64', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-keys-'));
  const file = path.join(dir, 'sub', 'checkpoint.key');
  const written = writeKeyPair(file);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.throws(() => writeKeyPair(file), /already exists/);
  const loaded = loadPrivateKeyFile(file);
  assert.equal(loaded.keyId, written.keyId);
  assert.equal(loadPublicKeyFile(written.publicFile).keyId, written.keyId);
  assert.equal(loadPublicKeyFile(file).keyId, written.keyId, 'a private key file yields its public half');
  const pem = readFileSync(file, 'utf8');
  assert.equal(loadPrivateKeyEnv('K', { K: pem })!.keyId, written.keyId);
  assert.equal(loadPrivateKeyEnv('K', { K: Buffer.from(pem).toString('base64') })!.keyId, written.keyId);
  assert.equal(loadPrivateKeyEnv('K', {}), undefined);
  assert.throws(() => loadPrivateKeyEnv('K', { K: 'not a key' }), (e: Error) => /env:K/.test(e.message) && !e.message.includes('not a key'));
  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  assert.throws(() => loadPrivateKeyEnv('K', { K: rsa }), /must be Ed25519/);
  assert.throws(() => loadPrivateKeyFile(path.join(dir, 'missing.key')), /ENOENT/);
});
