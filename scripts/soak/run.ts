#!/usr/bin/env node
/**
 * `npm run soak`: auditpipe as a child process under load, SIGKILLed at random moments and
 * restarted on the same data (or its servers stopped/paused under load), then every acknowledged
 * event is looked up in every sink and the chain is verified. Exit 0 only when nothing
 * acknowledged is missing, nothing is twice in the chain, the chains have no gap and verify passes.
 *
 *   node scripts/soak/run.ts --profile http-embedded|http-postgres|nats-fanout|scale-out|short
 *     [--cycles N] [--seconds S] [--json FILE] [--outage NAME|all] [--pause NAME] [--outage-seconds S]
 */
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { sql } from 'kysely';
import pg from 'pg';
import { jetstreamManager } from '@nats-io/jetstream';
import { writeKeyPair } from '../../src/security/keys.ts';
import { openEmbedded } from '../../src/sinks/postgres/db.ts';
import { dropDatabase } from '../../test/integration/postgres/helpers.ts';
import {
  Auditpipe, countAgainst, HttpLoad, loadServerEnv, natsConnect, NatsLoad, random, ROOT, SERVERS, serverCtl, serverSignal, streamMessages, verify,
  type Load, type ServerName, type SinkCount, type VerifyOutcome,
} from './harness.ts';

const PROFILES = ['http-embedded', 'http-postgres', 'nats-fanout', 'scale-out', 'short'] as const;
type Profile = (typeof PROFILES)[number];

const { values: options } = parseArgs({
  options: {
    profile: { type: 'string', default: 'short' },
    cycles: { type: 'string' },
    seconds: { type: 'string' },
    json: { type: 'string' },
    outage: { type: 'string' },
    pause: { type: 'string' },
    'outage-seconds': { type: 'string', default: '30' },
    'keep-data': { type: 'boolean', default: false },
  },
});

const profile = options.profile as Profile;
if (!PROFILES.includes(profile)) throw new Error(`--profile must be one of ${PROFILES.join(', ')}`);
const outageNames = (value: string | undefined): ServerName[] => {
  if (!value) return [];
  const names = value === 'all' ? SERVERS : value.split(',') as ServerName[];
  for (const name of names) if (!SERVERS.includes(name)) throw new Error(`unknown server ${name} (one of ${SERVERS.join(', ')}, or all)`);
  return names;
};
const outages = outageNames(options.outage);
const pauses = outageNames(options.pause);
const faultRun = outages.length + pauses.length > 0;
const cyclesWanted = Number(options.cycles ?? (profile === 'short' ? 10 : faultRun ? 0 : 100));
const secondsBudget = Number(options.seconds ?? (profile === 'short' ? 120 : 3_600));
const outageSeconds = Number(options['outage-seconds']);

loadServerEnv();
const runId = `soak${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-soak-'));
const log = (message: string) => process.stderr.write(`# [soak ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
const problems: string[] = [];

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function databaseUrl(database: string): string {
  const url = new URL(process.env.DATABASE_URL!);
  url.pathname = `/${database}`;
  return url.toString();
}

async function adminQuery(text: string, database?: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: database ? databaseUrl(database) : process.env.DATABASE_URL });
  await client.connect();
  try {
    return await client.query(text);
  } finally {
    await client.end();
  }
}

function writeConfig(name: string, config: Record<string, unknown>): string {
  const file = path.join(dir, `${name}.yml`);
  writeFileSync(path.join(dir, 'plugins.json'), '{"plugins": []}');
  writeFileSync(file, stringify({ data_dir: path.join(dir, 'data'), log_level: 'warn', shutdown_timeout_ms: 20_000, ...config }));
  return file;
}

// Short retry budgets: during an outage a batch gives up within seconds and is answered 503 (HTTP)
// or naked for redelivery (NATS) instead of holding its request for minutes.
const sinkRetry = { max_attempts: 5, initial_backoff_ms: 100, max_backoff_ms: 1_000, max_elapsed_ms: 5_000, timeout_ms: 5_000 };

