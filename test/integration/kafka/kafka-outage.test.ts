import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEngine, type TestEngine } from '../../helpers/engine.ts';
import { serverCtl, serverEnv, uniqueName } from '../../helpers/servers.ts';
import { consumeAll, createTopic, kafkaClient, recordCount } from './kafka-helpers.ts';

async function failedAttempts(t: TestEngine): Promise<number> {
  const metric = await t.engine.metrics.registry.getSingleMetric('auditpipe_sink_writes_total')!.get();
  return metric.values.filter((v) => v.labels.outcome === 'error').reduce((n, v) => n + v.value, 0);
}

describe('Kafka broker stopped mid-run', () => {
  const kafka = kafkaClient();
  const topic = uniqueName('ap_outage');
  const run = uniqueName('ko');
  let t: TestEngine;
  const post = (ids: string[]) => fetch(`${t.url()}/v1/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-ndjson' },
    body: ids.map((id, i) => JSON.stringify({ id, actorId: `actor-${i % 5}`, n: i })).join('\n') + '\n',
  });

  before(async () => {
    await createTopic(kafka, topic, 2);
    t = await startEngine({
      pipelines: [{
        name: 'test',
        source: { type: 'http', listen: '127.0.0.1:0' },
        batch: { max_events: 100, interval_ms: 20 },
        sinks: [{
          type: 'kafka', brokers: serverEnv('KAFKA_BROKERS'), topic, connection_timeout_ms: 1000, request_timeout_ms: 5000, send_retries: 2,
          retry: { max_attempts: 1000, initial_backoff_ms: 100, max_backoff_ms: 1000, max_elapsed_ms: 300_000, timeout_ms: 10_000 },
        }],
      }],
    });
  });
  after(async () => {
    await serverCtl('start', 'kafka').catch(() => undefined);
    await t.stop();
  });

  it('acks nothing while the broker is down; after the restart every event is there, once', async () => {
    const beforeIds = Array.from({ length: 300 }, (_, i) => `${run}-before-${i}`);
    assert.equal((await post(beforeIds)).status, 200);

    await serverCtl('stop', 'kafka');
    const duringIds = Array.from({ length: 300 }, (_, i) => `${run}-during-${i}`);
    let answered = false;
    const during = post(duringIds).then(async (res) => {
      answered = true;
      return { status: res.status, body: await res.text() };
    });
    while ((await failedAttempts(t)) < 2) await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(answered, false, 'no answer while the broker is down');

    await serverCtl('start', 'kafka');
    const answer = await during;
    assert.equal(answer.status, 200, answer.body);

    assert.equal(await recordCount(kafka, topic), beforeIds.length + duringIds.length, 'one record per event');
    const ids = (await consumeAll(kafka, topic, uniqueName('g'))).map((r) => String(r.value.id));
    assert.deepEqual(new Set(ids), new Set([...beforeIds, ...duringIds]));
  });
});
