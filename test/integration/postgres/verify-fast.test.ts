/**
 * The verifier's fast pass on a real server (src/sinks/postgres/verify-workers.ts): binary COPY
 * in storage order, the table's blocks in chunks over threads, suspects walked again in sequence
 * order. Its report must be the ordered walk's, finding for finding, on intact and tampered stores.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { toEvent } from '../../../src/core/event.ts';
import { loadPrivateKeyFile, writeKeyPair } from '../../../src/security/keys.ts';
import { verifyStore, type VerifyReport } from '../../../src/security/verify.ts';
import { openPostgres } from '../../../src/sinks/postgres/db.ts';
import { migrate } from '../../../src/sinks/postgres/migrations.ts';
import { ChainStore } from '../../../src/sinks/postgres/store.ts';
import { chainCopyStatement, copyOut, readCopy, socketWithReusedReadBuffer } from '../../../src/sinks/postgres/verify-copy.ts';
import { checkAllRows, connectInSnapshot } from '../../../src/sinks/postgres/verify-workers.ts';
import { adminQuery, createDatabase, databaseUrl, dropDatabase } from './helpers.ts';

const ACTORS = 30;
/** The test stores fill a few dozen blocks: chunks of 4 spread every actor over many chunks and all threads. */
const SMALL_CHUNKS = { chunkBlocks: 4 };
let source: string;
const databases: string[] = [];

const events = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => {
  const n = from + i;
  return toEvent({ id: `e-${n}`, actorId: `user-${n % ACTORS}`, action: n % 2 ? 'login' : 'logout', note: n % 7 ? 'plain' : 'quote " and \\ ünï' }, { actorField: 'actorId' });
});

before(async () => {
  const keyFile = path.join(mkdtempSync(path.join(tmpdir(), 'auditpipe-fast-')), 'checkpoint.key');
  writeKeyPair(keyFile);
  source = await createDatabase('ap_fast_src');
  const db = openPostgres({ url: databaseUrl(source), poolSize: 2, statementTimeoutMs: 30_000 });
  try {
    await migrate(db, 'auditpipe');
    const store = new ChainStore(db, 'auditpipe');
    for (let n = 0; n < 2_000; n += 500) await store.append(events(n, n + 500));
    await store.writeCheckpoint(loadPrivateKeyFile(keyFile), 'auditpipe/fast');
    await store.append(events(2_000, 2_400));
  } finally {
    await db.close();
  }
});

after(async () => {
  for (const name of [...databases, source]) await dropDatabase(name);
});

async function copyOf(tamper: string[] = []): Promise<string> {
  const copy = await createDatabase('ap_fast', source);
  databases.push(copy);
  for (const statement of tamper) await adminQuery(statement, [], copy);
  return copy;
}

/** The report of the ordered walk alone, and of the fast pass on `threads` threads. */
async function reports(database: string, threads: number[]): Promise<{ ordered: VerifyReport; fast: VerifyReport[] }> {
  const url = databaseUrl(database);
  const db = openPostgres({ url, poolSize: 2, statementTimeoutMs: 30_000 });
  try {
    const strip = (report: VerifyReport) => ({ ...report, elapsedMs: 0 });
    const ordered = strip(await verifyStore(new ChainStore(db, 'auditpipe')));
    const fast = [];
    for (const workers of threads) {
      fast.push(strip(await verifyStore(new ChainStore(db, 'auditpipe', { parallelVerify: { url, workers, minEventsPerThread: 0, ...SMALL_CHUNKS } }))));
    }
    return { ordered, fast };
  } finally {
    await db.close();
  }
}

