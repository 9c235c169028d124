import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { createLogger } from '../../../src/core/logger.ts';
import { validateSection } from '../../../src/core/config.ts';
import { toEvent, type Batch, type ComponentContext, type PipelineName } from '../../../src/public/index.ts';
import { kafkaSettings, kafkaSinkSchema, type KafkaSinkConfig } from '../../../src/sinks/kafka/index.ts';
import { KafkaSink } from '../../../src/sinks/kafka/sink.ts';
import { startEngine, type TestEngine } from '../../helpers/engine.ts';
import { serverEnv, uniqueName } from '../../helpers/servers.ts';
import { consumeAll, createTopic, kafkaClient, recordCount, withAdmin } from './kafka-helpers.ts';

const EVENTS = 10_000;
const PER_REQUEST = 500;
const ACTORS = 25;

function kafkaSinkConfig(topic: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { type: 'kafka', brokers: serverEnv('KAFKA_BROKERS'), topic, ...extra };
}

function directSink(topic: string, extra: Record<string, unknown> = {}): KafkaSink {
  const { type: _type, ...options } = kafkaSinkConfig(topic, extra);
  const { config, problems } = validateSection<KafkaSinkConfig>(kafkaSinkSchema, options, 'kafka');
  assert.deepEqual(problems, []);
  const context: ComponentContext = {
    pipeline: 'direct' as PipelineName,
    name: 'kafka',
    logger: createLogger(process.env.TEST_LOG_LEVEL ?? 'silent'),
    metrics: new Registry(),
    dataDir: '/tmp',
    configDir: process.cwd(),
    events: { actorField: 'actorId', limits: { maxIdLength: 256, maxActorIdLength: 256, maxEventBytes: 1024 * 1024 } },
    resolve: () => { throw new Error('no services'); },
    has: () => false,
    provide: () => undefined,
  };
  return new KafkaSink(kafkaSettings(config!), context);
}

const batchOf = (events: Array<Record<string, unknown>>): Batch => {
  const built = events.map((e) => toEvent(e, { actorField: 'actorId' }));
  return { pipeline: 'direct' as PipelineName, seq: 1, events: built, bytes: built.reduce((n, e) => n + e.bytes, 0) };
};

