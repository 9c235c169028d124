// The argus API on the argus preset over real PostgreSQL: what argus clients send (JSON arrays
// to /api/audit-logs/bulk, base64 `message`, `Authorization: Bearer`) and what they read back.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TestEngine } from '../../helpers/engine.ts';
import { API_KEY, argusDatabase, argusKeys, argusRequest, freePort, INGEST_KEY, READ_KEY, startArgus } from './helpers.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const TRACE = '0191f3c4-1b2a-7c3d-8e4f-123456789abc';

describe('argus API on PostgreSQL (argus preset)', () => {
  let t: TestEngine;
  let db: Awaited<ReturnType<typeof argusDatabase>>;
  const call = (route: string, init: RequestInit & { key?: string | null } = {}) => {
    const { key = API_KEY, headers, ...rest } = init;
    return fetch(t.url('argus') + route, { ...rest, headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(headers as Record<string, string>) } });
  };
  const post = (route: string, body: unknown, key: string | null = API_KEY) => call(route, { method: 'POST', body: JSON.stringify(body), key });

  before(async () => {
    db = await argusDatabase('argus_api');
    const keys = argusKeys();
    t = await startArgus({
      ...db.env,
      ARGUS_API_KEY: API_KEY,
      ARGUS_READ_API_KEYS: READ_KEY,
      ARGUS_INGEST_API_KEYS: INGEST_KEY,
      AUDITPIPE_CHECKPOINT_KEY_FILE: keys.checkpointKeyFile,
      CORS_ALLOWED_ORIGINS: 'https://console.example.org, http://localhost:5173',
    });
  });
  after(async () => {
    await t?.stop();
    await db?.drop();
  });

  it('serves /health, /version and /metrics publicly as argus did', async () => {
    const health = await fetch(t.url('argus') + '/health');
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { service: 'argus', status: 'healthy' });
    const version = await (await fetch(t.url('argus') + '/version')).json();
    assert.deepEqual(Object.keys(version).sort(), ['buildTime', 'gitCommit', 'service', 'version']);
    assert.equal(version.service, 'argus');
    const metrics = await fetch(t.url('argus') + '/metrics');
    assert.equal(metrics.status, 200);
    assert.match(await metrics.text(), /auditpipe_signature_failures_total/);
  });

  it('POST /api/audit-logs answers 201 with the argus record and its chain position', async () => {
    const res = await post('/api/audit-logs', argusRequest({ traceId: TRACE, actorId: 'api-single' }));
    assert.equal(res.status, 201);
    const record = await res.json();
    for (const field of ['id', 'timestamp', 'traceId', 'status', 'eventType', 'action', 'actorType', 'actorId', 'targetType', 'targetId', 'message', 'metadata', 'previousHash', 'currentHash', 'createdAt']) {
      assert.ok(field in record, `record has ${field}`);
    }
    assert.deepEqual(record.message, { submission_id: 'sub-1' }, 'message goes in as base64 and comes back decoded, as in argus');
    assert.equal(record.sequence, 1);
    assert.match(record.currentHash, /^[0-9a-f]{64}$/);
    const rows = await db.sql(`SELECT actor, seq FROM auditpipe.chain_events WHERE event_id = '${record.id}'`);
    assert.deepEqual(rows.rows, [{ actor: 'api-single', seq: '1' }]);
  });

  it('POST /api/audit-logs/bulk answers 201, 207 (only the bad items listed) and 400 like argus', async () => {
    const all = await post('/api/audit-logs/bulk', [argusRequest({ actorId: 'bulk-1' }), argusRequest({ actorId: 'bulk-1' })]);
    assert.equal(all.status, 201);
    const allBody = await all.json();
    assert.equal(allBody.succeeded.length, 2);
    assert.equal(allBody.failed, undefined);
    assert.deepEqual(allBody.succeeded.map((r: any) => r.sequence), [1, 2]);
    assert.equal(allBody.succeeded[1].previousHash, allBody.succeeded[0].currentHash);

    const some = await post('/api/audit-logs/bulk', [argusRequest({ actorId: 'bulk-2' }), argusRequest({ status: 'MAYBE', action: 'DELETE' }), argusRequest({ actorId: 'bulk-2', timestamp: 'yesterday' })]);
    assert.equal(some.status, 207);
    const someBody = await some.json();
    assert.equal(someBody.succeeded.length, 1);
    assert.deepEqual(someBody.failed.map((f: any) => [f.index, f.action]), [[1, 'DELETE'], [2, 'CREATE']]);
    assert.match(someBody.failed[0].error, /status must be SUCCESS or FAILURE/);

    const none = await post('/api/audit-logs/bulk', [argusRequest({ actorType: 'ROBOT' })]);
    assert.equal(none.status, 400);
    assert.deepEqual((await none.json()).succeeded, []);
    const broken = await call('/api/audit-logs/bulk', { method: 'POST', body: '[{"broken' });
    assert.equal(broken.status, 400);
    assert.equal(typeof (await broken.json()).error, 'string');
    const empty = await post('/api/audit-logs/bulk', []);
    assert.equal(empty.status, 201);
    assert.deepEqual(await empty.json(), { succeeded: [] });
  });

  it('stores a retried request once when the client gives the id', async () => {
    const request = argusRequest({ id: '01960000-0000-7000-8000-00000000aaaa', actorId: 'retry' });
    const first = await (await post('/api/audit-logs', request)).json();
    const second = await (await post('/api/audit-logs', request)).json();
    assert.equal(second.currentHash, first.currentHash);
    const rows = await db.sql(`SELECT count(*)::int AS n FROM auditpipe.chain_events WHERE actor = 'retry'`);
    assert.equal(rows.rows[0].n, 1);
  });

  describe('reads', () => {
    before(async () => {
      const base = Date.parse('2026-02-01T00:00:00Z');
      const items = Array.from({ length: 30 }, (_, i) => argusRequest({
        actorId: `reader-${i % 3}`,
        timestamp: new Date(base + i * 60_000).toISOString(),
        traceId: i % 10 === 0 ? TRACE.replace('abc', `a${String(i).padStart(2, '0')}`) : undefined,
        eventType: i % 2 === 0 ? 'DATA_FETCH' : 'USER_MANAGEMENT',
        action: i % 5 === 0 ? 'DELETE' : 'READ',
        status: i % 4 === 0 ? 'FAILURE' : 'SUCCESS',
        targetId: `doc-${i}`,
        metadata: { i },
      }));
      const res = await post('/api/audit-logs/bulk', items);
      assert.equal(res.status, 201);
    });
    const list = async (query: string, key = API_KEY) => {
      const res = await call(`/api/audit-logs?${query}`, { key });
      assert.equal(res.status, 200, await res.clone().text());
      return res.json();
    };
    const window = 'from=2026-02-01T00:00:00Z&to=2026-02-02T00:00:00Z';

    it('lists newest first in argus shape, message only with includeMessage=true, no hashes', async () => {
      const body = await list(`${window}&limit=5`);
      assert.deepEqual(Object.keys(body).filter((k) => ['logs', 'total', 'limit', 'offset'].includes(k)).sort(), ['limit', 'logs', 'offset', 'total']);
      assert.equal(body.logs.length, 5);
      assert.equal(body.limit, 5);
      assert.equal(body.offset, 0);
      const times = body.logs.map((l: any) => l.timestamp);
      assert.deepEqual(times, [...times].sort().reverse());
      assert.equal(body.logs[0].message, undefined);
      assert.equal(body.logs[0].currentHash, undefined);
      const withMessage = await list(`${window}&limit=1&includeMessage=true`);
      assert.deepEqual(withMessage.logs[0].message, { submission_id: 'sub-1' });
    });

    it('filters by traceId, eventType, action, status, actorId, targetId and time range', async () => {
      const count = async (query: string) => (await list(`${window}&limit=1000&${query}`)).logs.length;
      assert.equal(await count(''), 30);
      assert.equal(await count(`traceId=${TRACE.replace('abc', 'a10')}`), 1);
      assert.equal(await count('eventType=DATA_FETCH'), 15);
      assert.equal(await count('action=DELETE'), 6);
      assert.equal(await count('status=FAILURE'), 8);
      assert.equal(await count('actorId=reader-1'), 10);
      assert.equal(await count('targetId=doc-7'), 1);
      assert.equal(await count('actorId=reader-0&action=DELETE&status=FAILURE'), 1); // i divisible by 3, 5 and 4: only 0
      assert.equal((await list('from=2026-02-01T00:10:00Z&to=2026-02-01T00:20:00Z')).logs.length, 10);
    });

    it('pages by offset and by cursor without repeating or skipping', async () => {
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const body = await list(`${window}&limit=7${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
        seen.push(...body.logs.map((l: any) => l.id));
        cursor = body.nextCursor;
      } while (cursor);
      assert.equal(seen.length, 30);
      assert.equal(new Set(seen).size, 30);
      const byOffset = await list(`${window}&limit=7&offset=7`);
      assert.deepEqual(byOffset.logs.map((l: any) => l.id), seen.slice(7, 14));
      const filtered: string[] = [];
      cursor = undefined;
      do {
        const body = await list(`${window}&limit=2&status=FAILURE${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
        filtered.push(...body.logs.map((l: any) => l.id));
        cursor = body.nextCursor;
      } while (cursor);
      assert.equal(filtered.length, 8);
    });

    it('caps limit at 1000 and replaces an invalid one by 100, as argus did; rejects bad filters with 400', async () => {
      assert.equal((await list(`${window}&limit=5000`)).limit, 1000);
      assert.equal((await list(`${window}&limit=abc`)).limit, 100);
      for (const query of ['traceId=not-a-uuid', 'from=yesterday', 'offset=20000', 'cursor=bogus']) {
        const res = await call(`/api/audit-logs?${query}`);
        assert.equal(res.status, 400, query);
        assert.equal(typeof (await res.json()).details, 'string');
      }
    });

    it('GET /api/audit-logs/{id} returns the record with its chain position; 404 when unknown', async () => {
      const [first] = (await list(`${window}&actorId=reader-2&limit=1`)).logs;
      const res = await call(`/api/audit-logs/${first.id}`);
      assert.equal(res.status, 200);
      const record = await res.json();
      assert.equal(record.id, first.id);
      assert.equal(typeof record.sequence, 'number');
      assert.match(record.previousHash, /^[0-9a-f]{64}$/);
      assert.match(record.currentHash, /^[0-9a-f]{64}$/);
      const row = await db.sql(`SELECT seq, prev_hash, hash FROM auditpipe.chain_events WHERE event_id = '${first.id}'`);
      assert.deepEqual([String(record.sequence), record.previousHash, record.currentHash], [row.rows[0].seq, row.rows[0].prev_hash, row.rows[0].hash]);
      const missing = await call('/api/audit-logs/no-such-id');
      assert.equal(missing.status, 404);
    });

    it('GET /api/audit-summary answers argus shape for today (UTC)', async () => {
      await post('/api/audit-logs', argusRequest({ actorId: 'today', action: 'UPDATE' }));
      const res = await call('/api/audit-summary');
      assert.equal(res.status, 200);
      const body = await res.json();
      assert.equal(body.date, new Date().toISOString().slice(0, 10));
      assert.match(body.summary, /^Audit activity report for [A-Z][a-z]+ \d{2}, \d{4}$/);
      const mine = body.runtimeActivity.find((a: any) => a.actor === 'today');
      assert.deepEqual(Object.keys(mine).sort(), ['action', 'actor', 'actorType', 'eventType', 'id', 'status', 'timestamp']);
      assert.ok(!body.runtimeActivity.some((a: any) => a.timestamp.startsWith('2026-02-01')), 'only today');
      assert.ok(body.chain.events >= 35);
    });
  });

  it('scopes tokens: a read token cannot ingest, an ingest token cannot read', async () => {
    assert.equal((await post('/api/audit-logs', argusRequest(), READ_KEY)).status, 403);
    assert.equal((await post('/api/audit-logs/bulk', [argusRequest()], READ_KEY)).status, 403);
    assert.equal((await call('/api/audit-logs', { key: READ_KEY })).status, 200);
    assert.equal((await call('/api/audit-logs', { key: INGEST_KEY })).status, 403);
    assert.equal((await call('/api/audit-summary', { key: INGEST_KEY })).status, 403);
    assert.equal((await post('/api/audit-logs', argusRequest({ actorId: 'ingest-only' }), INGEST_KEY)).status, 201);
    assert.equal((await call('/api/audit-logs', { key: null })).status, 401);
    assert.equal((await call('/api/audit-logs', { key: 'wrong' })).status, 401);
  });

  it("exports argus's metric names with bounded labels, 401s counted too", async () => {
    await call('/api/audit-logs', { key: 'wrong' });
    const text = await (await fetch(t.url('argus') + '/metrics')).text();
    const value = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? NaN);
    assert.ok(value(/^argus_logs_ingested_total (\d+)/m) >= 35);
    assert.ok(value(/^argus_http_requests_total\{path="\/api\/audit-logs",method="GET",status="401"\} (\d+)/m) >= 1);
    assert.match(text, /^argus_http_requests_total\{path="\/api\/audit-logs\/\{id\}",method="GET",status="404"\} 1$/m);
    assert.match(text, /^argus_signature_verification_errors_total 0$/m);
    assert.ok(!text.includes('no-such-id'), 'raw paths never become labels');
  });

  it('answers CORS preflights before auth and puts CORS headers on 401s', async () => {
    const preflight = await fetch(t.url('argus') + '/api/audit-logs/bulk', {
      method: 'OPTIONS',
      headers: { origin: 'https://console.example.org', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get('access-control-allow-origin'), 'https://console.example.org');
    assert.match(preflight.headers.get('access-control-allow-headers') ?? '', /Authorization/);
    const foreign = await fetch(t.url('argus') + '/api/audit-logs', { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'GET' } });
    assert.equal(foreign.status, 403);
    assert.equal(foreign.headers.get('access-control-allow-origin'), null);
    const unauthorized = await fetch(t.url('argus') + '/api/audit-logs', { headers: { origin: 'http://localhost:5173' } });
    assert.equal(unauthorized.status, 401);
    assert.equal(unauthorized.headers.get('access-control-allow-origin'), 'http://localhost:5173');
  });
});

