/**
 * The append protocol of the chain store (src/sinks/postgres/append.ts) against a real server:
 * batches hashed ahead on assumed heads, checked under the head locks, redelivery decided by the
 * unique id. Every case ends with the chains recomputed by the verifier.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { toEvent } from '../../../src/core/event.ts';
import type { AuditEvent } from '../../../src/public/index.ts';
import { verifyStore } from '../../../src/security/verify.ts';
import { openPostgres, type ChainDb } from '../../../src/sinks/postgres/db.ts';
import { inLockOrder } from '../../../src/sinks/postgres/append.ts';
import { migrate } from '../../../src/sinks/postgres/migrations.ts';
import { ChainStore } from '../../../src/sinks/postgres/store.ts';
import { waitFor } from '../nats/helpers.ts';
import { adminQuery, createDatabase, databaseUrl, dropDatabase } from './helpers.ts';

let database: string;
const opened: ChainDb[] = [];
let schemaCount = 0;

before(async () => {
  database = await createDatabase('ap_append');
});
after(async () => {
  await Promise.all(opened.map((db) => db.close()));
  await dropDatabase(database);
});

/** A fresh schema and `writers` stores on it, each with its own pool (as separate processes have). */
async function stores(writers: number): Promise<{ schema: string; stores: ChainStore[] }> {
  schemaCount += 1;
  const schema = `append_${schemaCount}`;
  const list: ChainStore[] = [];
  for (let i = 0; i < writers; i += 1) {
    const db = openPostgres({ url: databaseUrl(database), poolSize: 4, statementTimeoutMs: 30_000 });
    opened.push(db);
    if (i === 0) await migrate(db, schema);
    list.push(new ChainStore(db, schema));
  }
  return { schema, stores: list };
}

const event = (id: string, actor: string, extra: Record<string, unknown> = {}): AuditEvent =>
  toEvent({ id, actorId: actor, action: 'test', ...extra }, { actorField: 'actorId' });

async function assertIntact(store: ChainStore, events: number): Promise<void> {
  const report = await verifyStore(store);
  const findings = report.findings.filter((f) => f.kind !== 'no-public-key' && f.kind !== 'no-checkpoint');
  assert.deepEqual(findings, [], 'the verifier finds nothing wrong');
  assert.equal(report.events, events);
}

/** `[event id, sequence]` of every row of `actor` (or of all rows), in sequence order. */
async function chainOf(schema: string, actor?: string): Promise<Array<[string, number]>> {
  const where = actor === undefined ? '' : 'WHERE actor = $1';
  const rows = (await adminQuery(`SELECT event_id, seq FROM ${schema}.chain_events ${where} ORDER BY seq`, actor === undefined ? [] : [actor], database)).rows;
  return rows.map((r) => [r.event_id, Number(r.seq)]);
}

/**
 * Watches, from now on, the one-message writes (the COPY path) of `store`: the text of each, the
 * rows of each that was written and the SQLSTATE of each that failed, and in what order each was
 * sent and answered.
 */
function watchCopies(store: ChainStore) {
  const db = store.db as { statementsThenCopy?: (text: string, data: Buffer) => Promise<number> };
  const copy = db.statementsThenCopy!;
  const watched = { texts: [] as string[], rows: [] as number[], failures: [] as string[], timeline: [] as string[] };
  db.statementsThenCopy = async (text, data) => {
    const n = watched.texts.push(text);
    watched.timeline.push(`sent ${n}`);
    try {
      const rows = await copy(text, data);
      watched.rows.push(rows);
      return rows;
    } catch (error) {
      watched.failures.push(String((error as { code?: unknown }).code));
      throw error;
    } finally {
      watched.timeline.push(`answered ${n}`);
    }
  };
  return watched;
}

