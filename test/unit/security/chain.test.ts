import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { canonicalJson } from '../../../src/security/canonical-json.ts';
import { canonicalRecord, chainHash, chainHashOfBytes, CHAIN_DOMAIN_TAG, GENESIS_HASH } from '../../../src/security/chain.ts';

const event = { id: 'e1', time: '2026-01-02T03:04:05.678Z', actorId: 'alice', action: 'login', nested: { z: [1, 2], a: 'é' } };

test('the record is the RFC 8785 form of {actor, event, id, receivedAt, seq}', () => {
  const fields = { actor: 'alice', seq: 7, id: 'e1', receivedAt: '2026-01-02T03:04:06.000Z', event };
  const record = canonicalRecord(fields);
  assert.equal(record, canonicalJson(fields));
  assert.equal(canonicalRecord(fields, canonicalJson(event)), record);
});

test('chain hash is SHA-256(tag || previous hash bytes || record), from a fixed all-zero genesis', () => {
  assert.equal(GENESIS_HASH, '0'.repeat(64));
  const record = canonicalRecord({ actor: 'alice', seq: 1, id: 'e1', receivedAt: '2026-01-02T03:04:06.000Z', event });
  const expected = createHash('sha256').update(CHAIN_DOMAIN_TAG).update(Buffer.alloc(32)).update(record).digest('hex');
  assert.equal(chainHash(GENESIS_HASH, record), expected);
  // Fixed vector: a third-party verifier can check its implementation against it.
  assert.equal(chainHash(GENESIS_HASH, '{"actor":"a","event":{"id":"x","time":"2026-01-01T00:00:00Z"},"id":"x","receivedAt":"2026-01-01T00:00:00.000Z","seq":1}'),
    createHash('sha256').update(Buffer.concat([Buffer.from('auditpipe/chain/v1\n'), Buffer.alloc(32), Buffer.from('{"actor":"a","event":{"id":"x","time":"2026-01-01T00:00:00Z"},"id":"x","receivedAt":"2026-01-01T00:00:00.000Z","seq":1}')])).digest('hex'));
});

test('every input changes the hash: previous hash, any field, the sequence', () => {
  const base = { actor: 'alice', seq: 2, id: 'e1', receivedAt: '2026-01-02T03:04:06.000Z', event };
  const prev = 'ab'.repeat(32);
  const h = chainHash(prev, canonicalRecord(base));
  assert.notEqual(chainHash('ac'.repeat(32), canonicalRecord(base)), h);
  assert.notEqual(chainHash(prev, canonicalRecord({ ...base, seq: 3 })), h);
  assert.notEqual(chainHash(prev, canonicalRecord({ ...base, actor: 'bob' })), h);
  assert.notEqual(chainHash(prev, canonicalRecord({ ...base, event: { ...event, action: 'logout' } })), h);
});

test('bad inputs are refused', () => {
  assert.throws(() => chainHash('xyz', '{}'), /64 lowercase hex/);
  assert.throws(() => canonicalRecord({ actor: 'a', seq: 0, id: 'e', receivedAt: 't', event }), /positive safe integer/);
});

test('the hash of a row read as bytes equals chainHash, for every byte of the previous hash; any other hex is refused', () => {
  const record = canonicalRecord({ actor: 'alice', seq: 2, id: 'e1', receivedAt: '2026-01-02T03:04:06.000Z', event });
  // 256 previous hashes of 32 equal bytes, then one spelling every byte value in turn.
  const previous = [...Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, '0').repeat(32)),
    Buffer.from(Array.from({ length: 256 }, (_, byte) => byte)).toString('hex').slice(0, 64)];
  for (const prev of previous) {
    const bytes = Buffer.concat([Buffer.from('xx'), Buffer.from(prev, 'latin1'), Buffer.from('yyy'), Buffer.from(record)]);
    assert.equal(chainHashOfBytes(bytes, 2, bytes, 69, bytes.length), chainHash(prev, record), prev);
  }
  for (const bad of ['A'.repeat(64), `${'0'.repeat(63)}g`, `${'0'.repeat(62)}/0`, `${'0'.repeat(63)}:`, ` ${'0'.repeat(63)}`]) {
    const bytes = Buffer.concat([Buffer.from(bad, 'latin1'), Buffer.from(record)]);
    assert.equal(chainHashOfBytes(bytes, 0, bytes, 64, bytes.length), undefined, bad);
  }
});