interface Setup {
  configFile: string;
  readyUrl: string;
  load: Load;
  /** Waits until the source has handed everything acknowledged to the sinks (NATS: the stream is empty). */
  settled(): Promise<void>;
  count(): Promise<Record<string, SinkCount>>;
  chainShape(): Promise<ChainShape>;
  cleanup(): Promise<void>;
  /** Gauges sampled during a fault (NATS: messages delivered to auditpipe but not yet acked, and waiting in the stream). */
  probe?(): Promise<Record<string, number>>;
}

interface ChainShape {
  /** Actors whose sequence numbers do not run 1..n. */
  gappedActors: number;
  /** Rows whose prev_hash is not the hash of the row before them. */
  brokenLinks: number;
  /** Heads whose seq is not the highest stored for the actor. */
  staleHeads: number;
}

const SHAPE_QUERIES = {
  gappedActors: 'SELECT count(*) AS n FROM (SELECT actor FROM auditpipe.chain_events GROUP BY actor HAVING count(*) <> max(seq) OR min(seq) <> 1) g',
  brokenLinks: 'SELECT count(*) AS n FROM auditpipe.chain_events e JOIN auditpipe.chain_events p ON p.actor = e.actor AND p.seq = e.seq - 1 WHERE e.prev_hash <> p.hash',
  staleHeads: 'SELECT count(*) AS n FROM auditpipe.chain_heads h LEFT JOIN (SELECT actor, max(seq) AS top FROM auditpipe.chain_events GROUP BY actor) m ON m.actor = h.actor WHERE h.seq <> coalesce(m.top, 0)',
};

async function postgresShape(database: string): Promise<ChainShape> {
  const shape: Record<string, number> = {};
  for (const [key, text] of Object.entries(SHAPE_QUERIES)) shape[key] = Number((await adminQuery(text, database)).rows[0].n);
  return shape as unknown as ChainShape;
}

async function embeddedQuery<T>(use: (run: (text: string) => Promise<Array<Record<string, unknown>>>) => Promise<T>): Promise<T> {
  const db = await openEmbedded(path.join(dir, 'data', 'chain', 'soak'), 'soak count');
  try {
    return await use((text) => db.transaction(async (tx) => (await sql.raw<Record<string, unknown>>(text).execute(tx)).rows));
  } finally {
    await db.close();
  }
}

async function httpSetup(store: 'embedded' | 'postgres'): Promise<Setup> {
  const port = await freePort();
  let database = '';
  const keyFile = path.join(dir, 'checkpoint.key');
  if (store === 'postgres') {
    database = `soak_${runId}`.toLowerCase();
    await adminQuery(`CREATE DATABASE "${database}"`);
    writeKeyPair(keyFile);
  }
  const chain = store === 'embedded'
    ? { type: 'postgres', name: 'chain', checkpoint_key_generate: true, checkpoint_interval_ms: 1_000, retry: sinkRetry }
    : { type: 'postgres', name: 'chain', url: databaseUrl(database), checkpoint_key_file: keyFile, checkpoint_interval_ms: 1_000, retry: sinkRetry };
  const configFile = writeConfig('auditpipe', {
    pipelines: [{
      name: 'soak',
      source: { type: 'http', listen: `127.0.0.1:${port}` },
      batch: { max_events: 200, interval_ms: 50, max_in_flight: 4 },
      sinks: [chain],
    }],
  });
  const base = `http://127.0.0.1:${port}`;
  const load = new HttpLoad(runId, () => `${base}/v1/events`, 50, 25, 4);
  return {
    configFile,
    readyUrl: `${base}/readyz`,
    load,
    settled: async () => undefined,
    async count() {
      const ids = store === 'embedded'
        ? await embeddedQuery(async (run) => (await run('SELECT event_id FROM auditpipe.chain_events')).map((row) => String(row.event_id)))
        : (await adminQuery('SELECT event_id FROM auditpipe.chain_events', database)).rows.map((row) => String(row.event_id));
      return { chain: countAgainst(load.acked, ids) };
    },
    async chainShape() {
      if (store === 'postgres') return postgresShape(database);
      return embeddedQuery(async (run) => {
        const shape: Record<string, number> = {};
        for (const [key, text] of Object.entries(SHAPE_QUERIES)) shape[key] = Number((await run(text))[0]!.n);
        return shape as unknown as ChainShape;
      });
    },
    async cleanup() {
      if (database && !options['keep-data']) await dropDatabase(database);
    },
  };
}