describe('Kafka sink against the real broker', () => {
  const kafka = kafkaClient();

  describe('10,000 events through an engine', () => {
    let t: TestEngine;
    const topic = uniqueName('ap_kafka');
    const run = uniqueName('k');

    before(async () => {
      await createTopic(kafka, topic, 3);
      t = await startEngine({
        pipelines: [{
          name: 'test',
          source: { type: 'http', listen: '127.0.0.1:0', max_events_per_request: PER_REQUEST },
          // Smaller batches than requests, so several batches of one request are in flight at once.
          batch: { max_events: 100, interval_ms: 20, max_in_flight: 4 },
          sinks: [kafkaSinkConfig(topic, { compression: 'gzip' })],
        }],
      });
    });
    after(() => t.stop());

    it('acks every request; the topic then holds each event once, keyed by actor, in per-actor order', async () => {
      // Requests go one after another, so each actor's events have a defined order (field n).
      for (let start = 0; start < EVENTS; start += PER_REQUEST) {
        const lines = Array.from({ length: PER_REQUEST }, (_, j) => {
          const n = start + j;
          return JSON.stringify({ id: `${run}-${n}`, actorId: `actor-${n % ACTORS}`, action: 'login', n });
        });
        const res = await fetch(`${t.url()}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: lines.join('\n') + '\n' });
        assert.equal(res.status, 200, await res.text());
      }
      assert.equal(await recordCount(kafka, topic), EVENTS, 'exactly one record per event in the log');

      const records = await consumeAll(kafka, topic, uniqueName('g'));
      assert.equal(records.length, EVENTS);
      const ids = records.map((r) => String(r.value.id));
      assert.equal(new Set(ids).size, EVENTS, 'no event twice');
      for (let n = 0; n < EVENTS; n += 1) assert.ok(ids.includes(`${run}-${n}`) || assert.fail(`missing ${run}-${n}`));

      const partitionOfActor = new Map<string, number>();
      const byPartition = new Map<number, typeof records>();
      for (const record of records) {
        assert.equal(record.key, record.value.actorId, 'key = actor id');
        assert.equal(record.headers['event-id'], record.value.id);
        assert.equal(record.headers['content-type'], 'application/json');
        const seen = partitionOfActor.get(record.key!);
        assert.ok(seen === undefined || seen === record.partition, 'one actor, one partition');
        partitionOfActor.set(record.key!, record.partition);
        byPartition.set(record.partition, [...(byPartition.get(record.partition) ?? []), record]);
      }
      for (const partition of byPartition.values()) {
        partition.sort((a, b) => a.offset - b.offset);
        const last = new Map<string, number>();
        for (const record of partition) {
          const n = Number(record.value.n);
          assert.ok((last.get(record.key!) ?? -1) < n, `actor ${record.key} out of order at n=${n}`);
          last.set(record.key!, n);
        }
      }
    });
  });

  describe('the sink on its own', () => {
    it('does not produce a batch twice when the pipeline retries it', async () => {
      const topic = uniqueName('ap_retry');
      await createTopic(kafka, topic, 2);
      const sink = directSink(topic);
      await sink.start();
      try {
        const batch = batchOf(Array.from({ length: 40 }, (_, i) => ({ id: `r-${i}`, actorId: `a${i % 4}` })));
        // An attempt the pipeline aborted before its send began sends nothing ...
        const timedOut = new AbortController();
        const aborted = sink.write(batch, timedOut.signal);
        timedOut.abort(new Error('write timed out'));
        await assert.rejects(aborted, /timed out/);
        assert.equal(await recordCount(kafka, topic), 0);
        // ... a retry while an earlier attempt is still sending joins it instead of sending again ...
        await Promise.all([sink.write(batch, new AbortController().signal), sink.write(batch, new AbortController().signal)]);
        // ... and a retry after it succeeded sends nothing.
        await sink.write(batch, new AbortController().signal);
        assert.equal(await recordCount(kafka, topic), 40);
      } finally {
        await sink.close();
      }
    });

    it('rejects only the event larger than the topic accepts and writes the others', async () => {
      const topic = uniqueName('ap_large');
      await createTopic(kafka, topic, 1, [{ name: 'max.message.bytes', value: '4096' }]);
      const sink = directSink(topic);
      await sink.start();
      try {
        const events = [
          ...Array.from({ length: 10 }, (_, i) => ({ id: `s-${i}`, actorId: 'a' })),
          { id: 'huge', actorId: 'a', pad: 'x'.repeat(20_000) },
          ...Array.from({ length: 10 }, (_, i) => ({ id: `t-${i}`, actorId: 'a' })),
        ];
        const result = await sink.write(batchOf(events), new AbortController().signal);
        assert.deepEqual(result?.rejected?.map((r) => r.id), ['huge']);
        assert.match(result!.rejected![0]!.reason, /larger than topic/);
        const records = await consumeAll(kafka, topic, uniqueName('g'));
        assert.deepEqual(records.map((r) => r.value.id), events.filter((e) => e.id !== 'huge').map((e) => e.id));
      } finally {
        await sink.close();
      }
    });

    it('does not start when the topic is missing, and says how to fix it', async () => {
      const topic = uniqueName('ap_missing');
      await assert.rejects(startEngine({
        pipelines: [{ name: 'test', source: { type: 'http', listen: '127.0.0.1:0' }, sinks: [kafkaSinkConfig(topic)] }],
      }), new RegExp(`topic "${topic}" does not exist.*auto_create: true`));
      const topics = await withAdmin(kafka, (admin) => admin.listTopics());
      assert.ok(!topics.includes(topic), 'the topic was not created behind the operator\'s back');
    });

    it('creates a missing topic with the configured partitions when auto_create is set', async () => {
      const topic = uniqueName('ap_auto');
      const sink = directSink(topic, { auto_create: true, partitions: 4, replication_factor: 1 });
      await sink.start();
      await sink.close();
      const metadata = await withAdmin(kafka, (admin) => admin.fetchTopicMetadata({ topics: [topic] }));
      assert.equal(metadata.topics[0]!.partitions.length, 4);
    });

    it('does not start when no broker answers', async () => {
      const sink = directSink('whatever', { brokers: '127.0.0.1:1', connection_timeout_ms: 200, send_retries: 1 });
      await assert.rejects(sink.start(), /cannot connect to Kafka at 127\.0\.0\.1:1/);
      await sink.close();
    });
  });
});
