import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateKeyPairSync } from 'node:crypto';
import { privateKeySigner, signEvent } from '../../../src/security/signatures.ts';
import { startEngine, type TestEngine } from '../../helpers/engine.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const PLUGINS = path.join(ROOT, 'test/fixtures/plugins-example.json');
const TOKEN = 'ingest-secret-token';

const argusItem = (over: Record<string, unknown> = {}) => ({
  timestamp: '2026-03-04T05:06:07.123456789Z',
  status: 'SUCCESS',
  eventType: 'USER_MANAGEMENT',
  action: 'CREATE',
  actorType: 'SERVICE',
  actorId: 'svc-a',
  targetType: 'RESOURCE',
  targetId: 'r-1',
  traceId: '0191f3c4-1b2a-7c3d-8e4f-123456789abc',
  message: Buffer.from(JSON.stringify({ submission: 42 })).toString('base64'),
  metadata: { ip: '10.0.0.1' },
  ...over,
});

describe('HTTP source', () => {
  let t: TestEngine;
  let stored: string;
  const post = (route: string, body: string | object, headers: Record<string, string> = {}) =>
    fetch(t.url() + route, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
  const lines = () => (existsSync(stored) ? readFileSync(stored, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) : []);

  before(async () => {
    t = await startEngine({
      pipelines: [{
        name: 'test',
        source: { type: 'http', listen: '127.0.0.1:0', tokens: [TOKEN, { token: 'reader', scopes: ['read'] }], max_body_bytes: 64 * 1024, max_events_per_request: 50 },
        batch: { max_events: 100, interval_ms: 10 },
        nak_delay_ms: 2000,
        sinks: [{ type: 'ndjson_file', path: 'events.ndjson', retry: { max_attempts: 2, initial_backoff_ms: 5, max_elapsed_ms: 1000 } }],
      }],
    }, { pluginsFile: PLUGINS });
    stored = path.join(t.dir, 'data', 'events.ndjson');
  });
  after(() => t.stop());

  it('answers 200 only after the events were written, with their ids', async () => {
    const res = await post('/v1/events', '{"id":"n1","actorId":"a"}\n{"id":"n2"}\n{"id":"n3","actorId":"b"}\n', { 'content-type': 'application/x-ndjson' });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { written: 3, ids: ['n1', 'n2', 'n3'] });
    const ids = lines().map((l) => l.id);
    for (const id of ['n1', 'n2', 'n3']) assert.ok(ids.includes(id), `${id} must be stored before the answer`);
  });

  it('accepts a single object and a JSON array', async () => {
    assert.equal((await post('/v1/events', { id: 'o1' })).status, 200);
    assert.equal((await post('/v1/events', [{ id: 'o2' }, { id: 'o3' }])).status, 200);
    const ids = lines().map((l) => l.id);
    assert.ok(['o1', 'o2', 'o3'].every((id) => ids.includes(id)));
  });

  it('stores the valid items and reports the invalid ones with 207', async () => {
    const res = await post('/v1/events', '{"id":"p1"}\n{broken\n{"id":7}\n{"id":"p2","time":"2026-01-01T00:00:00Z"}\n', { 'content-type': 'application/x-ndjson' });
    assert.equal(res.status, 207);
    const body = await res.json();
    assert.deepEqual(body.ids, ['p1', 'p2']);
    assert.deepEqual(body.failed.map((f: { index: number }) => f.index), [1, 2]);
    assert.match(body.failed[0].error, /line 2: malformed JSON/);
    assert.match(body.failed[1].error, /"id" must be a string/);
    const ids = lines().map((l) => l.id);
    assert.ok(ids.includes('p1') && ids.includes('p2'));
  });

  it('answers every error as JSON {error, details} and loses no valid event sent alongside', async () => {
    const cases: Array<[string, Promise<Response>, number]> = [
      ['malformed JSON', post('/v1/events', '{"id": '), 400],
      ['no valid event', post('/v1/events', [1, 2]), 400],
      ['too large', post('/v1/events', JSON.stringify({ blob: 'x'.repeat(70 * 1024) })), 413],
      ['too many events', post('/v1/events', Array.from({ length: 51 }, (_, i) => ({ id: `many${i}` }))), 413],
      ['wrong content type', post('/v1/events', 'a=b', { 'content-type': 'application/x-www-form-urlencoded' }), 415],
      ['no token', fetch(t.url() + '/v1/events', { method: 'POST', body: '{}' }), 401],
      ['wrong token', post('/v1/events', {}, { authorization: 'Bearer nope' }), 401],
      ['read-only token', post('/v1/events', {}, { authorization: 'Bearer reader' }), 403],
      ['unknown route', post('/v2/nothing', {}), 404],
      ['wrong method', fetch(t.url() + '/v1/events', { headers: { authorization: `Bearer ${TOKEN}` } }), 405],
      ['valid alongside', post('/v1/events', { id: 'survivor' }), 200],
    ];
    for (const [name, pending, status] of cases) {
      const res = await pending;
      assert.equal(res.status, status, name);
      const body = await res.json();
      if (status !== 200) {
        assert.equal(typeof body.error, 'string', name);
        assert.equal(typeof body.details, 'string', name);
      }
    }
    const ids = lines().map((l) => l.id);
    assert.ok(ids.includes('survivor'));
    assert.ok(!ids.some((id: string) => id.startsWith('many')));
  });

  it('never echoes the presented token', async () => {
    const res = await post('/v1/events', {}, { authorization: 'Bearer super-secret-wrong' });
    assert.ok(!(await res.text()).includes('super-secret-wrong'));
  });

  it('keeps /healthz, /readyz and /metrics public', async () => {
    for (const route of ['/healthz', '/readyz', '/metrics']) {
      assert.equal((await fetch(t.url() + route)).status, 200, route);
    }
  });

  it('answers 503 with Retry-After while the required sink fails, and stores once it recovers', async () => {
    rmSync(stored);
    mkdirSync(stored); // the sink now fails with EISDIR on every attempt
    try {
      const res = await post('/v1/events', { id: 'during-outage' });
      assert.equal(res.status, 503);
      assert.equal(res.headers.get('retry-after'), '2');
      assert.match((await res.json()).details, /EISDIR/);
      const ready = await fetch(t.url() + '/readyz');
      assert.equal(ready.status, 503);
    } finally {
      rmSync(stored, { recursive: true });
    }
    const retried = await post('/v1/events', { id: 'during-outage' });
    assert.equal(retried.status, 200);
    assert.deepEqual(lines().map((l) => l.id), ['during-outage']);
    assert.equal((await fetch(t.url() + '/readyz')).status, 200);
  });

  describe('argus API', () => {
    it('POST /api/audit-logs answers 201 with the argus record', async () => {
      const res = await post('/api/audit-logs', argusItem());
      assert.equal(res.status, 201);
      const record = await res.json();
      assert.match(record.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7/);
      assert.equal(record.timestamp, '2026-03-04T05:06:07.123456789Z');
      assert.deepEqual(record.message, { submission: 42 });
      assert.deepEqual(record.metadata, { ip: '10.0.0.1' });
      assert.equal(record.actorId, 'svc-a');
      assert.ok(record.createdAt);
      const stored = lines().find((l) => l.id === record.id);
      assert.equal(stored.time, '2026-03-04T05:06:07.123456789Z');
      assert.deepEqual(stored.message, { submission: 42 });
      assert.equal(stored.traceId, argusItem().traceId);
    });

    it('applies argus validation with clear reasons', async () => {
      const bad: Array<[Record<string, unknown>, RegExp]> = [
        [{ status: 'MAYBE' }, /status must be SUCCESS or FAILURE/],
        [{ actorType: 'ROBOT' }, /actorType must be one of/],
        [{ targetType: undefined }, /targetType must be one of/],
        [{ timestamp: 'yesterday' }, /RFC 3339/],
        [{ timestamp: undefined }, /timestamp is required/],
        [{ traceId: 'not-a-uuid' }, /traceId must be a UUID/],
        [{ message: '%%%' }, /base64/],
        [{ message: Buffer.from('not json').toString('base64') }, /JSON value/],
        [{ actorId: '' }, /actorId is required/],
        [{ eventType: 'NOPE' }, /eventType must be one of/],
        [{ signature: 'c2ln' }, /must be given together/],
      ];
      for (const [override, reason] of bad) {
        const res = await post('/api/audit-logs', argusItem(override));
        assert.equal(res.status, 400, JSON.stringify(override));
        assert.match((await res.json()).details, reason);
      }
    });

    it('POST /api/audit-logs/bulk answers 201, 207 and 400 like argus', async () => {
      const all = await post('/api/audit-logs/bulk', [argusItem({ actorId: 'b1' }), argusItem({ actorId: 'b2' })]);
      assert.equal(all.status, 201);
      const allBody = await all.json();
      assert.equal(allBody.succeeded.length, 2);
      assert.equal(allBody.failed, undefined);

      const some = await post('/api/audit-logs/bulk', [argusItem({ actorId: 'b3' }), argusItem({ status: 'NO', action: 'DELETE' })]);
      assert.equal(some.status, 207);
      const someBody = await some.json();
      assert.equal(someBody.succeeded.length, 1);
      assert.deepEqual(someBody.failed.map((f: any) => [f.index, f.action]), [[1, 'DELETE']]);
      assert.ok(lines().some((l) => l.actorId === 'b3'));

      const none = await post('/api/audit-logs/bulk', [argusItem({ status: 'NO' })]);
      assert.equal(none.status, 400);
      assert.equal((await none.json()).succeeded.length, 0);

      const empty = await post('/api/audit-logs/bulk', []);
      assert.equal(empty.status, 201);
      assert.deepEqual(await empty.json(), { succeeded: [] });

      // argus failed the whole request for one partially signed item; only that item fails here.
      const partialSignature = await post('/api/audit-logs/bulk', [argusItem({ actorId: 'b4' }), argusItem({ publicKeyId: 'k1' })]);
      assert.equal(partialSignature.status, 207);
      const partialBody = await partialSignature.json();
      assert.deepEqual(partialBody.failed.map((f: any) => f.index), [1]);
      assert.match(partialBody.failed[0].error, /must be given together/);
      assert.ok(lines().some((l) => l.actorId === 'b4'));
    });
  });
});

