import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidEventError, toEvent } from '../../../src/core/event.ts';
import { backoffDelay } from '../../../src/core/retry.ts';

const opts = { actorField: 'actorId' };

describe('toEvent', () => {
  it('keeps every field, fills id and time, and freezes the data', () => {
    const event = toEvent({ actorId: 'alice', action: 'login', nested: { a: [1, 2] } }, opts);
    assert.equal(event.actorId, 'alice');
    assert.match(event.id, /^[0-9a-f-]{36}$/);
    assert.equal(event.time, event.receivedAt);
    assert.deepEqual(JSON.parse(event.json), { id: event.id, time: event.time, actorId: 'alice', action: 'login', nested: { a: [1, 2] } });
    assert.equal(event.bytes, Buffer.byteLength(event.json));
    assert.ok(Object.isFrozen(event.data));
    assert.ok(Object.isFrozen(event.data.nested));
    assert.ok(Object.isFrozen((event.data.nested as { a: unknown }).a), "arrays inside are frozen too");
    assert.throws(() => {
      (event.data as any).action = 'tampered';
    }, TypeError);
  });

  it('prefers the client id, then the fallback id', () => {
    assert.equal(toEvent({ id: 'client' }, { ...opts, fallbackId: 'stream:1' }).id, 'client');
    assert.equal(toEvent({}, { ...opts, fallbackId: 'stream:1' }).id, 'stream:1');
  });

  it('reads the actor from a dotted path', () => {
    assert.equal(toEvent({ actor: { id: 'bob' } }, { actorField: 'actor.id' }).actorId, 'bob');
    assert.equal(toEvent({ user_id: 'u1' }, { actorField: 'user_id' }).actorId, 'u1');
  });

  it('takes an actor id the caller already read instead of reading the actor field, still checked', () => {
    const event = toEvent({ user_id: 42, msg: 'ok' }, { actorField: 'user_id', actorId: '42', requireActor: true });
    assert.equal(event.actorId, '42');
    assert.equal(event.data.user_id, 42, 'the field keeps the number as sent');
    assert.throws(() => toEvent({ user_id: 0 }, { actorField: 'user_id', actorId: '' }), /must not be empty/);
    assert.throws(() => toEvent({}, { actorField: 'user_id', actorId: 'x'.repeat(300) }), /longer than 256/);
  });

  for (const [input, reason] of [
    [[1, 2], /JSON object/],
    ['text', /JSON object/],
    [null, /JSON object/],
    [{ id: 5 }, /"id" must be a string/],
    [{ id: '' }, /must not be empty/],
    [{ actorId: 7 }, /actor id\) must be a string/],
    [{ time: 'yesterday' }, /RFC 3339/],
    [{ time: '2026-13-45T99:00:00Z' }, /RFC 3339/],
    [{ time: '2026-02-30T10:00:00Z' }, /RFC 3339/],
    [{ id: 'x'.repeat(300) }, /longer than 256/],
  ] as const) {
    it(`rejects ${JSON.stringify(input).slice(0, 40)} with a reason`, () => {
      assert.throws(() => toEvent(input, opts), (error: unknown) => error instanceof InvalidEventError && reason.test(error.message));
    });
  }

  it('rejects an event over the size limit', () => {
    assert.throws(() => toEvent({ blob: 'x'.repeat(2_000) }, { ...opts, limits: { maxIdLength: 256, maxActorIdLength: 256, maxEventBytes: 1_000 } }), /over the limit/);
  });

  it('accepts RFC 3339 times with offsets and fractions', () => {
    assert.equal(toEvent({ time: '2026-01-02T03:04:05.123456+02:00' }, opts).time, '2026-01-02T03:04:05.123456+02:00');
  });
});

describe('backoff', () => {
  const policy = { maxAttempts: 10, initialBackoffMs: 100, maxBackoffMs: 1_000, maxElapsedMs: 60_000, attemptTimeoutMs: 1_000 };
  it('grows exponentially up to the cap, with full jitter', () => {
    assert.equal(backoffDelay(policy, 0, () => 0.999), 99);
    assert.equal(backoffDelay(policy, 2, () => 0.999), 399);
    assert.equal(backoffDelay(policy, 20, () => 0.999), 999);
    assert.equal(backoffDelay(policy, 3, () => 0), 0);
  });
});
