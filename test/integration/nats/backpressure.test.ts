/**
 * The source pulls only what the pipeline accepts, and poison goes to the pipeline's own
 * dead_letter sink when it has one. The held VictoriaLogs writes come from a loopback relay to the
 * real VictoriaLogs (FailingForwarder), because VictoriaLogs cannot be paused.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { newAuditEvent, Transfer } from '../../../src/client/index.ts';
import { startEngine } from '../../helpers/engine.ts';
import { serverEnv, uniqueName } from '../../helpers/servers.ts';
import { FailingForwarder, metricValue, natsToVictoria, storedIds, streamMessages, vlQuery, waitFor, withNats } from './helpers.ts';

describe('NATS source flow control', () => {
  let nc!: NatsConnection;
  const streams = withNats((connection) => (nc = connection));

  it('pulls only as much as the pipeline holds while the sink is stuck, then delivers the rest', async () => {
    const namespace = uniqueName('backpressure');
    streams.push(`${namespace}_logs`, `${namespace}_logs_dlq`);
    const tag = uniqueName('tag');
    const forwarder = new FailingForwarder();
    const url = await forwarder.start();
    forwarder.mode = 'hold';
    const pullBatch = 20;
    const engine = await startEngine(natsToVictoria({
      namespace, stream: 'logs', victoriaUrl: url,
      // Room for about 20 events of ~300 bytes in the pipeline (buffered + in flight).
      pipeline: { batch: { max_events: 10, max_bytes: 3_000, interval_ms: 50, max_in_flight: 1, max_buffered_bytes: 6_000 } },
      source: { pull_batch: pullBatch, metrics_interval_ms: 100, ack_wait_ms: 20_000 },
      sink: { retry: { timeout_ms: 15_000 } },
    }));
    try {
      const transfer = new Transfer(nc, namespace);
      const ids: string[] = [];
      for (let i = 0; i < 500; i += 1) {
        const event = newAuditEvent(tag, `event ${i}`);
        ids.push(event.id);
        await transfer.publishAsync('logs', event);
      }
      await transfer.flush();
      await waitFor('a write held open', () => forwarder.heldCount() > 0);
      const jsm = await jetstreamManager(nc);
      const registry = engine.engine.metrics.registry;
      // Give an over-eager puller every chance to show itself, then look at what was delivered.
      await waitFor('the pending gauge to show the backlog', async () => (await metricValue(registry, 'auditpipe_nats_consumer_pending')) > 400);
      const consumer = await jsm.consumers.info(`${namespace}_logs`, 'auditpipe');
      assert.ok(consumer.num_ack_pending <= 2 * pullBatch + 25, `delivered but unacked: ${consumer.num_ack_pending}`);
      assert.ok(consumer.num_pending >= 500 - 2 * pullBatch - 25, `still in the stream undelivered: ${consumer.num_pending}`);
      forwarder.release();
      await waitFor('the stream to be drained', async () => (await streamMessages(nc, `${namespace}_logs`)) === 0, 120_000);
      const stored = await waitFor('all 500 events', async () => {
        const counts = await storedIds(tag);
        return counts.size === 500 ? counts : undefined;
      });
      assert.deepEqual([...stored.keys()].sort(), ids.sort());
    } finally {
      await engine.stop();
      await forwarder.stop();
    }
  });

  it('copies poison to the pipeline dead_letter sink (not the subject) when the pipeline has one', async () => {
    const namespace = uniqueName('dlsink');
    streams.push(`${namespace}_logs`, `${namespace}_logs_dlq`);
    const dlqTag = uniqueName('dlq');
    const config = natsToVictoria({ namespace, stream: 'logs', victoriaUrl: serverEnv('VICTORIA_URL') });
    (config.pipelines as Array<Record<string, unknown>>)[0]!.dead_letter = {
      type: 'victorialogs', url: serverEnv('VICTORIA_URL'), msg_field: 'reason', extra_fields: { dlq_tag: dlqTag },
    };
    const engine = await startEngine(config);
    try {
      await jetstream(nc).publish(`${namespace}.logs`, 'definitely { not json');
      const rows = await waitFor('the dead letter in VictoriaLogs', async () => {
        const found = await vlQuery(`dlq_tag:${JSON.stringify(dlqTag)}`);
        return found.length === 1 ? found : undefined;
      });
      assert.equal(rows[0]!.raw, 'definitely { not json');
      assert.match(rows[0]!._msg!, /not valid UTF-8 JSON/);
      assert.match(rows[0]!.origin!, new RegExp(`^nats:${namespace}_logs#1$`));
      await waitFor('the work queue to be empty', async () => (await streamMessages(nc, `${namespace}_logs`)) === 0);
      const jsm = await jetstreamManager(nc);
      assert.equal((await jsm.streams.info(`${namespace}_logs_dlq`)).state.messages, 0, 'nothing on the subject');
      assert.equal(await metricValue(engine.engine.metrics.registry, 'auditpipe_nats_dead_lettered_total', { destination: 'pipeline' }), 1);
    } finally {
      await engine.stop();
    }
  });
});
