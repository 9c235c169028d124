/**
 * NATS JetStream → auditpipe → Postgres hash chains + S3 Object Lock + Kafka, all required sinks,
 * acks only after all three wrote. Real servers (run "npm run servers:up" first).
 *
 *   - throughput: a backlog of BENCH_EVENTS events is published first, then auditpipe starts
 *     and drains it; events/s = events / time until the last ack;
 *   - ack latency: with auditpipe running, BENCH_LATENCY_EVENTS events are published at
 *     BENCH_RATE events/s; each event's latency is from its publish acknowledgement (stream
 *     sequence known) to the moment auditpipe's ack for that sequence is seen on `$JS.ACK.>`.
 *
 *   set -a; . .servers/env; set +a; npm run bench:fanout
 * Env: BENCH_EVENTS (default 50000), BENCH_LATENCY_EVENTS (5000), BENCH_RATE (1000), BENCH_ACTORS (1000).
 */
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { jetstream, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import kafkajs from 'kafkajs';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { stringify } from 'yaml';
import { createBuiltinEngine } from '../src/builtins.ts';
import { createLogger } from '../src/core/logger.ts';
import { writeKeyPair } from '../src/security/keys.ts';
import { requiredEnv } from './env.ts';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 50_000);
const LATENCY_EVENTS = Number(process.env.BENCH_LATENCY_EVENTS ?? 5_000);
const RATE = Number(process.env.BENCH_RATE ?? 1_000);
const ACTORS = Number(process.env.BENCH_ACTORS ?? 1_000);

const NATS_URL = requiredEnv('NATS_URL');
const DATABASE_URL = requiredEnv('DATABASE_URL');
const KAFKA_BROKERS = requiredEnv('KAFKA_BROKERS');
const S3_ENDPOINT = requiredEnv('S3_ENDPOINT');
const S3_ACCESS_KEY = requiredEnv('S3_ACCESS_KEY');
const S3_SECRET_KEY = requiredEnv('S3_SECRET_KEY');
const NATS_TOKEN = process.env.NATS_TOKEN || undefined;

const tag = `fan${Date.now().toString(36)}`;
const namespace = `bench_${tag}`;
const subject = `${namespace}.logs`;
const streamName = `${namespace}_logs`;

/** ~500 bytes of JSON per event. */
function event(i: number, phase: string): string {
  return JSON.stringify({
    id: `${tag}-${phase}-${i}`,
    actorId: `user-${i % ACTORS}`,
    action: 'order.update',
    msg: `user ${i % ACTORS} updated order ${i}`,
    request: { path: `/api/orders/${i}`, body: { status: 'shipped', note: 'x'.repeat(200), items: [1, 2, 3] } },
    client: { ip: '192.168.10.20', agent: 'Mozilla/5.0 (X11; Linux x86_64) bench' },
  });
}

async function prepare(): Promise<string> {
  const db = `bench_${tag}`;
  const client = new pg.Client({ connectionString: DATABASE_URL });
  await client.connect();
  await client.query(`CREATE DATABASE "${db}"`);
  await client.end();
  const url = new URL(DATABASE_URL);
  url.pathname = `/${db}`;

  const s3 = new S3Client({ endpoint: S3_ENDPOINT, region: process.env.S3_REGION ?? 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: S3_ACCESS_KEY, secretAccessKey: S3_SECRET_KEY } });
  await s3.send(new CreateBucketCommand({ Bucket: `bench-${tag}`, ObjectLockEnabledForBucket: true }));
  s3.destroy();

  const admin = new kafkajs.Kafka({ brokers: KAFKA_BROKERS.split(','), logLevel: kafkajs.logLevel.NOTHING }).admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: `bench_${tag}`, numPartitions: 6, replicationFactor: 1 }], waitForLeaders: true });
  await admin.disconnect();
  return url.toString();
}

