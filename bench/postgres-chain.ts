/**
 * Append and verify throughput of the Postgres hash-chain store, against a real server
 * (DATABASE_URL; `npm run bench:pg` starts none, run `npm run servers:up` first).
 *
 * Reports, in one run on one database:
 *   - chain append: ChainStore.append with batches of 1,000 (hashing, head locks, dedup check,
 *     multi-row insert, head update), 1 and 4 batches in flight;
 *   - plain COPY of the very same rows into an identical empty table (psql \copy): the floor;
 *   - verify: verifyStore over everything (read, recompute, check).
 * Env: BENCH_EVENTS (default 100000), BENCH_ACTORS (1000), BENCH_BATCH (1000).
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { toEvent } from '../src/core/event.ts';
import type { AuditEvent } from '../src/public/index.ts';
import { openPostgres } from '../src/sinks/postgres/db.ts';
import { migrate } from '../src/sinks/postgres/migrations.ts';
import { ChainStore } from '../src/sinks/postgres/store.ts';
import { verifyStore } from '../src/security/verify.ts';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 100_000);
const ACTORS = Number(process.env.BENCH_ACTORS ?? 1_000);
const BATCH = Number(process.env.BENCH_BATCH ?? 1_000);
const base = process.env.DATABASE_URL;
if (!base) {
  console.error('DATABASE_URL is not set: run "npm run servers:up" and "set -a; . .servers/env; set +a" first');
  process.exit(2);
}
const urlFor = (db: string) => {
  const url = new URL(base);
  url.pathname = `/${db}`;
  return url.toString();
};
async function admin(text: string) {
  const client = new pg.Client({ connectionString: base });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

function makeEvents(prefix: string): AuditEvent[] {
  return Array.from({ length: EVENTS }, (_, n) => toEvent({
    id: `${prefix}-${n}`,
    actorId: `user-${n % ACTORS}`,
    action: ['login', 'logout', 'update', 'delete'][n % 4],
    msg: 'user performed an action on a resource',
    target: { type: 'document', id: `doc-${n % 9973}` },
    ip: `10.0.${n % 256}.${(n >> 8) % 256}`,
    metadata: { requestId: `req-${n}`, userAgent: 'Mozilla/5.0 (X11; Linux x86_64)', tags: ['a', 'b', 'c'] },
  }, { actorField: 'actorId' }));
}

async function appendAll(store: ChainStore, events: AuditEvent[], inFlight: number): Promise<number> {
  const batches: AuditEvent[][] = [];
  for (let i = 0; i < events.length; i += BATCH) batches.push(events.slice(i, i + BATCH));
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (next < batches.length) {
      const batch = batches[next++]!;
      const result = await store.append(batch);
      if (result.appended !== batch.length) throw new Error(`appended ${result.appended} of ${batch.length}`);
    }
  }));
  return (performance.now() - started) / 1000;
}

const database = `ap_bench_${Date.now().toString(36)}`;
await admin(`CREATE DATABASE "${database}"`);
const db = openPostgres({ url: urlFor(database), poolSize: 8, statementTimeoutMs: 600_000 });
const results: Record<string, unknown> = { events: EVENTS, actors: ACTORS, batch: BATCH, cpus: cpus().length, node: process.version, loadAverageAtStart: Number((await import('node:os')).loadavg()[0]!.toFixed(1)) };
try {
  await migrate(db, 'chain1');
  await migrate(db, 'chain4');
  await migrate(db, 'copied');
  const eventsA = makeEvents('a');
  results.avgEventBytes = Math.round(eventsA.reduce((n, e) => n + e.bytes, 0) / EVENTS);

  const storeA = new ChainStore(db, 'chain1');
  const appendCpu = process.cpuUsage();
  const seconds1 = await appendAll(storeA, eventsA, 1);
  const cpuA = process.cpuUsage(appendCpu);
  results.append_1_in_flight_events_per_s = Math.round(EVENTS / seconds1);
  results.append_events_per_node_cpu_s = Math.round(EVENTS / ((cpuA.user + cpuA.system) / 1e6));
  const storeB = new ChainStore(db, 'chain4');
  const seconds4 = await appendAll(storeB, makeEvents('b'), 4);
  results.append_4_in_flight_events_per_s = Math.round(EVENTS / seconds4);

  // The same rows, COPYed into an identical empty table: what PostgreSQL itself needs.
  const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-bench-'));
  const csv = path.join(dir, 'rows.csv');
  execFileSync('psql', [urlFor(database), '-q', '-c', `\\copy (SELECT actor, seq, event_id, prev_hash, hash, canonical, event_time, received_at FROM chain1.chain_events) TO '${csv}' WITH (FORMAT csv)`]);
  const copyStarted = performance.now();
  execFileSync('psql', [urlFor(database), '-q', '-c', `\\copy copied.chain_events (actor, seq, event_id, prev_hash, hash, canonical, event_time, received_at) FROM '${csv}' WITH (FORMAT csv)`]);
  const copySeconds = (performance.now() - copyStarted) / 1000;
  results.plain_copy_events_per_s = Math.round(EVENTS / copySeconds);
  results.append_vs_copy_ratio = Number((seconds1 / copySeconds).toFixed(2));
  writeFileSync(csv, '');

  const verifyStarted = performance.now();
  const verifyCpu = process.cpuUsage();
  const report = await verifyStore(storeA, {});
  const verifySeconds = (performance.now() - verifyStarted) / 1000;
  const cpu = process.cpuUsage(verifyCpu);
  // Per CPU-second of this process: comparable across runs on a machine shared with other work.
  results.verify_events_per_node_cpu_s = Math.round(EVENTS / ((cpu.user + cpu.system) / 1e6));
  if (report.events !== EVENTS || report.findings.some((f) => f.kind !== 'no-public-key' && f.kind !== 'no-checkpoint')) {
    throw new Error(`verify disagreed: ${JSON.stringify(report.findings.slice(0, 3))}`);
  }
  results.verify_events_per_s = Math.round(EVENTS / verifySeconds);
  console.log(JSON.stringify(results, null, 2));
} finally {
  await db.close();
  await admin(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
}