describe('HTTP source with an argus enums file', () => {
  it('replaces the default lists with the file', async () => {
    const dir = path.join(ROOT, '.cache', 'test-enums');
    mkdirSync(dir, { recursive: true });
    const enums = path.join(dir, 'enums.yaml');
    writeFileSync(enums, 'enums:\n  actorTypes: [ROBOT]\n');
    const t = await startEngine({
      pipelines: [{ name: 'test', source: { type: 'http', listen: '127.0.0.1:0', argus: { enums_file: enums } }, sinks: [{ type: 'ndjson_file', path: 'e.ndjson' }] }],
    }, { pluginsFile: PLUGINS });
    try {
      const post = (body: object) => fetch(t.url() + '/api/audit-logs', { method: 'POST', body: JSON.stringify(body) });
      assert.equal((await post(argusItem({ actorType: 'ROBOT' }))).status, 201);
      assert.equal((await post(argusItem({ actorType: 'SERVICE' }))).status, 400, 'a default value absent from the file is no longer allowed');
    } finally {
      await t.stop();
    }
  });

  it('refuses to start with an invalid enums file', async () => {
    await assert.rejects(
      startEngine({ pipelines: [{ name: 'test', source: { type: 'http', listen: '127.0.0.1:0', argus: { enums_file: '/nonexistent/enums.yaml' } }, sinks: [{ type: 'console' }] }] }),
      /enums file/,
    );
  });
});