describe('chain appends', () => {
  it('keeps batches handed in together in call order, each hashed on the one before', async () => {
    const { schema, stores: [store] } = await stores(1);
    const batches = Array.from({ length: 6 }, (_, b) => Array.from({ length: 50 }, (_, i) => event(`order-${b}-${i}`, `actor-${i % 3}`)));
    const results = await Promise.all(batches.map((batch) => store!.append(batch)));
    assert.deepEqual(results.map((r) => r.appended), [50, 50, 50, 50, 50, 50]);
    assert.deepEqual(results.map((r) => r.rehashed), [0, 0, 0, 0, 0, 0], 'one writer: every batch hashed ahead on the right heads');
    const rows = (await adminQuery(`SELECT event_id FROM ${schema}.chain_events WHERE actor = 'actor-0' ORDER BY seq`, [], database)).rows;
    const expected = batches.flatMap((batch) => batch.filter((_, i) => i % 3 === 0).map((e) => e.id));
    assert.deepEqual(rows.map((r) => r.event_id), expected, 'the chain holds the events in the order they were handed in');
    await assertIntact(store!, 300);
  });

  it('two writers interleaving on the same actors: each re-hashes on what the other wrote, no gap, no fork', async () => {
    const { stores: [a, b] } = await stores(2);
    const work = (store: ChainStore, name: string) => Promise.all(Array.from({ length: 20 }, (_, n) =>
      store.append(Array.from({ length: 100 }, (_, i) => event(`${name}-${n}-${i}`, `actor-${i % 7}`)))));
    const [ra, rb] = await Promise.all([work(a!, 'a'), work(b!, 'b')]);
    assert.equal([...ra, ...rb].reduce((n, r) => n + r.appended, 0), 4_000);
    // Whichever writer commits second on an actor finds its head moved by the other.
    assert.ok([...ra, ...rb].some((r) => r.rehashed > 0), 'batches were hashed again on the other writer\'s heads');
    await assertIntact(a!, 4_000);
  });

  it('stores an id once when it arrives again while its first batch is still being written', async () => {
    const { schema, stores: [store] } = await stores(1);
    const first = [event('dup-1', 'alice'), event('x-1', 'alice')];
    const second = [event('x-2', 'alice'), event('dup-1', 'alice'), event('x-3', 'alice')];
    const [r1, r2] = await Promise.all([store!.append(first), store!.append(second)]);
    assert.equal(r1.appended, 2);
    assert.equal(r2.appended, 2);
    assert.equal(r2.duplicates, 1);
    assert.deepEqual(r2.positions.get(first[0]!.id), r1.positions.get(first[0]!.id), 'the redelivered event reports its stored position');
    assert.deepEqual(await chainOf(schema), [['dup-1', 1], ['x-1', 2], ['x-2', 3], ['x-3', 4]]);
    await assertIntact(store!, 4);
  });

  it('a batch hashed on one that lost a refused row re-hashes under its locks', async () => {
    const { schema, stores: [store] } = await stores(1);
    // The first batch loses its middle row (U+0000 is refused), so the second batch's assumed heads are wrong.
    const first = [event('r-1', 'bob'), event('r-2', 'bob', { note: 'nul \u0000' }), event('r-3', 'bob')];
    const second = [event('r-4', 'bob'), event('r-5', 'carol')];
    const [r1, r2] = await Promise.all([store!.append(first), store!.append(second)]);
    assert.deepEqual(r1.rejected.map((r) => r.id), ['r-2']);
    assert.equal(r2.appended, 2);
    assert.deepEqual(await chainOf(schema, 'bob'), [['r-1', 1], ['r-3', 2], ['r-4', 3]]);
    await assertIntact(store!, 4);
  });

  it('chains events without an actor under "", alone in a batch or mixed with others', async () => {
    const { schema, stores: [store] } = await stores(1);
    const anonymous = (id: string) => toEvent({ id, action: 'anonymous' }, { actorField: 'actorId' });
    await store!.append([anonymous('n-1')]);
    await store!.append([anonymous('n-2'), event('n-3', 'alice'), anonymous('n-4')]);
    const rows = (await adminQuery(`SELECT event_id, actor, seq FROM ${schema}.chain_events ORDER BY actor, seq`, [], database)).rows;
    assert.deepEqual(rows.map((r) => [r.event_id, r.actor, Number(r.seq)]), [['n-1', '', 1], ['n-2', '', 2], ['n-4', '', 3], ['n-3', 'alice', 1]]);
    await assertIntact(store!, 4);
  });

  it('a second store process starting on existing chains continues them instead of forking', async () => {
    const { stores: [a, b] } = await stores(2);
    await a!.append(Array.from({ length: 30 }, (_, i) => event(`old-${i}`, `actor-${i % 3}`)));
    // b has never seen these actors: it assumes empty chains, finds the real heads, and re-hashes.
    const result = await b!.append(Array.from({ length: 30 }, (_, i) => event(`new-${i}`, `actor-${i % 3}`)));
    assert.equal(result.appended, 30);
    assert.equal(result.positions.get(`new-0` as never)?.sequence, 11);
    await assertIntact(a!, 60);
  });

  it('stores every character of actors, ids and records exactly, through the bulk COPY of the common case', async () => {
    const { schema, stores: [store] } = await stores(1);
    const odd = ['tab\there', 'line\nbreak\r', 'back\\slash\\t', "quote ' and \" ", 'sep\u001erecord', 'ünïcödé 🔏', '\\.'];
    const batch = (round: number) => odd.map((text, i) => event(`${text}#${round}`, text, { note: `${text} ${round}`, n: i }));
    await store!.append(batch(1)); // creates the heads
    const copied = watchCopies(store!);
    const second = await store!.append(batch(2)); // every head exists: heads statement and COPY in one message
    assert.deepEqual(copied.rows, [odd.length], 'written by the COPY path, not the fallback statement');
    assert.equal(second.appended, odd.length);
    assert.equal(second.rehashed, 0);
    const rows = (await adminQuery(`SELECT actor, event_id, canonical FROM ${schema}.chain_events WHERE seq = 2 ORDER BY actor`, [], database)).rows;
    assert.deepEqual(rows.map((r) => r.actor), [...odd].sort((a, b) => (Buffer.compare(Buffer.from(a), Buffer.from(b)))));
    for (const row of rows) {
      assert.equal(row.event_id, `${row.actor}#2`);
      assert.equal(JSON.parse(row.canonical).event.note, `${row.actor} 2`);
    }
    await assertIntact(store!, 2 * odd.length);
  });

  it('a refused row in a batch written by COPY: the others commit, in order, with no gap', async () => {
    const { schema, stores: [store] } = await stores(1);
    await store!.append([event('c-1', 'dave'), event('c-2', 'erin')]); // the heads exist from here on
    const result = await store!.append([
      event('c-3', 'dave'), event('c-4', 'dave', { note: 'nul \u0000' }), event('c-5', 'dave', { note: '\\u0000 as text' }), event('c-6', 'erin'),
    ]);
    assert.deepEqual(result.rejected.map((r) => r.id), ['c-4']);
    assert.match(result.rejected[0]!.reason, /chain_events_no_nul/);
    assert.equal(result.appended, 3);
    assert.deepEqual(await chainOf(schema, 'dave'), [['c-1', 1], ['c-3', 2], ['c-5', 3]]);
    await assertIntact(store!, 5);
  });

  it('writes an event near the 1 MB limit through the COPY path, byte for byte', async () => {
    const { schema, stores: [store] } = await stores(1);
    await store!.append([event('big-0', 'frank')]);
    const payload = `${'x'.repeat(450_000)}\\${'é'.repeat(200_000)}`;
    const result = await store!.append([event('big-1', 'frank', { payload })]);
    assert.equal(result.appended, 1);
    const row = (await adminQuery(`SELECT canonical FROM ${schema}.chain_events WHERE event_id = 'big-1'`, [], database)).rows[0];
    assert.equal(JSON.parse(row.canonical).event.payload, payload);
    await assertIntact(store!, 2);
  });
  it('writes times and sequences exactly through the binary COPY: before 2000, centuries ahead, beyond 32 bits', async () => {
    const { schema, stores: [store] } = await stores(1);
    const times = ['1969-07-20T20:17:40.123Z', '1999-12-31T23:59:59.999Z', '2000-01-01T00:00:00.001Z', '2026-03-04T05:06:07.891234+02:00', '2399-12-31T23:59:59.999Z', '9999-12-31T23:59:59.999Z'];
    const batch = (round: number) => times.map((time, i) => event(`t-${round}-${i}`, 'gina', { time }));
    await store!.append(batch(1)); // creates the head
    // A head beyond 32 bits (as a long-lived chain reaches): the next batch re-hashes on it, the one after goes by COPY.
    await adminQuery(`UPDATE ${schema}.chain_heads SET seq = 4294967296 + 5 WHERE actor = 'gina'`, [], database);
    assert.equal((await store!.append(batch(2))).rehashed, 1);
    const copied = watchCopies(store!);
    await store!.append(batch(3));
    assert.deepEqual(copied.rows, [times.length], 'written by the COPY path');
    const rows = (await adminQuery(`SELECT event_id, seq::text AS seq, (extract(epoch FROM event_time) * 1000)::int8::text AS event_ms,
      (extract(epoch FROM received_at) * 1000)::int8::text AS received_ms, canonical FROM ${schema}.chain_events WHERE event_id LIKE 't-3-%' ORDER BY seq`, [], database)).rows;
    assert.deepEqual(rows.map((r) => r.seq), times.map((_, i) => String(4294967296 + 5 + times.length + 1 + i)));
    rows.forEach((row, i) => {
      assert.equal(row.event_ms, String(Date.parse(times[i]!)), `event time ${times[i]}`);
      assert.equal(row.received_ms, String(Date.parse(JSON.parse(row.canonical).receivedAt)));
    });
  });

  it('sorts actors for locking exactly as PostgreSQL\'s "C" collation does, surrogate pairs included', async () => {
    const actors = ['b', 'a', 'é', '\uFFFF', '😀', 'Z', '', 'a\u0000', '\uE000', '🔏x', 'aa'];
    const server = (await adminQuery(`SELECT a FROM unnest($1::text[]) AS a ORDER BY a COLLATE "C"`, [actors.filter((a) => !a.includes('\u0000'))], database)).rows.map((r) => r.a);
    assert.deepEqual(inLockOrder(actors.filter((a) => !a.includes('\u0000'))), server);
    assert.notDeepEqual([...server].sort(), server, 'the case JavaScript\'s default sort gets wrong is covered');
  });

  it('a deadlock with another writer aborts the one-message append, and the batch is written by the ordered path', async () => {
    const { schema, stores: [store] } = await stores(1);
    await store!.append([event('d-1', 'anna'), event('d-2', 'ben')]); // the heads exist from here on
    const chains: Record<'anna' | 'ben', Array<[string, number]>> = { anna: [['d-1', 1]], ben: [['d-2', 1]] };
    // PostgreSQL runs a waiter's deadlock check once, deadlock_timeout after it began to wait. The
    // message waits first, so its check normally runs first and finds the cycle; on a loaded machine
    // it can run before the other writer waits too, find none, and the other writer's check then
    // aborts that writer instead. That round proves nothing about the ordered path: do it again.
    let messageAborted = false;
    const { failures } = watchCopies(store!);
    for (let round = 1; round <= 3 && !messageAborted; round += 1) {
      const other = new pg.Client({ connectionString: databaseUrl(database) });
      await other.connect();
      try {
        await other.query('BEGIN');
        await other.query(`UPDATE ${schema}.chain_heads SET seq = seq WHERE actor = 'ben'`);
        failures.length = 0;
        const appending = store!.append([event(`d-3-${round}`, 'anna'), event(`d-4-${round}`, 'ben')]);
        // The message moves anna's head, then waits for ben's; the other writer now asks for anna's.
        await waitFor('the append to wait for ben\'s head', async () => (await adminQuery(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'auditpipe' AND wait_event_type = 'Lock'`, [database])).rows[0].n === 1, 30_000, 20);
        try {
          await other.query(`UPDATE ${schema}.chain_heads SET seq = seq WHERE actor = 'anna'`);
          await other.query('COMMIT');
          messageAborted = true;
        } catch (error) {
          if ((error as { code?: unknown }).code !== '40P01') throw error;
          await other.query('ROLLBACK');
        }
        const result = await appending;
        assert.deepEqual(failures, messageAborted ? ['40P01'] : [], messageAborted ? 'PostgreSQL broke the deadlock by aborting the message' : 'the message was not aborted');
        assert.equal(result.appended, 2);
        assert.equal(result.rehashed, 0, 'the other writer left the heads where they were');
        chains.anna.push([`d-3-${round}`, round + 1]);
        chains.ben.push([`d-4-${round}`, round + 1]);
      } finally {
        await other.end();
      }
    }
    assert.ok(messageAborted, 'in one of three rounds PostgreSQL aborted the message');
    assert.deepEqual(await chainOf(schema, 'anna'), chains.anna);
    assert.deepEqual(await chainOf(schema, 'ben'), chains.ben);
    await assertIntact(store!, chains.anna.length + chains.ben.length);
  });

  it('sends each batch\'s message right behind the one before, without waiting for its reply', async () => {
    const { schema, stores: [store] } = await stores(1);
    const actors = Array.from({ length: 50 }, (_, i) => `pipe-${i}`);
    await store!.append(actors.map((actor) => event(`${actor}-0`, actor))); // the heads exist from here on
    const { timeline } = watchCopies(store!);
    // A large batch, then a small one: the small one's message goes out while the large one is written.
    const large = Array.from({ length: 5_000 }, (_, i) => event(`large-${i}`, actors[i % actors.length]!, { pad: 'x'.repeat(500) }));
    const small = actors.slice(0, 5).map((actor) => event(`small-${actor}`, actor));
    const [r1, r2] = await Promise.all([store!.append(large), store!.append(small)]);
    assert.deepEqual(timeline, ['sent 1', 'sent 2', 'answered 1', 'answered 2']);
    assert.equal(r1.appended + r2.appended, 5_005);
    assert.equal(r2.rehashed, 0);
    assert.deepEqual((await chainOf(schema, 'pipe-0')).at(-1), ['small-pipe-0', 1 + 100 + 1]);
    await assertIntact(store!, 5_055);
  });

  it('a batch sent right behind one that loses a row fails its heads check, and is redone after it, in order', async () => {
    const { schema, stores: [store] } = await stores(1);
    await store!.append([event('p-0', 'hana'), event('p-00', 'ivan')]); // the heads exist from here on
    const { failures } = watchCopies(store!);
    const first = [event('p-1', 'hana'), event('p-2', 'hana', { note: 'nul \u0000' }), event('p-3', 'ivan')];
    const second = [event('p-4', 'hana'), event('p-5', 'ivan')];
    const [r1, r2] = await Promise.all([store!.append(first), store!.append(second)]);
    assert.deepEqual(r1.rejected.map((r) => r.id), ['p-2']);
    assert.equal(r2.appended, 2);
    assert.equal(r2.rehashed, 1, 'hashed again on the heads the first batch really left');
    assert.ok(failures.includes('22P02'), `the second message was refused by its heads check (failures: ${failures.join(', ')})`);
    assert.deepEqual(await chainOf(schema, 'hana'), [['p-0', 1], ['p-1', 2], ['p-4', 3]]);
    assert.deepEqual(await chainOf(schema, 'ivan'), [['p-00', 1], ['p-3', 2], ['p-5', 3]]);
    await assertIntact(store!, 6);
  });

  it('the one-message write locks heads in actor order whatever the size of the heads table (no hash join, no scan in physical order)', async () => {
    for (const count of [3, 300]) {
      const { stores: [store] } = await stores(1);
      const actors = Array.from({ length: count }, (_, i) => `order-${i}`);
      await store!.append(actors.map((actor) => event(`${actor}-0`, actor))); // the heads exist from here on
      const { texts } = watchCopies(store!);
      await store!.append(actors.map((actor) => event(`${actor}-1`, actor)));
      assert.equal(texts.length, 1, 'written by the one-message path');
      // The message up to its COPY: the planner settings, then the heads statement, planned as sent.
      const statements = texts[0]!.slice(0, texts[0]!.lastIndexOf('COPY')).trim().replace(/;$/, '');
      const withExplain = statements.replace(/WITH moved AS/, 'EXPLAIN (COSTS OFF) WITH moved AS');
      const client = new pg.Client({ connectionString: databaseUrl(database) });
      await client.connect();
      try {
        await client.query('BEGIN');
        const results = await client.query(withExplain) as unknown as pg.QueryResult[];
        const plan = results.at(-1)!.rows.map((row) => row['QUERY PLAN'] as string).join('\n');
        await client.query('ROLLBACK');
        assert.match(plan, /Nested Loop|Merge Join/, plan);
        assert.doesNotMatch(plan, /Hash Join|Seq Scan on chain_heads|Bitmap/, plan);
      } finally {
        await client.end();
      }
    }
  });
});
