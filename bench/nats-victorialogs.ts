/**
 * Throughput of NATS JetStream → auditpipe → VictoriaLogs, acks after write, ~500-byte events,
 * next to two baselines measured in the same run on the same servers:
 *   - bare JetStream consume: a pull consumer that acks each message without writing it anywhere;
 *   - bare VictoriaLogs POST: the same NDJSON bodies POSTed in a loop (no NATS).
 * Events are published before each measurement, so the publisher does not compete for the CPU.
 *
 *   set -a; . .servers/env; set +a; npm run bench:nats-vl [-- EVENTS]
 *
 * BENCH_CPU_PROFILE=file.cpuprofile writes a V8 CPU profile of the auditpipe phase only.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AckPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import { Pool } from 'undici';
import { stringify } from 'yaml';
import { newAuditEvent, Transfer } from '../src/client/index.ts';
import { createBuiltinEngine } from '../src/builtins.ts';
import { createLogger } from '../src/core/logger.ts';
import { requiredEnv } from './env.ts';

const EVENTS = Number(process.argv[2] ?? 100_000);
const NATS_URL = requiredEnv('NATS_URL');
const VICTORIA_URL = requiredEnv('VICTORIA_URL');
const TOKEN = process.env.NATS_TOKEN || undefined;

function makeEvent(tag: string, i: number) {
  // ~500 bytes of JSON, the shape the transfer SDK produces.
  return newAuditEvent(tag, `user ${i % 1000} updated order ${i}`)
    .withMeta('admin', 'order', 'update', i, i % 1000)
    .withRequest('/api/orders/' + i, { status: 'shipped', note: 'x'.repeat(120), items: [1, 2, 3] })
    .withResponse(200, { ok: true })
    .withClient('192.168.10.20', 'Mozilla/5.0 (X11; Linux x86_64) bench');
}

async function publish(nc: NatsConnection, namespace: string, stream: string, tag: string, count: number): Promise<number> {
  const transfer = new Transfer(nc, namespace, { maxPendingAsync: 2_000 });
  let bytes = 0;
  for (let i = 0; i < count; i += 1) {
    const event = makeEvent(tag, i);
    bytes += JSON.stringify(event).length;
    await transfer.publishAsync(stream, event);
  }
  await transfer.flush();
  return bytes / count;
}

async function createStream(nc: NatsConnection, namespace: string, stream: string): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: `${namespace}_${stream}`, subjects: [`${namespace}.${stream}`], retention: RetentionPolicy.Workqueue, storage: StorageType.File });
}

interface Measured { rate: number; cpuUsPerEvent: number }

/** Events per second and this process's CPU time (user + system) per event, which load on a shared box distorts less. */
function measure(started: number, cpu: NodeJS.CpuUsage): Measured {
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  return { rate: EVENTS / seconds, cpuUsPerEvent: (used.user + used.system) / EVENTS };
}

async function bareConsume(nc: NatsConnection, tag: string): Promise<Measured> {
  const namespace = `bench_bare_${tag}`;
  await createStream(nc, namespace, 'logs');
  await publish(nc, namespace, 'logs', tag, EVENTS);
  const jsm = await jetstreamManager(nc);
  await jsm.consumers.add(`${namespace}_logs`, { durable_name: 'bare', ack_policy: AckPolicy.Explicit, max_ack_pending: 10_000, ack_wait: nanos(30_000) });
  const consumer = await jetstream(nc).consumers.get(`${namespace}_logs`, 'bare');
  const started = performance.now();
  const cpu = process.cpuUsage();
  let received = 0;
  while (received < EVENTS) {
    const batch = await consumer.fetch({ max_messages: 1_000, expires: 2_000 });
    for await (const message of batch) {
      message.ack();
      received += 1;
    }
  }
  await nc.flush();
  const result = measure(started, cpu);
  await jsm.streams.delete(`${namespace}_logs`);
  return result;
}