async function publishAll(nc: NatsConnection, count: number, phase: string): Promise<void> {
  const js = jetstream(nc);
  const pending: Promise<unknown>[] = [];
  for (let i = 0; i < count; i += 1) {
    pending.push(js.publish(subject, event(i, phase), { msgID: `${tag}-${phase}-${i}` }));
    if (pending.length >= 2_000) await Promise.all(pending.splice(0));
  }
  await Promise.all(pending);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const databaseUrl = await prepare();
const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-bench-fanout-'));
const keyFile = path.join(dir, 'checkpoint.key');
writeKeyPair(keyFile);
const configFile = path.join(dir, 'auditpipe.yml');
writeFileSync(path.join(dir, 'plugins.json'), '{"plugins": []}');
writeFileSync(configFile, stringify({
  data_dir: path.join(dir, 'data'),
  log_level: 'warn',
  pipelines: [{
    name: 'fanout',
    batch: { max_events: 1_000, max_bytes: 4 * 1024 * 1024, interval_ms: 50, max_in_flight: 4 },
    source: { type: 'nats', servers: [NATS_URL], token: NATS_TOKEN ?? '', namespace, stream: 'logs', pull_batch: 2_000, max_ack_pending: 20_000 },
    sinks: [
      { type: 'postgres', url: databaseUrl, pool_size: 8, checkpoint_interval_ms: 5_000, checkpoint_key_file: keyFile },
      {
        type: 's3', bucket: `bench-${tag}`, endpoint: S3_ENDPOINT, region: process.env.S3_REGION ?? 'us-east-1', force_path_style: true,
        access_key_id: S3_ACCESS_KEY, secret_access_key: S3_SECRET_KEY, retention: '1d', lock_mode: 'GOVERNANCE',
      },
      { type: 'kafka', brokers: KAFKA_BROKERS, topic: `bench_${tag}` },
    ],
  }],
}));

const nc = await connect({ servers: NATS_URL, token: NATS_TOKEN, noAsyncTraces: true });
const jsm = await jetstreamManager(nc);
await jsm.streams.add({ name: streamName, subjects: [subject], retention: RetentionPolicy.Workqueue, storage: StorageType.File });

// Throughput: drain a backlog.
await publishAll(nc, EVENTS, 'backlog');
const engine = await createBuiltinEngine({ configFile, pluginsFile: path.join(dir, 'plugins.json') }, createLogger('warn'));
const ackedTotal = async () => (await engine.metrics.acked.get()).values.reduce((sum, v) => sum + v.value, 0);
const started = performance.now();
await engine.start();
while ((await ackedTotal()) < EVENTS) await new Promise((resolve) => setTimeout(resolve, 20));
const throughputSeconds = (performance.now() - started) / 1000;
/** Mean duration of one write attempt per sink during the backlog drain: where the time goes. */
const writeMs: Record<string, number> = {};
{
  const values = (await engine.metrics.sinkWriteDuration.get()).values;
  for (const sink of ['postgres', 's3', 'kafka']) {
    const sum = values.find((v) => v.labels.sink === sink && v.metricName?.endsWith('_sum'))?.value ?? 0;
    const count = values.find((v) => v.labels.sink === sink && v.metricName?.endsWith('_count'))?.value ?? 0;
    writeMs[sink] = count ? Number(((sum / count) * 1000).toFixed(1)) : 0;
  }
}

// Ack latency at a steady rate: watch the consumer's acks on the wire.
const publishedAt = new Map<number, number>();
const ackedAt = new Map<number, number>();
const acks = nc.subscribe(`$JS.ACK.${streamName}.>`);
void (async () => {
  for await (const message of acks) {
    if (message.data.length !== 0 && message.string() !== '+ACK') continue;
    const tokens = message.subject.split('.');
    // $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.… (9 tokens) or with domain and account hash (12+).
    ackedAt.set(Number(tokens.length === 9 ? tokens[5] : tokens[7]), performance.now());
  }
})();
await nc.flush();
const js = jetstream(nc);
const intervalMs = 1000 / RATE;
const paceStart = performance.now();
const publishes: Promise<unknown>[] = [];
for (let i = 0; i < LATENCY_EVENTS; i += 1) {
  const wait = paceStart + i * intervalMs - performance.now();
  if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
  const sentAt = performance.now();
  publishes.push(js.publish(subject, event(i, 'paced'), { msgID: `${tag}-paced-${i}` }).then((ack) => publishedAt.set(ack.seq, sentAt)));
}
await Promise.all(publishes);
while ([...publishedAt.keys()].some((seq) => !ackedAt.has(seq))) await new Promise((resolve) => setTimeout(resolve, 20));
const latencies = [...publishedAt].map(([seq, sentAt]) => ackedAt.get(seq)! - sentAt);
acks.unsubscribe();
await engine.stop();
await jsm.streams.delete(streamName).catch(() => false);
await jsm.streams.delete(`${streamName}_dlq`).catch(() => false);
await nc.close();

latencies.sort((a, b) => a - b);
process.stdout.write(JSON.stringify({
  events: EVENTS,
  event_bytes: Buffer.byteLength(event(0, 'backlog')),
  sinks: ['postgres (hash chains)', 's3 (Object Lock, GOVERNANCE)', 'kafka (idempotent, acks=all)'],
  throughput_events_per_s: Math.round(EVENTS / throughputSeconds),
  mean_write_ms_per_batch: writeMs,
  latency_rate_events_per_s: RATE,
  latency_events: latencies.length,
  ack_latency_ms: { p50: Number(percentile(latencies, 50).toFixed(1)), p99: Number(percentile(latencies, 99).toFixed(1)), max: Number(latencies.at(-1)!.toFixed(1)) },
  cpus: availableParallelism(),
}, null, 2) + '\n');