async function natsSetup(instances: number, withFanout: boolean, pacedNats = true): Promise<Setup & { configFiles: string[]; readyUrls: string[] }> {
  const nc = await natsConnect();
  const namespace = runId;
  const database = `soak_${runId}`.toLowerCase();
  await adminQuery(`CREATE DATABASE "${database}"`);
  const keyFile = path.join(dir, 'checkpoint.key');
  if (!existsSync(keyFile)) writeKeyPair(keyFile);
  const { s3Client, createBucket, listVersions, readObject, ndjsonEvents } = await import('../../test/integration/s3/s3-helpers.ts');
  const { kafkaClient, createTopic, consumeAll } = await import('../../test/integration/kafka/kafka-helpers.ts');
  const s3 = s3Client();
  const kafka = kafkaClient();
  const bucket = runId.toLowerCase();
  const topic = `soak_${runId}`;
  if (withFanout) {
    await createBucket(s3, bucket, 'locked');
    await createTopic(kafka, topic, 3);
  }
  const sinks: Array<Record<string, unknown>> = [
    { type: 'postgres', name: 'chain', url: databaseUrl(database), checkpoint_key_file: keyFile, checkpoint_interval_ms: 1_000, retry: sinkRetry },
  ];
  if (withFanout) {
    sinks.push(
      {
        type: 's3', bucket, prefix: 'soak', endpoint: process.env.S3_ENDPOINT, region: process.env.S3_REGION ?? 'us-east-1', force_path_style: true,
        access_key_id: process.env.S3_ACCESS_KEY, secret_access_key: process.env.S3_SECRET_KEY, retention: '30s', retry: sinkRetry,
      },
      { type: 'kafka', brokers: process.env.KAFKA_BROKERS, topic, connection_timeout_ms: 1_000, request_timeout_ms: 5_000, send_retries: 1, retry: sinkRetry },
      { type: 'victorialogs', url: process.env.VICTORIA_URL, stream_fields: ['stream'], retry: sinkRetry },
    );
  }
  const configFiles: string[] = [];
  const readyUrls: string[] = [];
  for (let i = 0; i < instances; i += 1) {
    const adminPort = await freePort();
    configFiles.push(writeConfig(`auditpipe-${i}`, {
      data_dir: path.join(dir, `data-${i}`),
      admin: { listen: `127.0.0.1:${adminPort}` },
      pipelines: [{
        name: 'soak',
        source: {
          type: 'nats', servers: [process.env.NATS_URL], token: process.env.NATS_TOKEN ?? '', namespace, stream: 'logs', consumer: 'soak',
          ack_wait_ms: 15_000, pull_batch: 200, nak_backoff_ms: [500, 1_000, 2_000],
        },
        batch: { max_events: 200, interval_ms: 50, max_in_flight: 4 },
        nak_delay_ms: 500,
        sinks,
      }],
    }));
    readyUrls.push(`http://127.0.0.1:${adminPort}/readyz`);
  }
  const stream = `${namespace}_logs`;
  const load = new NatsLoad(runId, nc, `${namespace}.logs`, 50, 50, 2);
  load.paceMs = pacedNats ? 100 : 0;
  return {
    configFile: configFiles[0]!,
    readyUrl: readyUrls[0]!,
    configFiles,
    readyUrls,
    load,
    async settled() {
      const deadline = Date.now() + 300_000;
      for (;;) {
        const left = await streamMessages(nc, stream).catch(() => -1);
        if (left === 0) return;
        if (Date.now() > deadline) {
          problems.push(`${left} messages still in the stream 300 s after the load stopped`);
          return;
        }
        await sleep(500);
      }
    },
    async count() {
      const acked = load.acked;
      const chainIds = (await adminQuery('SELECT event_id FROM auditpipe.chain_events', database)).rows.map((row) => String(row.event_id));
      const counts: Record<string, SinkCount> = { chain: countAgainst(acked, chainIds) };
      if (!withFanout) return counts;
      const s3Ids: string[] = [];
      const { versions } = await listVersions(s3, bucket, 'soak/soak/2');
      for (const version of versions) {
        for (const event of ndjsonEvents((await readObject(s3, bucket, version.key, version.versionId)).body)) s3Ids.push(String(event.id));
      }
      counts.s3 = { ...countAgainst(acked, s3Ids), objects: versions.length } as SinkCount;
      const records = await consumeAll(kafka, topic, `soak-count-${runId}`);
      counts.kafka = countAgainst(acked, records.map((record) => String(record.value.id)));
      counts.victorialogs = countAgainst(acked, await victoriaIds(runId));
      return counts;
    },
    chainShape: () => postgresShape(database),
    async probe() {
      const jsm = await jetstreamManager(nc);
      const info = await jsm.consumers.info(stream, 'soak');
      return { natsAckPending: info.num_ack_pending, natsPending: info.num_pending };
    },
    async cleanup() {
      const jsm = await jetstreamManager(nc);
      for (const name of [stream, `${stream}_dlq`]) await jsm.streams.delete(name).catch(() => false);
      await nc.close();
      if (!options['keep-data']) await dropDatabase(database);
    },
  };
}

