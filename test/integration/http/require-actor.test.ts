/**
 * require_actor over HTTP against the embedded chain store: an event without the actor is an
 * invalid event (400 alone, a per-item failure in a bulk request) and is not stored, while its
 * neighbours are; with `require_actor: false` it is stored in the chain of the empty actor.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { openEmbedded } from '../../../src/sinks/postgres/db.ts';
import { startEngine, type TestEngine } from '../../helpers/engine.ts';

const chainSink = { type: 'postgres', checkpoint_key_generate: true, checkpoint_interval_ms: 3_600_000 };

describe('require_actor over HTTP, embedded chain store', () => {
  let t: TestEngine;
  let stopped = false;
  before(async () => {
    t = await startEngine({
      pipelines: [
        { name: 'test', source: { type: 'http', listen: '127.0.0.1:0' }, batch: { max_events: 50, interval_ms: 20 }, sinks: [chainSink] },
        { name: 'open', require_actor: false, source: { type: 'http', listen: '127.0.0.1:0' }, batch: { max_events: 50, interval_ms: 20 }, sinks: [chainSink] },
      ],
    });
  });
  after(async () => {
    if (!stopped) await t.stop();
  });

  const post = (pipeline: string, body: string) =>
    fetch(`${t.url(pipeline)}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body });

  /** Rows of a pipeline's embedded store, read after the engine stopped (one process per store). */
  async function storedRows(pipeline: string): Promise<Array<{ event_id: string; actor: string }>> {
    if (!stopped) {
      await t.stop();
      stopped = true;
    }
    const db = await openEmbedded(path.join(t.dir, 'data', 'chain', pipeline), 'test');
    try {
      const result = await sql<{ event_id: string; actor: string }>`SELECT event_id, actor FROM auditpipe.chain_events ORDER BY event_id`.execute(db.kysely);
      return result.rows;
    } finally {
      await db.close();
    }
  }

  it('answers 400 for a single event without an actor, and 207 naming it in a bulk request', async () => {
    const single = await post('test', '{"id":"lonely","action":"login"}\n');
    assert.equal(single.status, 400);
    const singleBody = await single.json();
    assert.equal(singleBody.error, 'no valid event');
    assert.equal(singleBody.details, '"actorId" (the actor id) is required: this pipeline has require_actor on');

    const neither = await post('test', '{"id":"nothing"}\n');
    assert.equal(neither.status, 400);

    const bulk = await post('test', '{"id":"n1","actorId":"alice","action":"login"}\n{"id":"no-actor","action":"login"}\n{"id":"n2","actorId":"bob"}\n');
    assert.equal(bulk.status, 207);
    const body = await bulk.json();
    assert.deepEqual(body.ids, ['n1', 'n2']);
    assert.equal(body.failed.length, 1);
    assert.equal(body.failed[0].index, 1);
    assert.match(body.failed[0].error, /"actorId" \(the actor id\) is required/);

    // The pipeline that turned it off stores the same input whole.
    const open = await post('open', '{"id":"o1","actorId":"alice"}\n{"id":"o-no-actor","action":"login"}\n');
    assert.equal(open.status, 200);
  });

  it('stores the neighbours and not the rejected events; with require_actor off, under the empty actor', async () => {
    assert.deepEqual(await storedRows('test'), [{ event_id: 'n1', actor: 'alice' }, { event_id: 'n2', actor: 'bob' }]);
    assert.deepEqual(await storedRows('open'), [{ event_id: 'o-no-actor', actor: '' }, { event_id: 'o1', actor: 'alice' }]);
  });
});