describe('auditpipe run --preset argus (CLI, embedded store)', () => {
  it('starts from an argus environment, serves the API, and fails closed without ARGUS_API_KEY', async () => {
    const cwd = mkdtempSync(path.join(tmpdir(), 'argus-cli-'));
    const port = await freePort();
    const child = spawn(process.execPath, [path.join(ROOT, 'src/cli/main.ts'), 'run', '--preset', 'argus'], {
      cwd,
      env: { PATH: process.env.PATH ?? '', PORT: String(port), ARGUS_LISTEN_HOST: '127.0.0.1', AUDITPIPE_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      let health: Response | undefined;
      for (let i = 0; i < 120 && !health; i += 1) {
        health = await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined);
        if (!health) await new Promise((r) => setTimeout(r, 250));
      }
      assert.ok(health, `the preset never came up: ${stderr}`);
      assert.deepEqual(await health.json(), { service: 'argus', status: 'healthy' });
      const res = await fetch(`http://127.0.0.1:${port}/api/audit-logs`, { method: 'POST', headers: { authorization: 'Bearer anything' }, body: JSON.stringify(argusRequest()) });
      assert.equal(res.status, 401);
      assert.match((await res.json()).details, /not configured/);
    } finally {
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    }
  });

  it('refuses REQUIRE_SIGNATURES=true without keys, naming the variable', async () => {
    const child = spawn(process.execPath, [path.join(ROOT, 'src/cli/main.ts'), 'validate', '--preset', 'argus'], {
      cwd: mkdtempSync(path.join(tmpdir(), 'argus-cli-')),
      env: { PATH: process.env.PATH ?? '', REQUIRE_SIGNATURES: 'true' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    assert.equal(code, 78);
    assert.match(stderr, /REQUIRE_SIGNATURES=true needs ARGUS_SIGNATURE_KEYS_FILE/);
  });
});