describe('verify, fast pass', () => {
  it('gives the ordered walk\'s report on an intact store, on one thread or several', async () => {
    const { ordered, fast } = await reports(source, [1, 2, 3]);
    assert.equal(ordered.events, 2_400);
    assert.equal(ordered.actors, ACTORS);
    assert.deepEqual(ordered.findings.map((f) => f.kind), ['no-public-key']);
    for (const report of fast) assert.deepEqual(report, ordered);
  });

  it('gives the ordered walk\'s report, finding for finding, on tampered stores', async () => {
    const t = 'auditpipe.chain_events';
    const tamperings: Record<string, string[]> = {
      'edited record': [`UPDATE ${t} SET canonical = replace(canonical, '"login"', '"grant"') WHERE actor = 'user-3' AND seq = 7`],
      'event time column moved 1 ms': [`UPDATE ${t} SET event_time = event_time + interval '1 millisecond' WHERE actor = 'user-4' AND seq = 2`],
      'event id column changed': [`UPDATE ${t} SET event_id = 'other' WHERE actor = 'user-5' AND seq = 9`],
      'middle row deleted': [`DELETE FROM ${t} WHERE actor = 'user-6' AND seq = 40`],
      'tail rows deleted': [`DELETE FROM ${t} WHERE actor = 'user-7' AND seq > 60`],
      'first row deleted': [`DELETE FROM ${t} WHERE actor = 'user-8' AND seq = 1`],
      'rows swapped': [
        `UPDATE ${t} SET seq = 1000 WHERE actor = 'user-9' AND seq = 3`,
        `UPDATE ${t} SET seq = 3 WHERE actor = 'user-9' AND seq = 4`,
        `UPDATE ${t} SET seq = 4 WHERE actor = 'user-9' AND seq = 1000`,
      ],
      'row duplicated (key constraints dropped)': [
        `ALTER TABLE ${t} DROP CONSTRAINT chain_events_pkey`, `ALTER TABLE ${t} DROP CONSTRAINT chain_events_event_id_key`,
        `INSERT INTO ${t} SELECT * FROM ${t} WHERE actor = 'user-10' AND seq = 5`,
      ],
      'hash not 64 characters (checks dropped)': [
        `ALTER TABLE ${t} DROP CONSTRAINT chain_events_hash_check`, `UPDATE ${t} SET hash = 'abc' WHERE actor = 'user-11' AND seq = 3`,
      ],
    };
    const copy = await copyOf(Object.values(tamperings).flat());
    const { ordered, fast } = await reports(copy, [1, 2, 3]);
    const actors = new Set(ordered.findings.map((f) => f.actor));
    for (const actor of ['user-3', 'user-4', 'user-5', 'user-6', 'user-7', 'user-8', 'user-9', 'user-10', 'user-11']) {
      assert.ok(actors.has(actor), `${actor} in ${JSON.stringify(ordered.findings, null, 1)}`);
    }
    for (const report of fast) assert.deepEqual(report, ordered);
  });

  it('verifies rows stored out of sequence order in one pass (runs joined as they arrive)', async () => {
    const copy = await copyOf([
      'CREATE TABLE reversed AS SELECT * FROM auditpipe.chain_events',
      'TRUNCATE auditpipe.chain_events',
      'INSERT INTO auditpipe.chain_events SELECT * FROM reversed ORDER BY seq DESC',
      'DROP TABLE reversed',
    ]);
    const first = await adminQuery(`SELECT seq FROM auditpipe.chain_events WHERE actor = 'user-1' ORDER BY ctid LIMIT 1`, [], copy);
    assert.equal(Number(first.rows[0].seq), 80, 'stored last sequence first');
    const input = { claims: new Map(), anchored: new Map(), finalClaims: new Map(), maxFindings: 10 };
    for (const threads of [1, 2]) {
      const result = await checkAllRows(databaseUrl(copy), 'auditpipe', threads, input, SMALL_CHUNKS);
      assert.deepEqual(result.suspects, [], `${threads} threads`);
      assert.equal(result.events, 2_400);
      assert.equal(result.tails.size, ACTORS);
    }
    const { ordered, fast } = await reports(copy, [2]);
    assert.deepEqual(fast[0], ordered);
  });

  it('verifies a record near the 1 MB event limit, far bigger than a socket read (one COPY message over many chunks)', async () => {
    const copy = await copyOf();
    const db = openPostgres({ url: databaseUrl(copy), poolSize: 2, statementTimeoutMs: 30_000 });
    try {
      const big = toEvent({ id: 'big', actorId: 'user-1', action: 'export', payload: 'x'.repeat(900_000) }, { actorField: 'actorId' });
      assert.equal((await new ChainStore(db, 'auditpipe').append([big])).appended, 1);
    } finally {
      await db.close();
    }
    // The fast pass itself must have read it (a mis-parse would only send it to the ordered walk).
    const input = { claims: new Map(), anchored: new Map(), finalClaims: new Map(), maxFindings: 10 };
    const result = await checkAllRows(databaseUrl(copy), 'auditpipe', 1, input);
    assert.deepEqual(result.suspects, []);
    assert.equal(result.events, 2_401);
    const { ordered, fast } = await reports(copy, [1, 2]);
    assert.equal(ordered.events, 2_401);
    assert.deepEqual(ordered.findings.map((f) => f.kind), ['no-public-key']);
    for (const report of fast) assert.deepEqual(report, ordered);
  });

  /** The payloads of the CopyData messages the server sends for the whole table, one per message. */
  async function copyPayloads(): Promise<Buffer[]> {
    const client = new pg.Client({ connectionString: databaseUrl(source) });
    await client.connect();
    const payloads: Buffer[] = [];
    try {
      await copyOut(client, chainCopyStatement('auditpipe'), (bytes, start, end) => {
        payloads.push(Buffer.from(bytes.subarray(start, end))); // valid only during the call
      });
    } finally {
      await client.end();
    }
    return payloads;
  }

  it('parses the COPY stream however it is cut, and refuses one cut short', async () => {
    const whole = Buffer.concat(await copyPayloads());
    const rowsOf = async (pieces: Buffer[]) => {
      const seen: string[] = [];
      async function* stream() {
        for (const piece of pieces) yield piece;
      }
      await readCopy(stream(), (row) => {
        seen.push(`${Buffer.from(row.bytes.subarray(row.actorStart, row.actorEnd)).toString()}#${row.seq}:${Buffer.from(row.bytes.subarray(row.hashAt, row.hashAt + 64)).toString('latin1')}:${row.recordEnd - row.recordStart}`);
      });
      return seen;
    };
    const expected = await rowsOf([whole]);
    assert.equal(expected.length, 2_400);
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    const pieces: Buffer[] = [];
    for (let at = 0; at < whole.length;) {
      const size = 1 + Math.floor(random() * 700);
      pieces.push(whole.subarray(at, at + size));
      at += size;
    }
    assert.deepEqual(await rowsOf(pieces), expected);
    await assert.rejects(rowsOf([whole.subarray(0, whole.length - 10)]), /ended in the middle of a row/);
    await assert.rejects(rowsOf([Buffer.from('not a copy stream at all')]), /did not answer with a binary COPY/);
  });

  it('takes the COPY messages off the socket however the reads cut them, and hands the rest back to pg', async () => {
    const payloads = await copyPayloads();
    // The same messages as the server framed them (CopyData 'd', one with a notice 'N' between),
    // then what ends the COPY: CopyDone, CommandComplete, ReadyForQuery.
    const frame = (code: string, body: Buffer) => {
      const head = Buffer.alloc(5);
      head.write(code, 0, 'latin1');
      head.writeUInt32BE(body.length + 4, 1);
      return Buffer.concat([head, body]);
    };
    const ending = Buffer.concat([frame('c', Buffer.alloc(0)), frame('C', Buffer.from('COPY 2400\0')), frame('Z', Buffer.from('I'))]);
    const wire = Buffer.concat([...payloads.slice(0, 3).map((p) => frame('d', p)), frame('N', Buffer.from('SNOTICE\0\0')),
      ...payloads.slice(3).map((p) => frame('d', p)), ending]);
    let seed = 11;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    for (const maxPiece of [3, 7, 700, 70_000]) {
      const socket = new EventEmitter();
      let handedBack = Buffer.alloc(0);
      let copy: { handleReadyForQuery(): void } | undefined;
      socket.on('data', (rest: Buffer) => {
        handedBack = Buffer.concat([handedBack, rest]);
        if (handedBack.subarray(-6).equals(frame('Z', Buffer.from('I')))) copy!.handleReadyForQuery();
      });
      const fakeClient = { query(submittable: { submit(connection: unknown): void; handleReadyForQuery(): void }) {
        copy = submittable;
        submittable.submit({ stream: socket, query: () => {} });
      } };
      const received: Buffer[] = [];
      const done = copyOut(fakeClient as unknown as pg.Client, 'COPY', (bytes, start, end) => {
        received.push(Buffer.from(bytes.subarray(start, end)));
      });
      for (let at = 0; at < wire.length;) {
        const size = 1 + Math.floor(random() * maxPiece);
        socket.emit('data', wire.subarray(at, at + size));
        at += size;
      }
      await done;
      assert.equal(received.length, payloads.length, `pieces up to ${maxPiece} bytes`);
      assert.ok(received.every((payload, i) => payload.equals(payloads[i]!)), `pieces up to ${maxPiece} bytes: every payload intact`);
      assert.ok(handedBack.equals(ending), 'pg gets exactly what ends the COPY');
    }
  });

  it('reads the COPY in place from a socket that reuses one read buffer, whatever its size, and pg reads on after it', { timeout: 60_000 }, async () => {
    const payloads = await copyPayloads();
    // 7 bytes: every message spans reads, so any piece kept as a view of the buffer would be overwritten.
    for (const bufferBytes of [7, 700, 256 * 1024]) {
      const client = new pg.Client({ connectionString: databaseUrl(source), stream: () => socketWithReusedReadBuffer(bufferBytes) });
      await client.connect();
      try {
        const received: Buffer[] = [];
        await copyOut(client, chainCopyStatement('auditpipe'), (bytes, start, end) => {
          received.push(Buffer.from(bytes.subarray(start, end)));
        });
        assert.equal(received.length, payloads.length, `${bufferBytes}-byte reads`);
        assert.ok(received.every((payload, i) => payload.equals(payloads[i]!)), `${bufferBytes}-byte reads: every payload intact`);
        // pg parses what follows the COPY, and the statements after it, from copies of the reads.
        assert.deepEqual((await client.query('SELECT count(*)::int AS n, max(seq)::int AS top FROM auditpipe.chain_events')).rows, [{ n: 2_400, top: 80 }]);
        await assert.rejects(copyOut(client, chainCopyStatement('no_such_schema'), () => {}), /no_such_schema/);
        assert.equal((await client.query('SELECT 1 AS one')).rows[0].one, 1);
      } finally {
        await client.end();
      }
    }
  });

  it('fails clearly, and leaves no thread behind, when the rows cannot be read', async () => {
    const input = { claims: new Map(), anchored: new Map(), finalClaims: new Map(), maxFindings: 10 };
    await assert.rejects(checkAllRows(databaseUrl(source), 'no_such_schema', 3, input), /no_such_schema/);
  });

  it('refuses a chunk size or block range that is not one', async () => {
    const input = { claims: new Map(), anchored: new Map(), finalClaims: new Map(), maxFindings: 10 };
    for (const chunkBlocks of [0, -4, 1.5, Number.NaN]) {
      await assert.rejects(checkAllRows(databaseUrl(source), 'auditpipe', 2, input, { chunkBlocks }), /chunkBlocks must be a positive integer/);
    }
    for (const blocks of [{ from: -1 }, { from: 1.5 }, { from: 4, to: 4 }, { from: 0, to: 2 ** 32 }]) {
      assert.throws(() => chainCopyStatement('auditpipe', blocks), /not a block range/);
    }
    assert.match(chainCopyStatement('auditpipe', { from: 8, to: 16 }), /ctid >= '\(8,0\)'::tid AND ctid < '\(16,0\)'::tid/);
  });

  it('every thread reads in the snapshot the first one exported: rows committed after it are not seen', async () => {
    const copy = await copyOf();
    const url = databaseUrl(copy);
    const exporter = new pg.Client({ connectionString: url });
    await exporter.connect();
    try {
      await exporter.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
      const { snapshot } = (await exporter.query<{ snapshot: string }>('SELECT pg_export_snapshot() AS snapshot')).rows[0]!;
      const db = openPostgres({ url, poolSize: 2, statementTimeoutMs: 30_000 });
      try {
        assert.equal((await new ChainStore(db, 'auditpipe').append(events(2_400, 2_500))).appended, 100);
      } finally {
        await db.close();
      }
      const worker = await connectInSnapshot(url, snapshot);
      try {
        const seen = await worker.query<{ n: string }>('SELECT count(*) AS n FROM auditpipe.chain_events');
        assert.equal(Number(seen.rows[0]!.n), 2_400, 'the 100 rows appended after the snapshot stay unseen');
      } finally {
        await worker.end();
      }
      await assert.rejects(connectInSnapshot(url, "x'; DROP TABLE auditpipe.chain_events; --"), /not a snapshot identifier/);
    } finally {
      await exporter.end();
    }
    assert.equal(Number((await adminQuery('SELECT count(*) AS n FROM auditpipe.chain_events', [], copy)).rows[0].n), 2_500);
  });
});
