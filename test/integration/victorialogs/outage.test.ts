/**
 * VictoriaLogs failing during a run. 500 and 400 answers come from a loopback relay in front of
 * the real VictoriaLogs (FailingForwarder), because VictoriaLogs cannot be made to answer them;
 * "stopped" really stops the VictoriaLogs test server and starts it again.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { newAuditEvent, Transfer } from '../../../src/client/index.ts';
import { startEngine, type TestEngine } from '../../helpers/engine.ts';
import { serverCtl, serverEnv, uniqueName } from '../../helpers/servers.ts';
import { FailingForwarder, metricValue, natsToVictoria, storedIds, streamMessages, waitFor, withNats } from '../nats/helpers.ts';

const EVENTS = 300;

describe('VictoriaLogs failures: nothing acked while failing, everything there after recovery', () => {
  let nc!: NatsConnection;
  const streams = withNats((connection) => (nc = connection));

  async function scenario(victoriaUrl: string, fail: () => Promise<void>, waitFailing: (engine: TestEngine) => Promise<void>, recover: () => Promise<void>) {
    const namespace = uniqueName('outage');
    const stream = 'logs';
    const name = `${namespace}_${stream}`;
    streams.push(name, `${name}_dlq`);
    const tag = uniqueName('tag');
    const engine = await startEngine(natsToVictoria({
      namespace, stream, victoriaUrl,
      pipeline: { nak_delay_ms: 1_000, batch: { max_events: 100, interval_ms: 100 } },
      sink: { retry: { max_attempts: 4, initial_backoff_ms: 100, max_backoff_ms: 1_000, max_elapsed_ms: 5_000, timeout_ms: 2_000 } },
      source: { ack_wait_ms: 15_000 },
    }));
    try {
      await fail();
      const transfer = new Transfer(nc, namespace);
      const ids: string[] = [];
      for (let i = 0; i < EVENTS; i += 1) {
        const event = newAuditEvent(tag, `event ${i}`);
        ids.push(event.id);
        await transfer.publishAsync(stream, event);
      }
      await transfer.flush();
      await waitFailing(engine);
      const registry = engine.engine.metrics.registry;
      // Nothing acked while VictoriaLogs fails: every message is still in the work queue.
      assert.equal(await metricValue(registry, 'auditpipe_events_acked_total'), 0);
      assert.equal(await streamMessages(nc, name), EVENTS);
      const jsm = await jetstreamManager(nc);
      const consumer = await jsm.consumers.info(name, 'auditpipe');
      assert.equal(consumer.num_pending + consumer.num_ack_pending, EVENTS);
      // The retry backs off instead of spinning: retries were scheduled with backoff, batches gave up
      // after max_attempts and were naked with a delay (redelivered later, not at once).
      assert.ok(await metricValue(registry, 'auditpipe_sink_retries_total') > 0, 'retries scheduled');
      const errors = await metricValue(registry, 'auditpipe_sink_writes_total', { outcome: 'error' });
      const gaveUp = await metricValue(registry, 'auditpipe_sink_writes_total', { outcome: 'gave_up' });
      assert.ok(gaveUp >= 1, 'a batch gave up after its retry policy');
      assert.ok(errors <= (gaveUp + 4) * 4, `attempts bounded by max_attempts per batch (errors ${errors}, gave up ${gaveUp})`);
      assert.ok(await metricValue(registry, 'auditpipe_events_nacked_total') > 0, 'failed batches were naked');

      await recover();
      await waitFor('the stream to be drained after recovery', async () => (await streamMessages(nc, name)) === 0, 120_000);
      const stored = await waitFor(`${EVENTS} events in VictoriaLogs`, async () => {
        const counts = await storedIds(tag);
        return counts.size === EVENTS ? counts : undefined;
      });
      assert.deepEqual([...stored.keys()].sort(), ids.sort());
      assert.equal(await metricValue(registry, 'auditpipe_events_acked_total'), EVENTS);
    } finally {
      await engine.stop();
    }
  }

  async function errorsAtLeast(engine: TestEngine, count: number) {
    await waitFor(`${count} failed sink writes`, async () => (await metricValue(engine.engine.metrics.registry, 'auditpipe_sink_writes_total', { outcome: 'gave_up' })) >= count);
  }

  it('answering 500', async () => {
    const forwarder = new FailingForwarder();
    const url = await forwarder.start();
    try {
      await scenario(url, async () => { forwarder.mode = 'fail500'; }, (engine) => errorsAtLeast(engine, 2), async () => { forwarder.mode = 'pass'; });
      assert.ok(forwarder.statuses.filter((s) => s === 500).length >= 2);
    } finally {
      await forwarder.stop();
    }
  });

  it('answering 400', async () => {
    const forwarder = new FailingForwarder();
    const url = await forwarder.start();
    try {
      await scenario(url, async () => { forwarder.mode = 'fail400'; }, (engine) => errorsAtLeast(engine, 2), async () => { forwarder.mode = 'pass'; });
      assert.ok(forwarder.statuses.filter((s) => s === 400).length >= 2);
    } finally {
      await forwarder.stop();
    }
  });

  it('stopped (the real server), then started again', async () => {
    let stopped = false;
    try {
      await scenario(serverEnv('VICTORIA_URL'), async () => {
        await serverCtl('stop', 'victorialogs');
        stopped = true;
      }, (engine) => errorsAtLeast(engine, 2), async () => {
        await serverCtl('start', 'victorialogs');
        stopped = false;
      });
    } finally {
      if (stopped) await serverCtl('start', 'victorialogs');
    }
  });
});
