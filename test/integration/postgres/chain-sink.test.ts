import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { toEvent } from '../../../src/core/event.ts';
import { createLogger } from '../../../src/core/logger.ts';
import type { Batch, ComponentContext, PipelineName } from '../../../src/public/index.ts';
import { chainStoreService, checkpointAnchorsService } from '../../../src/public/services.ts';
import { verifyCheckpointSignature, type SignedCheckpoint } from '../../../src/security/checkpoint.ts';
import { loadPublicKeyFile, writeKeyPair } from '../../../src/security/keys.ts';
import { openPostgres } from '../../../src/sinks/postgres/db.ts';
import { migrate, MIGRATIONS } from '../../../src/sinks/postgres/migrations.ts';
import { PostgresChainSink, type PostgresSinkConfig } from '../../../src/sinks/postgres/sink.ts';
import { ChainStore } from '../../../src/sinks/postgres/store.ts';
import { startEngine, type TestEngine } from '../../helpers/engine.ts';
import { Registry } from 'prom-client';
import { adminQuery, createDatabase, databaseUrl, dropDatabase, verifyJson } from './helpers.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-pg-sink-'));
const keyFile = path.join(dir, 'checkpoint.key');
let database: string;
let url: string;

before(async () => {
  writeKeyPair(keyFile);
  database = await createDatabase('ap_sink');
  url = databaseUrl(database);
});
after(async () => {
  await dropDatabase(database);
});

const count = async (schema: string, where = 'true') =>
  Number((await adminQuery(`SELECT count(*) AS n FROM "${schema}".chain_events WHERE ${where}`, [], database)).rows[0].n);

function sinkConfig(schema: string, over: Partial<PostgresSinkConfig> = {}): PostgresSinkConfig {
  return {
    url, path: '', schema, pool_size: 4, statement_timeout_ms: 30_000, checkpoint_interval_ms: 60_000, checkpoint_origin: '',
    checkpoint_key_file: keyFile, checkpoint_key_env: '', checkpoint_key_generate: false, ...over,
  };
}

/** A component context as the engine builds it, with a plain map as the DI container. */
function context(pipeline: string): ComponentContext & { services: Map<string, unknown> } {
  const services = new Map<string, unknown>();
  return {
    services,
    pipeline: pipeline as PipelineName,
    name: 'chain',
    logger: createLogger('silent'),
    metrics: new Registry(),
    dataDir: dir,
    configDir: dir,
    events: { actorField: 'actorId', limits: { maxIdLength: 256, maxActorIdLength: 256, maxEventBytes: 1 << 20 } },
    resolve: <T>(token: string) => services.get(token) as T,
    has: (token: string) => services.has(token),
    provide: (token: string, value: unknown) => void services.set(token, value),
  };
}

const batchOf = (events: ReturnType<typeof toEvent>[]): Batch => ({ pipeline: 'p' as PipelineName, seq: 1, events, bytes: 0 });
const ev = (value: Record<string, unknown>) => toEvent(value, { actorField: 'actorId' });

