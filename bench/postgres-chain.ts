/**
 * Append and verify throughput of the Postgres hash-chain store, against a real server
 * (DATABASE_URL; `npm run bench:pg` starts none, run `npm run servers:up` first).
 *
 * In one run, on one fresh database, with the same generated events:
 *   - append: ChainStore.append with batches of BENCH_BATCH (canonical JSON, hashing, one statement
 *     that locks the heads, checks them and writes rows and heads), with 4 batches handed in at
 *     once (what the engine does with its default batch.max_in_flight of 4: the next batch is
 *     hashed while the current one is written) and with 1 at a time (no overlap);
 *   - copy: a plain COPY (psql \copy, CSV) of the very same rows into an identical empty table —
 *     the floor: what PostgreSQL needs to store these rows with these indexes and no chain;
 *   - verify: verifyStore over the same chains grown to BENCH_VERIFY_EVENTS (read, recompute every
 *     hash, check records, links, heads), as `auditpipe verify` runs it (one binary COPY in
 *     storage order, one thread and connection per CPU, at most one per 100,000 events), on one
 *     thread, and as the ordered walk (what the embedded store does); beside it the floor: the
 *     same binary COPY read and dropped. The table is vacuumed first (unmeasured), as autovacuum
 *     would have done before a verify on a real store.
 * Before each measured phase, what the earlier ones wrote is flushed to disk (`settle`).
 * For each phase it reports wall-clock events/s, the CPU spent per event by this Node process and
 * by the PostgreSQL backends doing the work, and by the whole machine (all read from /proc, so the
 * server must run on this machine): on a shared machine CPU per event compares across runs.
 * Env: BENCH_EVENTS (default 100000), BENCH_VERIFY_EVENTS (500000), BENCH_ACTORS (1000), BENCH_BATCH (1000);
 * BENCH_KEEP_DATABASE=1 keeps the database (its URL goes to stderr) for experiments.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { toEvent } from '../src/core/event.ts';
import type { AuditEvent } from '../src/public/index.ts';
import { openPostgres } from '../src/sinks/postgres/db.ts';
import { migrate } from '../src/sinks/postgres/migrations.ts';
import { ChainStore } from '../src/sinks/postgres/store.ts';
import { childCpuSeconds, machineCpuSeconds, processCpuSeconds, TICKS_PER_SECOND } from './proc-cpu.ts';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 100_000);
const VERIFY_EVENTS = Math.max(EVENTS, Number(process.env.BENCH_VERIFY_EVENTS ?? 500_000));
const ACTORS = Number(process.env.BENCH_ACTORS ?? 1_000);
const BATCH = Number(process.env.BENCH_BATCH ?? 1_000);
const TARGET_APPEND = 30_000;
const TARGET_VERIFY = 200_000;
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
async function query(url: string, text: string, values: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(text, values);
  } finally {
    await client.end();
  }
}

const ROOT = path.resolve(import.meta.dirname, '..');
const CLI = path.join(ROOT, 'src/cli/main.ts');

/** CPU used by this database's auditpipe backends between start() and stop(). */
async function backendCpu(url: string, database: string) {
  const sample = async () => {
    const pids = (await query(url, `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'auditpipe'`, [database])).rows.map((r) => r.pid as number);
    return new Map(pids.map((pid) => [pid, processCpuSeconds(pid)]));
  };
  const before = await sample();
  return async (): Promise<number | undefined> => {
    const after = await sample();
    let total = 0;
    for (const [pid, seconds] of after) {
      if (seconds === undefined) return undefined;
      total += seconds - (before.get(pid) ?? 0);
    }
    return total;
  };
}

function makeEvents(prefix: string, count = EVENTS, first = 0): AuditEvent[] {
  return Array.from({ length: count }, (_, i) => i + first).map((n) => toEvent({
    id: `${prefix}-${n}`,
    actorId: `user-${n % ACTORS}`,
    action: ['login', 'logout', 'update', 'delete'][n % 4],
    msg: 'user performed an action on a resource',
    target: { type: 'document', id: `doc-${n % 9973}` },
    ip: `10.0.${n % 256}.${(n >> 8) % 256}`,
    metadata: { requestId: `req-${n}`, userAgent: 'Mozilla/5.0 (X11; Linux x86_64)', tags: ['a', 'b', 'c'] },
  }, { actorField: 'actorId' }));
}

interface Phase {
  events_per_s: number;
  seconds: number;
  node_cpu_us_per_event: number;
  postgres_cpu_us_per_event: number | null;
  machine_cpu_us_per_event: number | null;
}

