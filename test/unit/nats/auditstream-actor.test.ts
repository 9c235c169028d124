import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { integerActorEvent } from '../../../src/sources/nats/auditstream/actor.ts';
import { DEFAULT_EVENT_LIMITS } from '../../../src/core/event.ts';

describe("auditstream's integer user_id", () => {
  const options = { actorField: 'user_id', fallbackId: 'seq-1', limits: DEFAULT_EVENT_LIMITS };

  it('is the actor in decimal form, the number kept as sent, with require_actor on or off', () => {
    for (const requireActor of [true, false]) {
      const event = integerActorEvent({ id: 'e1', user_id: 42, msg: 'ok' }, { ...options, requireActor })!;
      assert.equal(event.actorId, '42');
      assert.equal(event.id, 'e1');
      assert.equal(event.data.user_id, 42);
    }
  });

  it('leaves every other message to the generic path', () => {
    assert.equal(integerActorEvent({ id: 'e2', user_id: 'alice' }, options), undefined);
    assert.equal(integerActorEvent({ id: 'e3' }, { ...options, requireActor: true }), undefined);
    assert.equal(integerActorEvent({ id: 'e4', user_id: 2 ** 60 }, options), undefined);
    assert.equal(integerActorEvent([1], options), undefined);
  });
});
