/**
 * The whole design card in one pipeline: NATS JetStream source → Postgres hash chains + S3
 * Object Lock + Kafka + VictoriaLogs + console, all required, plus one best-effort sink that can
 * never write. Real servers throughout.
 */
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { writeKeyPair } from '../../../src/security/keys.ts';
import { compareAnchors, readAnchoredCheckpoints } from '../../../src/sinks/s3/anchors.ts';
import { startEngine, type TestEngine } from '../../helpers/engine.ts';
import { serverCtl, serverEnv, uniqueName } from '../../helpers/servers.ts';
import { consumeAll, createTopic, kafkaClient, recordCount } from '../kafka/kafka-helpers.ts';
import { deleteStreams, natsConnect, storedIds, streamMessages, waitFor } from '../nats/helpers.ts';
import { adminQuery, createDatabase, databaseUrl, dropDatabase } from '../postgres/helpers.ts';
import { bucketName, createBucket, listVersions, ndjsonEvents, readObject, s3Client, s3SinkConfig } from '../s3/s3-helpers.ts';

const FIRST = 1_000;
const SECOND = 300;

async function sinkMetric(t: TestEngine, name: string, sink: string, outcome?: string): Promise<number> {
  const metric = await t.engine.metrics.registry.getSingleMetric(name)?.get();
  return (metric?.values ?? []).filter((v) => v.labels.sink === sink && (!outcome || v.labels.outcome === outcome)).reduce((n, v) => n + v.value, 0);
}