async function victoriaIds(streamValue: string): Promise<string[]> {
  const base = process.env.VICTORIA_URL!;
  await (await fetch(`${base}/internal/force_flush`, { method: 'POST' })).arrayBuffer();
  const res = await fetch(`${base}/select/logsql/query`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ query: `stream:${JSON.stringify(streamValue)} | fields id`, limit: '10000000' }),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`VictoriaLogs query failed: ${res.status} ${text}`);
  return text.split('\n').filter(Boolean).map((line) => String(JSON.parse(line).id));
}

interface CycleStats {
  cycles: number;
  killedBeforeReady: number;
  readyMs: number[];
  maxRssKiB: number;
}

/** Starts auditpipe, waits for /readyz (a start that fails is a finding, and retried). */
async function startReady(configFile: string, readyUrl: string, stats: CycleStats): Promise<Auditpipe> {
  for (let attempt = 1; ; attempt += 1) {
    const child = new Auditpipe(configFile, readyUrl);
    try {
      stats.readyMs.push(await child.waitReady());
      return child;
    } catch (error) {
      problems.push(`start ${stats.cycles + 1} attempt ${attempt} failed: ${(error as Error).message.slice(0, 2_000)}`);
      await child.kill('SIGKILL');
      if (attempt >= 3) throw error;
    }
  }
}

/** The SIGKILL cycles: each one lets the process run a random while (sometimes not even until ready), then kills it. */
async function killCycles(configFile: string, readyUrl: string, stats: CycleStats, cycles: number, deadline: number): Promise<void> {
  while (stats.cycles < cycles && Date.now() < deadline) {
    const child = new Auditpipe(configFile, readyUrl);
    const sampler = setInterval(() => child.rssKiB(), 250);
    try {
      if (Math.random() < 0.2) {
        // Somewhere in start-up: opening the store, migrations, the first checkpoint.
        await sleep(random(50, 1_500));
        if (child.running) stats.killedBeforeReady += 1;
      } else {
        try {
          stats.readyMs.push(await child.waitReady());
        } catch (error) {
          problems.push(`cycle ${stats.cycles + 1}: ${(error as Error).message.slice(0, 3_000)}`);
          log(`cycle ${stats.cycles + 1} failed to start; see problems`);
        }
        await sleep(random(200, 2_500));
      }
      await child.kill('SIGKILL');
    } finally {
      clearInterval(sampler);
      stats.maxRssKiB = Math.max(stats.maxRssKiB, child.maxRssKiB);
    }
    stats.cycles += 1;
    if (stats.cycles % 10 === 0) log(`${stats.cycles} kills`);
  }
}

interface OutageRecord {
  server: ServerName;
  kind: 'stop' | 'pause';
  seconds: number;
  /** /readyz answers polled every 500 ms: before, during and after the fault. */
  readyz: { before: Record<string, number>; during: Record<string, number>; after: Record<string, number> };
  went503During: boolean;
  readyAgainAfterMs: number | null;
  maxRssKiB: number;
  rssBeforeKiB: number;
  ackedDuring: number;
  /** HTTP 503 answers the generator got during the fault. */
  http503During: number;
  /** Highest value of each probe during the fault. */
  probesMax: Record<string, number>;
}

