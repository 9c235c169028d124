// Replays the argus Go SDK's requests (test/fixtures/argus-sdk, written from its documented shapes)
// against the argus API with a PostgreSQL sink, and checks what is stored.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TestEngine } from '../../helpers/engine.ts';
import { API_KEY, argusDatabase, argusKeys, startArgus } from './helpers.ts';

const FIXTURES = path.resolve(import.meta.dirname, '../../fixtures/argus-sdk');

interface Fixture {
  readonly route: string;
  readonly headers: Record<string, string>;
  readonly body: unknown;
}
const fixture = (name: string): Fixture => JSON.parse(readFileSync(path.join(FIXTURES, name), 'utf8'));

describe('argus Go SDK requests replayed', () => {
  let db: Awaited<ReturnType<typeof argusDatabase>>;
  let t: TestEngine;
  const replay = (f: Fixture) => {
    const [method, route] = f.route.split(' ');
    const headers = Object.fromEntries(Object.entries(f.headers).map(([k, v]) => [k, v.replace('${API_KEY}', API_KEY)]));
    return fetch(t.url('argus') + route, { method, headers, body: JSON.stringify(f.body) });
  };
  const stored = async (actor: string) =>
    (await db.sql(`SELECT canonical FROM auditpipe.chain_events WHERE actor = '${actor}' ORDER BY seq`)).rows.map((r) => JSON.parse(r.canonical).event);

  before(async () => {
    db = await argusDatabase('argus_sdkfx');
    t = await startArgus({ ...db.env, ARGUS_API_KEY: API_KEY, AUDITPIPE_CHECKPOINT_KEY_FILE: argusKeys().checkpointKeyFile });
  });
  after(async () => {
    await t?.stop();
    await db?.drop();
  });

  it('stores every event of a batched bulk request, fields mapped (timestamp → time, base64 message decoded)', async () => {
    const f = fixture('bulk-batch.json');
    const res = await replay(f);
    assert.equal(res.status, 201);
    const events = await stored('sdk-batch');
    assert.equal(events.length, 5);
    const sent = (f.body as Array<Record<string, unknown>>)[2]!;
    const third = events.find((e) => e.targetId === 'doc-3');
    assert.equal(third.time, sent.timestamp);
    assert.deepEqual(third.message, { n: 3 });
    assert.deepEqual(third.metadata, sent.metadata);
    assert.equal(third.traceId, sent.traceId);
    assert.equal(third.actorType, 'SERVICE');
  });

  it('stores the minimal request (no traceId, eventType, targetId, metadata; message null)', async () => {
    const res = await replay(fixture('bulk-minimal.json'));
    assert.equal(res.status, 201);
    const [event, ...more] = await stored('sdk-min');
    assert.equal(more.length, 0);
    assert.equal(event.status, 'FAILURE');
    assert.equal(event.message, undefined);
  });

  it('stores the single-route request', async () => {
    const res = await replay(fixture('single.json'));
    assert.equal(res.status, 201);
    assert.equal((await stored('sdk-single')).length, 1);
  });

  // The Go SDK retries a whole batch (up to 3 times) and sends no `id`, so the server cannot tell a
  // retry from a new batch: each attempt is stored (at least once, never merged: two identical
  // events in one second are two events). With the client's `id` a retry is stored once
  // (docs/argus.md "Idempotent by id").
  it('a retried bulk request is stored again without ids and once with them', async () => {
    const f = fixture('bulk-minimal.json');
    const body = [{ ...(f.body as Array<Record<string, unknown>>)[0], actorId: 'sdk-retry' }];
    assert.equal((await replay({ ...f, body })).status, 201);
    assert.equal((await replay({ ...f, body })).status, 201);
    assert.equal((await stored('sdk-retry')).length, 2);

    const withId = [{ ...body[0], actorId: 'sdk-retry-id', id: `retry-${Date.now()}` }];
    assert.equal((await replay({ ...f, body: withId })).status, 201);
    assert.equal((await replay({ ...f, body: withId })).status, 201);
    assert.equal((await stored('sdk-retry-id')).length, 1);
  });
});