describe('NATS → Postgres chain + S3 + Kafka + VictoriaLogs + console', () => {
  const s3 = s3Client();
  const kafka = kafkaClient();
  const namespace = uniqueName('fan');
  const tag = uniqueName('fanout');
  const topic = uniqueName('ap_fanout');
  const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-fanout-'));
  const consoleFile = path.join(dir, 'console.ndjson');
  let consoleFd: number;
  let nc: NatsConnection;
  let database: string;
  let bucket: string;
  let t: TestEngine;

  const publish = async (ids: string[]) => {
    const js = jetstream(nc);
    for (const [i, id] of ids.entries()) {
      await js.publish(`${namespace}.logs`, JSON.stringify({ id, actorId: `actor-${i % 7}`, stream: tag, msg: `event ${id}`, action: 'fanout.test' }), { msgID: id });
    }
  };
  const chainIds = async () => (await adminQuery('SELECT event_id FROM auditpipe.chain_events', [], database)).rows.map((row) => String(row.event_id));
  const s3Ids = async () => {
    const ids: string[] = [];
    const { versions } = await listVersions(s3, bucket, `${tag}/fanout/2`);
    for (const version of versions) for (const event of ndjsonEvents((await readObject(s3, bucket, version.key, version.versionId)).body)) ids.push(String(event.id));
    return ids;
  };

  before(async () => {
    nc = await natsConnect();
    database = await createDatabase('ap_fanout');
    bucket = await createBucket(s3, bucketName('ap-fanout'), 'locked');
    await createTopic(kafka, topic, 3);
    writeKeyPair(path.join(dir, 'checkpoint.key'));
    consoleFd = openSync(consoleFile, 'w');
    t = await startEngine({
      admin: { listen: '127.0.0.1:0' },
      pipelines: [{
        name: 'fanout',
        source: {
          type: 'nats', servers: [serverEnv('NATS_URL')], token: process.env.NATS_TOKEN ?? '', namespace, stream: 'logs', consumer: 'fanout',
          ack_wait_ms: 30_000, nak_backoff_ms: [500],
        },
        batch: { max_events: 200, interval_ms: 50 },
        nak_delay_ms: 500,
        sinks: [
          { type: 'postgres', url: databaseUrl(database), checkpoint_interval_ms: 500, checkpoint_key_file: path.join(dir, 'checkpoint.key') },
          s3SinkConfig(bucket, { prefix: tag }),
          {
            type: 'kafka', brokers: serverEnv('KAFKA_BROKERS'), topic, connection_timeout_ms: 1000, request_timeout_ms: 5000, send_retries: 1,
            retry: { max_attempts: 3, initial_backoff_ms: 50, max_backoff_ms: 200, max_elapsed_ms: 2_000, timeout_ms: 5_000 },
          },
          { type: 'victorialogs', url: serverEnv('VICTORIA_URL'), stream_fields: ['stream'] },
          { type: 'console', fd: consoleFd },
          {
            type: 'victorialogs', name: 'unreachable_best_effort', required: false, url: 'http://127.0.0.1:1', connect_timeout_ms: 200,
            retry: { max_attempts: 2, initial_backoff_ms: 10, max_backoff_ms: 20, max_elapsed_ms: 500, timeout_ms: 1_000 },
          },
        ],
      }],
    });
  });

  after(async () => {
    await serverCtl('start', 'kafka').catch(() => undefined);
    await t?.stop();
    closeSync(consoleFd);
    await deleteStreams(nc, `${namespace}_logs`, `${namespace}_logs_dlq`);
    await nc.close();
    await dropDatabase(database);
  });

  it('writes every event to every required sink and acks it, while the failing best-effort sink holds nothing', async () => {
    const ids = Array.from({ length: FIRST }, (_, i) => `${tag}-a-${i}`);
    await publish(ids);
    // WorkQueue retention: a message leaves the stream only when it is acked.
    await waitFor('every message acked', async () => (await streamMessages(nc, `${namespace}_logs`)) === 0, 120_000);

    const chain = await chainIds();
    assert.equal(chain.length, FIRST);
    assert.deepEqual(new Set(chain), new Set(ids));
    const inS3 = await s3Ids();
    assert.equal(inS3.length, FIRST, 'each event once in S3');
    assert.deepEqual(new Set(inS3), new Set(ids));
    assert.equal(await recordCount(kafka, topic), FIRST, 'each event once in Kafka');
    const vl = await storedIds(tag);
    assert.deepEqual(new Set(vl.keys()), new Set(ids));
    const printed = readFileSync(consoleFile, 'utf8').split('\n').filter(Boolean).map((line) => String(JSON.parse(line).id));
    assert.deepEqual(new Set(printed), new Set(ids));

    assert.ok(await sinkMetric(t, 'auditpipe_sink_writes_total', 'unreachable_best_effort', 'gave_up') > 0, 'the best-effort sink failed');
    assert.ok(await sinkMetric(t, 'auditpipe_sink_batches_dropped_total', 'unreachable_best_effort') > 0, 'and its failures are counted');
  });

  it('anchors the chain store\'s signed checkpoints in S3, matching the store', async () => {
    const stored = await waitFor('a checkpoint covering the events, anchored', async () => {
      // Anchors first, as `auditpipe verify --s3` reads them: the pipeline keeps checkpointing, and
      // a checkpoint is in the store before it is anchored, never the other way round.
      const anchored = await readAnchoredCheckpoints({ client: s3, bucket, prefix: tag, pipeline: 'fanout' });
      const rows = (await adminQuery('SELECT number, hash FROM auditpipe.chain_checkpoints ORDER BY number', [], database)).rows
        .map((row) => ({ number: Number(row.number), hash: String(row.hash) }));
      return anchored.checkpoints.length > 0 ? { rows, anchored } : undefined;
    }, 60_000);
    assert.deepEqual(stored.anchored.findings, []);
    assert.deepEqual(compareAnchors(stored.anchored.checkpoints, stored.rows), []);
  });

  it('holds the acks while a required sink (Kafka) is down, and writes everything once it is back', async () => {
    await serverCtl('stop', 'kafka');
    const ids = Array.from({ length: SECOND }, (_, i) => `${tag}-b-${i}`);
    await publish(ids);
    // Other sinks write, Kafka fails beyond its retry policy, the batch is naked.
    await waitFor('Kafka to give up a batch', async () => (await sinkMetric(t, 'auditpipe_sink_writes_total', 'kafka', 'gave_up')) > 0, 120_000);
    await waitFor('the other required sinks to have the events', async () => (await chainIds()).length === FIRST + SECOND, 60_000);
    assert.equal(await streamMessages(nc, `${namespace}_logs`), SECOND, 'nothing acked while a required sink is down');

    await serverCtl('start', 'kafka');
    await waitFor('every message acked after Kafka is back', async () => (await streamMessages(nc, `${namespace}_logs`)) === 0, 180_000);

    assert.equal(await recordCount(kafka, topic), FIRST + SECOND, 'each event once in Kafka');
    const records = await consumeAll(kafka, topic, uniqueName('g'));
    assert.deepEqual(new Set(records.map((r) => String(r.value.id))), new Set([...Array.from({ length: FIRST }, (_, i) => `${tag}-a-${i}`), ...ids]));
    const chain = await chainIds();
    assert.equal(chain.length, FIRST + SECOND, 'redelivery stored once in the chain');
    // S3 deduplicates per batch: a redelivery batched differently may store an event twice; none is missing.
    const inS3 = new Set(await s3Ids());
    for (const id of ids) assert.ok(inS3.has(id), `${id} in S3`);
  });
});