/**
 * Writes out what earlier phases left dirty before the next measured one. The test server runs
 * with fsync off, so what a phase writes (the verify store: ~600 MB of table, indexes and WAL)
 * sits in the OS's cache until the kernel flushes it, in bursts that took CPU from whichever phase
 * was running (one of ~500 MB in one second, in the middle of a measured verify, seen with
 * vmstat). A checkpoint needs a role the bench's user may lack; the OS flush moves the bulk.
 */
async function settle(url: string): Promise<void> {
  await query(url, 'CHECKPOINT').catch(() => undefined);
  execFileSync('sync');
}

async function measure(url: string, database: string, work: () => Promise<void>, events = EVENTS): Promise<Phase> {
  const pgCpu = await backendCpu(url, database);
  const machine = machineCpuSeconds();
  const cpu = process.cpuUsage();
  const started = performance.now();
  await work();
  const seconds = (performance.now() - started) / 1000;
  const node = process.cpuUsage(cpu);
  const machineAfter = machineCpuSeconds();
  const postgres = await pgCpu();
  return {
    events_per_s: Math.round(events / seconds),
    seconds: Number(seconds.toFixed(2)),
    node_cpu_us_per_event: Number(((node.user + node.system) / events).toFixed(1)),
    postgres_cpu_us_per_event: postgres === undefined ? null : Number((postgres * 1e6 / events).toFixed(1)),
    machine_cpu_us_per_event: machine === undefined || machineAfter === undefined ? null : Number(((machineAfter - machine) * 1e6 / events).toFixed(1)),
  };
}

async function appendAll(store: ChainStore, events: AuditEvent[], inFlight: number): Promise<void> {
  const batches: AuditEvent[][] = [];
  for (let i = 0; i < events.length; i += BATCH) batches.push(events.slice(i, i + BATCH));
  let next = 0;
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (next < batches.length) {
      const batch = batches[next++]!;
      const result = await store.append(batch);
      if (result.appended !== batch.length) throw new Error(`appended ${result.appended} of ${batch.length}`);
    }
  }));
}