describe('HTTP source auth fail-closed', () => {
  it('rejects every ingest when auth is required but no token is configured', async () => {
    const t = await startEngine({
      pipelines: [{ name: 'test', source: { type: 'http', listen: '127.0.0.1:0', auth_required: true }, sinks: [{ type: 'console' }] }],
    });
    try {
      const res = await fetch(t.url() + '/v1/events', { method: 'POST', headers: { authorization: 'Bearer x', 'content-type': 'application/json' }, body: '{}' });
      assert.equal(res.status, 401);
      assert.match((await res.json()).details, /not configured/);
      assert.equal((await fetch(t.url() + '/healthz')).status, 200);
    } finally {
      await t.stop();
    }
  });
});

describe('HTTP source signatures on the native route', () => {
  it('verifies each NDJSON line: valid stored, tampered and unsigned failed with their reasons (required)', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const t = await startEngine({
      pipelines: [{
        name: 'test',
        source: {
          type: 'http', listen: '127.0.0.1:0', signatures: 'required',
          signature_keys: [{ id: 'k1', pem: publicKey.export({ type: 'spki', format: 'pem' }).toString(), actors: ['alice'] }],
        },
        batch: { interval_ms: 10 },
        sinks: [{ type: 'ndjson_file', path: 'signed.ndjson' }],
      }],
    }, { pluginsFile: PLUGINS });
    try {
      const signer = privateKeySigner('k1', privateKey);
      const good = await signEvent({ id: 's1', time: '2026-01-01T00:00:00Z', actorId: 'alice', action: 'read' }, signer);
      const tampered = { ...(await signEvent({ id: 's2', time: '2026-01-01T00:00:00Z', actorId: 'alice', action: 'read' }, signer)), action: 'delete' };
      const otherActor = await signEvent({ id: 's3', time: '2026-01-01T00:00:00Z', actorId: 'bob' }, signer);
      const body = [good, tampered, { id: 's4', actorId: 'alice' }, otherActor].map((e) => JSON.stringify(e)).join('\n');
      const res = await fetch(t.url() + '/v1/events', { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body });
      assert.equal(res.status, 207);
      const answer = await res.json();
      assert.deepEqual(answer.ids, ['s1']);
      assert.deepEqual(answer.failed.map((f: any) => [f.index, /\((\w+)\)/.exec(f.error)?.[1]]), [[1, 'bad_signature'], [2, 'unsigned'], [3, 'key_not_allowed_for_actor']]);
      const stored = readFileSync(path.join(t.dir, 'data', 'signed.ndjson'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      assert.deepEqual(stored.map((e) => e.id), ['s1']);
      assert.equal(stored[0].signature, good.signature, 'the signature is kept with the stored event');
    } finally {
      await t.stop();
    }
  });

  it('refuses to start with signatures on and no key', async () => {
    await assert.rejects(
      startEngine({ pipelines: [{ name: 'test', source: { type: 'http', listen: '127.0.0.1:0', signatures: 'verify-if-present' }, sinks: [{ type: 'console' }] }] }),
      /needs at least one key/,
    );
  });
});