describe('postgres chain sink', () => {
  it('applies migrations once when several processes start at the same time', async () => {
    const dbs = Array.from({ length: 4 }, () => openPostgres({ url, poolSize: 1, statementTimeoutMs: 30_000 }));
    try {
      const applied = await Promise.all(dbs.map((db) => migrate(db, 'racing')));
      const all = MIGRATIONS.map((m) => m.version);
      assert.deepEqual(applied.flat().sort(), all, `each migration applied exactly once: ${JSON.stringify(applied)}`);
      assert.equal(applied.filter((versions) => versions.length > 0).length, 1, 'by one of the processes');
      const versions = await adminQuery('SELECT version FROM racing.auditpipe_migrations ORDER BY version', [], database);
      assert.deepEqual(versions.rows.map((r) => r.version), all);
    } finally {
      await Promise.all(dbs.map((db) => db.close()));
    }
  });

  it('upgrades a store written before actors and ids were compared as bytes: rows, chains and search intact', async () => {
    const db = openPostgres({ url, poolSize: 2, statementTimeoutMs: 30_000 });
    try {
      assert.deepEqual(await migrate(db, 'upgraded', 2), [1, 2]);
      const store = new ChainStore(db, 'upgraded');
      await store.append([ev({ id: 'u1', actorId: 'Zoe', action: 'login' }), ev({ id: 'u2', actorId: 'alice', action: 'read' }), ev({ id: 'u3', actorId: 'Zoe', action: 'logout' })]);
      assert.deepEqual(await migrate(db, 'upgraded'), [3]);
      const collations = await adminQuery(`SELECT table_name, column_name, collation_name FROM information_schema.columns
        WHERE table_schema = 'upgraded' AND table_name IN ('chain_events', 'chain_heads') AND column_name IN ('actor', 'event_id') ORDER BY 1, 2`, [], database);
      assert.deepEqual(collations.rows.map((r) => `${r.table_name}.${r.column_name} ${r.collation_name}`),
        ['chain_events.actor C', 'chain_events.event_id C', 'chain_heads.actor C']);
      // Appends go on from the heads written before, redelivery is still recognised, search reads the records.
      const result = await store.append([ev({ id: 'u4', actorId: 'alice', action: 'write' }), ev({ id: 'u1', actorId: 'Zoe', action: 'login' })]);
      assert.equal(result.appended, 1);
      assert.equal(result.duplicates, 1);
      const search = await adminQuery(`SELECT event_id, seq, data->>'action' AS action FROM upgraded.chain_events_search WHERE actor = 'alice' ORDER BY seq`, [], database);
      assert.deepEqual(search.rows.map((r) => `${r.event_id} ${r.seq} ${r.action}`), ['u2 1 read', 'u4 2 write']);
      const { report } = verifyJson(['--database-url', url, '--schema', 'upgraded']);
      assert.equal(report.events, 4);
      assert.deepEqual(report.findings.map((f) => f.kind).filter((kind) => kind !== 'no-public-key' && kind !== 'no-checkpoint'), []);
    } finally {
      await db.close();
    }
  });

  describe('behind the HTTP source', () => {
    let t: TestEngine;
    let dlqFile: string;
    let dlqFd: number;
    before(async () => {
      dlqFile = path.join(dir, 'dlq.ndjson');
      dlqFd = openSync(dlqFile, 'w');
      t = await startEngine({
        pipelines: [{
          name: 'test',
          source: { type: 'http', listen: '127.0.0.1:0' },
          batch: { max_events: 50, interval_ms: 20 },
          sinks: [{ type: 'postgres', url, schema: 'http', checkpoint_key_file: keyFile }],
          dead_letter: { type: 'console', fd: dlqFd },
        }],
      });
    });
    after(async () => {
      await t.stop();
      closeSync(dlqFd);
    });
    const post = (body: string) => fetch(`${t.url()}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body });

    it('stores an event delivered twice (HTTP retry) once, at the same chain position', async () => {
      const line = '{"id":"retry-1","actorId":"alice","action":"login"}\n';
      assert.equal((await post(line)).status, 200);
      assert.equal((await post(line)).status, 200);
      assert.equal((await post(line + '{"id":"retry-1","actorId":"alice","action":"login"}\n')).status, 200);
      assert.equal(await count('http', "event_id = 'retry-1'"), 1);
      assert.equal(await count('http', "actor = 'alice'"), 1);
    });

    it('answers argus clients with the chain position (sequence, previousHash, currentHash)', async () => {
      const body = { timestamp: '2026-03-04T05:06:07.123Z', status: 'SUCCESS', action: 'CREATE', actorType: 'SERVICE', actorId: 'svc-chain', targetType: 'RESOURCE' };
      const first = await (await fetch(`${t.url()}/api/audit-logs`, { method: 'POST', body: JSON.stringify(body) })).json();
      const second = await (await fetch(`${t.url()}/api/audit-logs`, { method: 'POST', body: JSON.stringify(body) })).json();
      assert.equal(first.sequence, 1);
      assert.equal(first.previousHash, '0'.repeat(64));
      assert.equal(second.sequence, 2);
      assert.equal(second.previousHash, first.currentHash);
      const row = await adminQuery(`SELECT hash FROM http.chain_events WHERE actor = 'svc-chain' AND seq = 2`, [], database);
      assert.equal(row.rows[0].hash, second.currentHash);
    });

    it('commits the rest of a batch when one row violates a constraint, and dead-letters that one', async () => {
      // Every stored record must stay searchable as jsonb, which cannot hold U+0000: the
      // chain_events_no_nul constraint refuses that row (SQLSTATE 23514). The text "\u0000"
      // (an escaped backslash) is ordinary and stored.
      const res = await post('{"id":"ok-1","actorId":"bob"}\n{"id":"bad-1","actorId":"bob","note":"nul \\u0000 here"}\n{"id":"ok-2","actorId":"bob","note":"\\\\u0000 as text"}\n');
      assert.equal(res.status, 207);
      const body = await res.json();
      assert.deepEqual(body.ids, ['ok-1', 'ok-2']);
      assert.equal(body.failed.length, 1);
      assert.equal(body.failed[0].index, 1);
      assert.match(body.failed[0].error, /chain_events_no_nul/);
      assert.equal(await count('http', "actor = 'bob'"), 2);
      const seqs = (await adminQuery(`SELECT event_id, seq FROM http.chain_events WHERE actor = 'bob' ORDER BY seq`, [], database)).rows;
      assert.deepEqual(seqs.map((r) => [r.event_id, Number(r.seq)]), [['ok-1', 1], ['ok-2', 2]], 'no gap where the bad row was');
      const dlq = readFileSync(dlqFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
      const entry = dlq.find((d) => d.event?.id === 'bad-1');
      assert.ok(entry, 'the refused event is in the dead-letter destination');
      assert.match(entry.reason, /chain_events_no_nul/);
    });

    it('keeps every chain intact under many concurrent requests for the same actors', async () => {
      const requests = Array.from({ length: 40 }, (_, r) => post(Array.from({ length: 25 }, (_, i) => JSON.stringify({ id: `c-${r}-${i}`, actorId: `actor-${i % 5}` })).join('\n')));
      const statuses = (await Promise.all(requests)).map((res) => res.status);
      assert.deepEqual([...new Set(statuses)], [200]);
      assert.equal(await count('http', "event_id LIKE 'c-%'"), 1000);
      const gaps = await adminQuery(`SELECT actor, count(*) AS n, max(seq) AS top FROM http.chain_events WHERE actor LIKE 'actor-%' GROUP BY actor`, [], database);
      for (const row of gaps.rows) assert.equal(Number(row.n), Number(row.top), `actor ${row.actor} has no gap`);
    });

    it('stores records holding the characters the batch insert joins on (U+001E, commas, quotes) exactly', async () => {
      // The insert passes a batch's records as one text split on U+001E; JSON escapes it inside records.
      const tricky = [
        { id: 'sep-1', actorId: 'actor,with"quotes\\', note: 'record\u001eseparator', 'key\u001e,': ['a,b', '\u001e', '"'] },
        { id: 'sep-2,x', actorId: 'actor,with"quotes\\', note: '' },
        { id: 'sep-3', actorId: '\u001e', time: '2026-03-04T05:06:07+02:00' },
      ];
      const res = await post(tricky.map((event) => JSON.stringify(event)).join('\n'));
      assert.equal(res.status, 200, await res.text());
      const rows = (await adminQuery(`SELECT e.event_id, e.actor, e.seq, e.canonical, s.data, e.event_time FROM http.chain_events e JOIN http.chain_events_search s USING (actor, seq) WHERE e.event_id IN ('sep-1', 'sep-2,x', 'sep-3') ORDER BY e.event_id`, [], database)).rows;
      assert.deepEqual(rows.map((r) => [r.event_id, r.actor, Number(r.seq)]), [['sep-1', 'actor,with"quotes\\', 1], ['sep-2,x', 'actor,with"quotes\\', 2], ['sep-3', '\u001e', 1]]);
      assert.equal(rows[0].data.note, 'record\u001eseparator');
      assert.deepEqual(rows[0].data['key\u001e,'], ['a,b', '\u001e', '"']);
      assert.ok(rows.every((r) => !r.canonical.includes('\u001e')), 'no raw U+001E in a stored record');
      assert.equal(new Date(rows[2].event_time).toISOString(), '2026-03-04T03:06:07.000Z');
    });

    it('verifies intact after the engine checkpointed at shutdown', async () => {
      await t.stop();
      const { code, report } = verifyJson(['--database-url', url, '--schema', 'http', '--public-key', `${keyFile}.pub`]);
      assert.equal(code, 0, JSON.stringify(report.findings));
      assert.equal(report.events, await count('http'));
      assert.ok(report.checkpoints >= 1);
      assert.equal(report.uncoveredEvents, 0);
    });
  });

  it('writes signed checkpoints on its cadence even when idle, anchors each, and one more at close', async () => {
    const ctx = context('anchored');
    const anchored: SignedCheckpoint[] = [];
    ctx.provide(checkpointAnchorsService('anchored'), [{ name: 'test', anchor: async (c: SignedCheckpoint) => void anchored.push(c) }]);
    const sink = new PostgresChainSink(sinkConfig('anchored', { checkpoint_interval_ms: 50 }), ctx);
    await sink.start();
    try {
      const result = await sink.write(batchOf([ev({ id: 'k1', actorId: 'a' }), ev({ id: 'k2', actorId: 'b' }), ev({ id: 'k3' })]));
      assert.deepEqual(result.rejected, []);
      assert.equal(result.receipts!.get('k3' as never)!.sequence, 1, 'an event without an actor starts its own chain');
      const reader = ctx.resolve(chainStoreService('anchored'));
      assert.equal((await reader.get('k1'))!.sequence, 1);
      const page1 = await reader.query({ limit: 2, order: 'asc' });
      const page2 = await reader.query({ limit: 2, order: 'asc', cursor: page1.next! });
      assert.deepEqual([...page1.records, ...page2.records].map((r) => r.id).sort(), ['k1', 'k2', 'k3']);
      assert.equal(page2.next, undefined);
      // Idle from here on: checkpoints keep coming.
      while (anchored.length < 3) await new Promise((r) => setTimeout(r, 20));
    } finally {
      await sink.close();
    }
    const stored = await adminQuery('SELECT number, hash, heads FROM anchored.chain_checkpoints ORDER BY number', [], database);
    assert.ok(stored.rows.length >= 4);
    assert.equal(stored.rows.at(-1).hash, anchored.at(-1)!.hash, 'the shutdown checkpoint is anchored too');
    const { publicKey } = loadPublicKeyFile(`${keyFile}.pub`);
    for (const checkpoint of anchored) assert.ok(verifyCheckpointSignature(checkpoint.text, checkpoint.signature, publicKey));
    assert.ok(stored.rows.slice(1).some((row) => row.heads === null), 'idle checkpoints do not repeat unchanged heads');
    assert.equal(anchored.at(-1)!.events, 3);
    const { code } = verifyJson(['--database-url', url, '--schema', 'anchored', '--public-key', `${keyFile}.pub`]);
    assert.equal(code, 0);
  });

  it('refuses to start without a checkpoint key, naming what to configure', async () => {
    const sink = new PostgresChainSink(sinkConfig('nokey', { checkpoint_key_file: '', checkpoint_key_env: 'AUDITPIPE_TEST_NO_SUCH_KEY' }), context('nokey'));
    await assert.rejects(sink.start(), /no checkpoint key: set "checkpoint_key_file".*keygen/);
  });

  it('fails a start against an unreachable server with a message that hides the password', async () => {
    const bad = new URL(url);
    bad.port = '1';
    const sink = new PostgresChainSink(sinkConfig('unreachable', { url: bad.toString() }), context('unreachable'));
    await assert.rejects(sink.start(), (error: Error) => /ECONNREFUSED/.test(error.message) && !error.message.includes(bad.password));
  });
});