async function fault(child: Auditpipe, setup: Setup, server: ServerName, kind: 'stop' | 'pause', seconds: number): Promise<OutageRecord> {
  const load = setup.load;
  const record: OutageRecord = {
    server, kind, seconds, readyz: { before: {}, during: {}, after: {} }, went503During: false, readyAgainAfterMs: null, maxRssKiB: 0, rssBeforeKiB: child.rssKiB(), ackedDuring: 0,
    http503During: 0, probesMax: {},
  };
  const http503Before = load.counts.http503;
  const sample = async () => {
    if (!setup.probe) return;
    try {
      for (const [key, value] of Object.entries(await setup.probe())) record.probesMax[key] = Math.max(record.probesMax[key] ?? 0, value);
    } catch {
      // The server being probed may be the one that is down.
    }
  };
  const tally = (bucket: Record<string, number>, status: number) => { bucket[status] = (bucket[status] ?? 0) + 1; };
  for (let i = 0; i < 6; i += 1) {
    tally(record.readyz.before, await child.readyz());
    await sleep(500);
  }
  log(`${kind} ${server} for ${seconds} s`);
  const ackedBefore = load.acked.size;
  if (kind === 'stop') serverCtl('stop', server);
  else serverSignal(server, 'SIGSTOP');
  try {
    const until = Date.now() + seconds * 1_000;
    while (Date.now() < until) {
      const status = await child.readyz();
      tally(record.readyz.during, status);
      record.maxRssKiB = Math.max(record.maxRssKiB, child.rssKiB());
      if (server !== 'nats') await Promise.race([sample(), sleep(1_000)]);
      await sleep(500);
    }
    record.ackedDuring = load.acked.size - ackedBefore;
    record.http503During = load.counts.http503 - http503Before;
  } finally {
    if (kind === 'stop') serverCtl('start', server);
    else serverSignal(server, 'SIGCONT');
  }
  const restored = Date.now();
  log(`${server} back`);
  while (Date.now() - restored < 180_000) {
    const status = await child.readyz();
    tally(record.readyz.after, status);
    record.maxRssKiB = Math.max(record.maxRssKiB, child.rssKiB());
    if (status === 200) {
      record.readyAgainAfterMs = Date.now() - restored;
      break;
    }
    await sleep(500);
  }
  record.went503During = (record.readyz.during['503'] ?? 0) > 0;
  if (!record.went503During) problems.push(`${kind} ${server}: /readyz never answered 503 during the fault (${JSON.stringify(record.readyz.during)})`);
  if (record.readyAgainAfterMs === null) problems.push(`${kind} ${server}: /readyz not 200 within 180 s after the server came back`);
  if (!child.running) problems.push(`${kind} ${server}: auditpipe exited during the fault:\n${child.output().slice(-3_000)}`);
  // Load keeps running a little after recovery, so the backlog of retries goes through a healthy pipeline.
  await sleep(5_000);
  return record;
}

/** N processes draining a pre-filled stream: seconds from their spawn to the stream empty (and to all ready). */
interface Throughput {
  processes: number;
  events: number;
  seconds: number;
  readySeconds: number;
  eventsPerSecond: number;
}

interface Result {
  profile: string;
  command: string;
  date: string;
  machine: { nproc: number; memoryGiB: number; node: string };
  durationSeconds: number;
  cycles: CycleStats & { readyMsMax: number; readyMsMedian: number };
  load: Load['counts'];
  sinks: Record<string, SinkCount>;
  chain: ChainShape;
  verify: VerifyOutcome;
  outages: OutageRecord[];
  finalExitCode: number | null;
  throughput?: Throughput[];
  problems: string[];
  ok: boolean;
}

function summarise(stats: CycleStats): Result['cycles'] {
  const sorted = [...stats.readyMs].sort((a, b) => a - b);
  return { ...stats, readyMs: [], readyMsMax: sorted.at(-1) ?? 0, readyMsMedian: sorted[Math.floor(sorted.length / 2)] ?? 0 };
}