async function barePost(tag: string): Promise<number> {
  const pool = new Pool(new URL(VICTORIA_URL).origin, { connections: 4 });
  const batchSize = 1_000;
  const body = Array.from({ length: batchSize }, (_, i) => JSON.stringify({ id: `${tag}-${i}`, ...makeEvent(`${tag}_post`, i).toJSON() })).join('\n') + '\n';
  const path = '/insert/jsonline?_stream_fields=stream&_msg_field=msg&_time_field=time';
  const started = performance.now();
  let sent = 0;
  const inFlight = 4;
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (sent < EVENTS) {
      sent += batchSize;
      const response = await pool.request({ method: 'POST', path, body, headers: { 'content-type': 'application/stream+json' } });
      await response.body.dump();
      if (response.statusCode !== 200) throw new Error(`VictoriaLogs answered ${response.statusCode}`);
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  await pool.close();
  return sent / seconds;
}

async function auditpipe(nc: NatsConnection, tag: string): Promise<Measured & { eventBytes: number }> {
  const namespace = `bench_ap_${tag}`;
  const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-bench-'));
  const file = path.join(dir, 'auditpipe.yml');
  writeFileSync(path.join(dir, 'plugins.json'), '{"plugins": []}');
  writeFileSync(file, stringify({
    data_dir: path.join(dir, 'data'),
    log_level: 'warn',
    pipelines: [{
      name: 'bench',
      actor_field: 'user_id',
      batch: { max_events: 2_000, max_bytes: 4 * 1024 * 1024, interval_ms: 50, max_in_flight: 4 },
      source: { type: 'nats', servers: [NATS_URL], token: TOKEN ?? '', namespace, stream: 'logs', pull_batch: 2_000, max_ack_pending: 20_000 },
      sinks: [{ type: 'victorialogs', url: VICTORIA_URL, stream_fields: ['stream'], connections: 4 }],
    }],
  }));
  // Create the stream first and fill it, then start auditpipe on the backlog.
  await createStream(nc, namespace, 'logs');
  const eventBytes = await publish(nc, namespace, 'logs', tag, EVENTS);
  const engine = await createBuiltinEngine({ configFile: file, pluginsFile: path.join(dir, 'plugins.json') }, createLogger('warn'));
  const acked = engine.metrics.acked;
  const profiler = await startProfile();
  const started = performance.now();
  const cpu = process.cpuUsage();
  await engine.start();
  for (;;) {
    const value = (await acked.get()).values.reduce((sum, v) => sum + v.value, 0);
    if (value >= EVENTS) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const result = measure(started, cpu);
  await profiler?.();
  await engine.stop();
  const jsm = await jetstreamManager(nc);
  await jsm.streams.delete(`${namespace}_logs`).catch(() => false);
  await jsm.streams.delete(`${namespace}_logs_dlq`).catch(() => false);
  return { ...result, eventBytes };
}

/** Starts the V8 profiler when BENCH_CPU_PROFILE names a file; the returned function writes it. */
async function startProfile(): Promise<(() => Promise<void>) | undefined> {
  const file = process.env.BENCH_CPU_PROFILE;
  if (!file) return undefined;
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return async () => {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(file, JSON.stringify(profile));
    session.disconnect();
  };
}

const nc = await connect({ servers: NATS_URL, token: TOKEN, noAsyncTraces: true });
const tag = Date.now().toString(36);
const bare = await bareConsume(nc, tag);
const post = await barePost(tag);
const piped = await auditpipe(nc, tag);
await nc.close();
const result = {
  events: EVENTS,
  event_bytes: Math.round(piped.eventBytes),
  auditpipe_events_per_s: Math.round(piped.rate),
  auditpipe_cpu_us_per_event: Number(piped.cpuUsPerEvent.toFixed(1)),
  bare_jetstream_consume_ack_per_s: Math.round(bare.rate),
  bare_jetstream_cpu_us_per_event: Number(bare.cpuUsPerEvent.toFixed(1)),
  bare_victorialogs_post_per_s: Math.round(post),
  // Issue 17's targets (bench/summary.mjs holds the run to them).
  target_events_per_s: 40_000,
  target_ratio_to_bare_consume_ack: 0.9,
  cpus: (await import('node:os')).availableParallelism(),
  load_average_1m: Number((await import('node:os')).loadavg()[0]!.toFixed(1)),
};
process.stdout.write(JSON.stringify(result, null, 2) + '\n');