const database = `ap_bench_${Date.now().toString(36)}`;
await query(base, `CREATE DATABASE "${database}"`);
const url = urlFor(database);
const db = openPostgres({ url, poolSize: 8, statementTimeoutMs: 600_000 });
const serverVersion = (await query(url, 'SHOW server_version')).rows[0].server_version as string;
const settings = Object.fromEntries((await query(url, `SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'max_wal_size')`)).rows.map((r) => [r.name, r.setting]));
const results: Record<string, unknown> = {
  what: 'Postgres hash-chain store: append (ChainStore.append) and verify (verifyStore) against a plain COPY of the same rows, one run, one database',
  machine: { cpus: cpus().length, cpu_model: cpus()[0]?.model, node: process.version, postgres: serverVersion, postgres_settings: settings, load_average_1m_at_start: Number(loadavg()[0]!.toFixed(1)) },
  workload: { events: EVENTS, actors: ACTORS, batch_events: BATCH, note: 'every batch touches every actor: the worst case for head-row locking' },
};
try {
  await migrate(db, 'chain4');
  await migrate(db, 'chain1');
  await migrate(db, 'copied');
  const eventsA = makeEvents('a');
  (results.workload as Record<string, unknown>).avg_event_bytes = Math.round(eventsA.reduce((n, e) => n + e.bytes, 0) / EVENTS);

  const workers = Math.min(availableParallelism(), 8);
  const storeA = new ChainStore(db, 'chain4');
  await settle(url);
  const append4 = await measure(url, database, () => appendAll(storeA, eventsA, 4));
  const storeB = new ChainStore(db, 'chain1');
  const eventsB = makeEvents('b');
  await settle(url);
  const append1 = await measure(url, database, () => appendAll(storeB, eventsB, 1));

  // The same rows, COPYed into an identical empty table by psql: what PostgreSQL itself needs.
  const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-bench-'));
  const csv = path.join(dir, 'rows.csv');
  execFileSync('psql', [url, '-q', '-c', `\\copy (SELECT actor, seq, event_id, prev_hash, hash, canonical, event_time, received_at FROM chain4.chain_events) TO '${csv}' WITH (FORMAT csv)`]);
  const script = path.join(dir, 'copy.sql');
  // The backend's CPU is read from /proc around the COPY, inside the same psql session.
  writeFileSync(script, [
    'SELECT pg_backend_pid() AS pid \\gset',
    '\\setenv BENCH_BACKEND_PID :pid',
    '\\! cat /proc/$BENCH_BACKEND_PID/stat',
    `\\copy copied.chain_events (actor, seq, event_id, prev_hash, hash, canonical, event_time, received_at) FROM '${csv}' WITH (FORMAT csv)`,
    '\\! cat /proc/$BENCH_BACKEND_PID/stat',
  ].join('\n'));
  await settle(url);
  const copyStarted = performance.now();
  const copyOut = execFileSync('psql', [url, '-q', '-X', '-f', script], { encoding: 'utf8' });
  const copySeconds = (performance.now() - copyStarted) / 1000;
  const stats = copyOut.trim().split('\n').filter((line) => /^\d+ \(/.test(line)).map((line) => {
    const fields = line.replace(/^.*\) /s, '').split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  });
  const copy = {
    events_per_s: Math.round(EVENTS / copySeconds),
    seconds: Number(copySeconds.toFixed(2)),
    postgres_cpu_us_per_event: stats.length === 2 ? Number(((stats[1]! - stats[0]!) * 1e6 / EVENTS).toFixed(1)) : null,
    note: 'psql \\copy of a CSV holding exactly the rows append wrote into an identical empty table (same indexes and checks); includes psql start-up',
  };
  writeFileSync(csv, '');

  // Verify runs on a bigger store, the same chains grown (unmeasured): a verifier's fixed costs
  // (connections, worker threads) weigh on 100,000 events as they do not on real stores.
  if (VERIFY_EVENTS > EVENTS) await appendAll(storeA, makeEvents('v', VERIFY_EVENTS - EVENTS, EVENTS), 4);
  // A settled store, as a verify normally finds it: those inserts trigger an autovacuum of the
  // whole table (and its first read sets every row's hint bits), which otherwise runs during one
  // of the measured reads below, whichever the autovacuum launcher's minute happens to hit.
  await query(url, 'VACUUM (ANALYZE) chain4.chain_events');
  await settle(url);
  // Verify runs as `auditpipe verify` does, in a process of its own (this one holds hundreds of
  // thousands of generated events, whose garbage collection would be charged to the verifier).
  const verifyCli = (args: string[], note?: string, command = [CLI, 'verify', '--database-url', url, '--schema', 'chain4', '--json', ...args]) => {
    const machine = machineCpuSeconds();
    const children = childCpuSeconds();
    const started = performance.now();
    const run = spawnSync(process.execPath, command, { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20 });
    if (run.status !== 0 && run.status !== 1) throw new Error(`verify exited with ${run.status}: ${run.stderr}`);
    const wallSeconds = (performance.now() - started) / 1000;
    const cpu = childCpuSeconds() - children;
    const machineAfter = machineCpuSeconds();
    const report = JSON.parse(run.stdout) as { events: number; elapsedMs: number; findings: Array<{ kind: string }> };
    if (report.events !== VERIFY_EVENTS || report.findings.some((f) => f.kind !== 'no-public-key' && f.kind !== 'no-checkpoint')) {
      throw new Error(`verify disagreed: ${JSON.stringify(report.findings.slice(0, 3))}`);
    }
    return {
      events_per_s: Math.round(VERIFY_EVENTS / (report.elapsedMs / 1000)),
      seconds: Number((report.elapsedMs / 1000).toFixed(2)),
      with_process_start_events_per_s: Math.round(VERIFY_EVENTS / wallSeconds),
      with_process_start_seconds: Number(wallSeconds.toFixed(2)),
      node_cpu_us_per_event_with_start: Number((cpu * 1e6 / VERIFY_EVENTS).toFixed(1)),
      machine_cpu_us_per_event_with_start: machine === undefined || machineAfter === undefined ? null : Number(((machineAfter - machine) * 1e6 / VERIFY_EVENTS).toFixed(1)),
      args: args.join(' '),
      ...(note ? { note } : {}),
    };
  };
  // The floor: the same binary COPY, read as verify reads it (into one reused buffer) and dropped.
  const floorScript = [
    "import pg from 'pg';",
    `import { chainCopyStatement, copyOut, verifierStream } from ${JSON.stringify(pathToFileURL(path.join(ROOT, 'src/sinks/postgres/verify-copy.ts')).href)};`,
    `const client = new pg.Client({ connectionString: ${JSON.stringify(url)}, options: '-c synchronize_seqscans=off', stream: verifierStream });`,
    'const started = performance.now();',
    'await client.connect();',
    "await copyOut(client, chainCopyStatement('chain4'), () => {});",
    'await client.end();',
    `console.log(JSON.stringify({ events: ${VERIFY_EVENTS}, findings: [], elapsedMs: performance.now() - started }));`,
  ].join('\n');
  const readFloor = verifyCli([], 'the binary COPY verify reads (one thread), received by a process and dropped', ['--input-type=module', '-e', floorScript]);
  // As `auditpipe verify` without --workers: a thread per CPU, none for fewer than 100,000 events.
  const threads = Math.max(1, Math.min(workers, Math.floor(VERIFY_EVENTS / 100_000)));
  const verify = { ...verifyCli([]), threads };
  const verifyOneThread = { ...verifyCli(['--workers', '1']), threads: 1 };
  const orderedScript = [
    `import { openPostgres } from ${JSON.stringify(pathToFileURL(path.join(ROOT, 'src/sinks/postgres/db.ts')).href)};`,
    `import { ChainStore } from ${JSON.stringify(pathToFileURL(path.join(ROOT, 'src/sinks/postgres/store.ts')).href)};`,
    `import { verifyStore } from ${JSON.stringify(pathToFileURL(path.join(ROOT, 'src/security/verify.ts')).href)};`,
    `const db = openPostgres({ url: ${JSON.stringify(url)}, poolSize: 2, statementTimeoutMs: 600000 });`,
    `console.log(JSON.stringify(await verifyStore(new ChainStore(db, 'chain4'))));`,
    'await db.close();',
  ].join('\n');
  const verifyOrdered = verifyCli([], 'rows read in (actor, seq) order in pages, as text, one thread: what the embedded store does, and what auditpipe verify did before the binary COPY',
    ['--input-type=module', '-e', orderedScript]);

  const cpuPerEvent = (phase: { node_cpu_us_per_event?: number; postgres_cpu_us_per_event: number | null }) =>
    (phase.node_cpu_us_per_event ?? 0) + (phase.postgres_cpu_us_per_event ?? 0);
  Object.assign(results, {
    append_4_handed_in: { ...append4, note: 'as the engine drives the sink (batch.max_in_flight 4): each batch is hashed while the one before is written' },
    append_1_in_flight: { ...append1, note: 'one batch at a time: Node and PostgreSQL take turns' },
    copy,
    verify_store: { events: VERIFY_EVENTS, actors: ACTORS },
    verify_read_floor: readFloor,
    verify,
    verify_1_thread: verifyOneThread,
    verify_ordered_walk: verifyOrdered,
    ratios: {
      verify_wall_time_vs_read_floor: Number((verify.seconds / readFloor.seconds).toFixed(2)),
      append_wall_time_vs_copy: Number((append4.seconds / copy.seconds).toFixed(2)),
      append_postgres_cpu_vs_copy: copy.postgres_cpu_us_per_event && append4.postgres_cpu_us_per_event
        ? Number((append4.postgres_cpu_us_per_event / copy.postgres_cpu_us_per_event).toFixed(2)) : null,
    },
    // What the CPU per event allows when this machine's cores do nothing else.
    cpu_bound_estimates_events_per_s: {
      append_1_in_flight: Math.round(1e6 / cpuPerEvent(append1)),
      append_overlapped_2_cores: Math.round(1e6 / Math.max(append4.node_cpu_us_per_event, append4.postgres_cpu_us_per_event ?? 0, cpuPerEvent(append4) / 2)),
      verify_all_cores_with_start: verify.machine_cpu_us_per_event_with_start ? Math.round(1e6 * cpus().length / verify.machine_cpu_us_per_event_with_start) : null,
    },
    targets: {
      append_events_per_s: TARGET_APPEND,
      append_met: append4.events_per_s >= TARGET_APPEND,
      verify_events_per_s: TARGET_VERIFY,
      verify_met: verify.events_per_s >= TARGET_VERIFY,
    },
  });
  (results.machine as Record<string, unknown>).load_average_1m_at_end = Number(loadavg()[0]!.toFixed(1));
  console.log(JSON.stringify(results, null, 2));
} finally {
  await db.close();
  if (process.env.BENCH_KEEP_DATABASE === '1') console.error(`kept database ${database} (BENCH_KEEP_DATABASE=1): ${url}`);
  else {
    // Without FORCE first: FORCE refuses to end an autovacuum worker for a role that is not superuser.
    await query(base, `DROP DATABASE IF EXISTS "${database}"`)
      .catch(() => query(base, `DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`));
  }
}