/** One run of a single-process profile: kills, then faults, then the final graceful stop and the counts. */
async function singleProcess(setup: Setup): Promise<Omit<Result, 'profile' | 'command' | 'date' | 'machine' | 'durationSeconds' | 'problems' | 'ok'>> {
  const started = Date.now();
  const stats: CycleStats = { cycles: 0, killedBeforeReady: 0, readyMs: [], maxRssKiB: 0 };
  // The first start creates the schema (and the stream), before any load.
  const first = await startReady(setup.configFile, setup.readyUrl, stats);
  setup.load.start();
  await sleep(1_000);
  await first.kill('SIGKILL');
  await killCycles(setup.configFile, setup.readyUrl, stats, cyclesWanted, started + secondsBudget * 1_000);
  const last = await startReady(setup.configFile, setup.readyUrl, stats);
  const sampler = setInterval(() => last.rssKiB(), 500);
  const faults: OutageRecord[] = [];
  try {
    for (const server of outages) faults.push(await fault(last, setup, server, 'stop', outageSeconds));
    for (const server of pauses) faults.push(await fault(last, setup, server, 'pause', outageSeconds));
    if (!faultRun) await sleep(2_000);
    log('draining the load');
    const left = await setup.load.drain(180_000);
    if (left > 0) problems.push(`${left} batches still not acknowledged 180 s after the load stopped`);
    await setup.settled();
  } finally {
    clearInterval(sampler);
  }
  const finalExitCode = await last.kill('SIGTERM');
  if (finalExitCode !== 0) problems.push(`the final SIGTERM exited ${finalExitCode}:\n${last.output().slice(-3_000)}`);
  stats.maxRssKiB = Math.max(stats.maxRssKiB, last.maxRssKiB);
  log('counting');
  const sinks = await setup.count();
  const chain = await setup.chainShape();
  const verified = verify(setup.configFile);
  return { cycles: summarise(stats), load: setup.load.counts, sinks, chain, verify: verified, outages: faults, finalExitCode };
}

/** Three processes on one durable consumer and one chain store; one is SIGKILLed and restarted every few seconds. */
async function scaleOut(): Promise<Omit<Result, 'profile' | 'command' | 'date' | 'machine' | 'durationSeconds' | 'problems' | 'ok'>> {
  const started = Date.now();
  const stats: CycleStats = { cycles: 0, killedBeforeReady: 0, readyMs: [], maxRssKiB: 0 };
  const setup = await natsSetup(3, false);
  const children: Auditpipe[] = [];
  const sampler = setInterval(() => { for (const child of children) stats.maxRssKiB = Math.max(stats.maxRssKiB, child.rssKiB()); }, 500);
  try {
    for (let i = 0; i < 3; i += 1) children.push(await startReady(setup.configFiles[i]!, setup.readyUrls[i]!, stats));
    setup.load.start();
    const deadline = started + secondsBudget * 1_000;
    while (stats.cycles < cyclesWanted && Date.now() < deadline) {
      await sleep(random(1_000, 4_000));
      const victim = stats.cycles % 3;
      await children[victim]!.kill('SIGKILL');
      stats.maxRssKiB = Math.max(stats.maxRssKiB, children[victim]!.maxRssKiB);
      stats.cycles += 1;
      if (stats.cycles % 10 === 0) log(`${stats.cycles} kills`);
      children[victim] = await startReady(setup.configFiles[victim]!, setup.readyUrls[victim]!, stats);
    }
    log('draining the load');
    const left = await setup.load.drain(180_000);
    if (left > 0) problems.push(`${left} batches still not acknowledged 180 s after the load stopped`);
    await setup.settled();
  } finally {
    clearInterval(sampler);
  }
  const codes = await Promise.all(children.map((child) => child.kill('SIGTERM')));
  if (codes.some((code) => code !== 0)) problems.push(`final SIGTERM exit codes ${codes.join(', ')}`);
  const sinks = await setup.count();
  const chain = await setup.chainShape();
  const verified = verify(setup.configFile);
  await setup.cleanup();
  const throughput = [];
  for (const processes of [1, 2, 3]) throughput.push(await measureThroughput(processes));
  return { cycles: summarise(stats), load: setup.load.counts, sinks, chain, verify: verified, outages: [], finalExitCode: codes.find((c) => c !== 0) ?? 0, throughput };
}

/** N processes draining a stream pre-filled with events: events per second from their start to the last row. */
async function measureThroughput(processes: number): Promise<Throughput> {
  const events = 100_000;
  const setup = await natsSetup(processes, false, false);
  const stats: CycleStats = { cycles: 0, killedBeforeReady: 0, readyMs: [], maxRssKiB: 0 };
  // The first start creates the stream and the consumer; then the stream is filled with nothing consuming.
  const first = await startReady(setup.configFiles[0]!, setup.readyUrls[0]!, stats);
  await first.kill('SIGTERM');
  setup.load.start();
  while (setup.load.counts.generated < events) await sleep(50);
  await setup.load.drain(120_000);
  const total = setup.load.acked.size;
  const t0 = Date.now();
  const children: Auditpipe[] = [];
  for (let i = 0; i < processes; i += 1) children.push(new Auditpipe(setup.configFiles[i]!, setup.readyUrls[i]!));
  await Promise.all(children.map((child) => child.waitReady()));
  const readySeconds = (Date.now() - t0) / 1_000;
  await setup.settled();
  const seconds = (Date.now() - t0) / 1_000;
  await Promise.all(children.map((child) => child.kill('SIGTERM')));
  const stored = Number((await adminQuery('SELECT count(*) AS n FROM auditpipe.chain_events', `soak_${runId}`.toLowerCase())).rows[0].n);
  if (stored !== total) problems.push(`throughput run with ${processes}: ${stored} rows for ${total} published`);
  await setup.cleanup();
  log(`${processes} process(es): ${total} events in ${seconds.toFixed(1)} s (all ready after ${readySeconds.toFixed(1)} s)`);
  return { processes, events: total, seconds, readySeconds, eventsPerSecond: Math.round(total / seconds) };
}

async function main(): Promise<void> {
  const started = Date.now();
  log(`profile ${profile}, ${cyclesWanted} cycles, at most ${secondsBudget} s; data in ${dir}`);
  let body: Awaited<ReturnType<typeof singleProcess>>;
  if (profile === 'scale-out') {
    body = await scaleOut();
  } else {
    const setup = profile === 'http-embedded' || profile === 'short' ? await httpSetup('embedded')
      : profile === 'http-postgres' ? await httpSetup('postgres')
        : await natsSetup(1, true);
    try {
      body = await singleProcess(setup);
    } finally {
      await setup.cleanup();
    }
  }
  for (const [sink, count] of Object.entries(body.sinks)) {
    if (count.missing > 0) problems.push(`${sink}: ${count.missing} acknowledged events missing, e.g. ${count.missingSample.join(', ')}`);
  }
  if (body.sinks.chain!.duplicated > 0) problems.push(`chain: ${body.sinks.chain!.duplicated} events stored twice`);
  for (const [key, n] of Object.entries(body.chain)) if (n > 0) problems.push(`chain: ${n} ${key}`);
  if (body.verify.code !== 0) problems.push(`verify exited ${body.verify.code}: ${JSON.stringify(body.verify.findings ?? body.verify.stderr)}`);
  if (Object.keys(body.load.unexpected).length > 0) problems.push(`unexpected HTTP answers: ${JSON.stringify(body.load.unexpected)}`);
  const result: Result = {
    profile,
    command: `node scripts/soak/run.ts ${process.argv.slice(2).join(' ')}`.trim(),
    date: new Date().toISOString(),
    machine: { nproc: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30 * 10) / 10, node: process.version },
    durationSeconds: Math.round((Date.now() - started) / 1_000),
    ...body,
    problems,
    ok: problems.length === 0,
  };
  const text = JSON.stringify(result, null, 2);
  if (options.json) {
    mkdirSync(path.dirname(path.resolve(ROOT, options.json)), { recursive: true });
    writeFileSync(path.resolve(ROOT, options.json), `${text}\n`);
  }
  process.stdout.write(`${text}\n`);
  log(result.ok ? 'OK' : `FAILED: ${problems.length} problem(s)`);
  process.exitCode = result.ok ? 0 : 1;
}

await main();
