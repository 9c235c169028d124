/**
 * The NATS server restarts (same port, same data) while auditpipe consumes: the source reconnects,
 * keeps pulling, and no event is lost. The test brings the server back before it ends.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { NatsConnection } from '@nats-io/transport-node';
import { newAuditEvent, Transfer } from '../../../src/client/index.ts';
import { startEngine } from '../../helpers/engine.ts';
import { serverCtl, serverEnv, uniqueName } from '../../helpers/servers.ts';
import { deleteStreams, FailingForwarder, metricValue, natsConnect, natsToVictoria, storedIds, streamMessages, waitFor } from './helpers.ts';

describe('NATS restart during a run', () => {
  let nc: NatsConnection;
  let namespace: string;
  before(() => {
    namespace = uniqueName('reconnect');
  });
  after(async () => {
    // A fresh connection: the test's own may still be reconnecting after the last restart.
    await nc?.close();
    nc = await natsConnect();
    try {
      await deleteStreams(nc, `${namespace}_logs`, `${namespace}_logs_dlq`, `${namespace}_ready`, `${namespace}_ready_dlq`);
    } finally {
      await nc.close();
    }
  });

  it('reconnects and delivers every event published before and after the restart', async () => {
    const tag = uniqueName('tag');
    // A loopback relay to the real VictoriaLogs holds the writes, so batches are in flight (unacked) across the restart.
    const forwarder = new FailingForwarder();
    const victoriaUrl = await forwarder.start();
    const engine = await startEngine(natsToVictoria({
      namespace, stream: 'logs', victoriaUrl,
      pipeline: { batch: { max_events: 200, interval_ms: 100 } },
      source: { ack_wait_ms: 15_000, pull_expires_ms: 2_000 },
    }));
    try {
      nc = await natsConnect();
      const ids: string[] = [];
      const publish = async (count: number) => {
        const transfer = new Transfer(nc, namespace);
        for (let i = 0; i < count; i += 1) {
          const event = newAuditEvent(tag, `event ${ids.length}`);
          ids.push(event.id);
          await transfer.publishAsync('logs', event);
        }
        await transfer.flush();
      };
      forwarder.mode = 'hold';
      await publish(2_000);
      await waitFor('writes in flight', () => forwarder.heldCount() > 0);
      await serverCtl('restart', 'nats');
      forwarder.release();
      // The test's own connection reconnects too (nats.js default), then publishes the second half.
      await waitFor('the test connection to reconnect', async () => {
        await nc.flush();
        return true;
      });
      await publish(2_000);
      await waitFor('the stream to be drained after the restart', async () => (await streamMessages(nc, `${namespace}_logs`)) === 0, 120_000);
      const stored = await waitFor('all 4,000 events', async () => {
        const counts = await storedIds(tag);
        return counts.size === 4_000 ? counts : undefined;
      }, 60_000);
      assert.deepEqual([...stored.keys()].sort(), ids.sort());
      // At least once: an ack lost in the restart may mean a second copy, never a missing one.
      const duplicates = [...stored.values()].filter((n) => n > 1).length;
      assert.ok(duplicates <= 2_000, `duplicates bounded by what was in flight (${duplicates})`);
      assert.ok(await metricValue(engine.engine.metrics.registry, 'auditpipe_events_acked_total') >= 4_000);
    } finally {
      await engine.stop();
      await forwarder.stop();
    }
  });

  it('reports the source not ready while NATS is down, and ready again once it is back', async () => {
    const engine = await startEngine(natsToVictoria({ namespace, stream: 'ready', victoriaUrl: serverEnv('VICTORIA_URL') }));
    try {
      assert.equal(engine.engine.readiness().ready, true);
      await serverCtl('stop', 'nats');
      try {
        const down = await waitFor('readiness to report the source', () => (engine.engine.readiness().ready ? undefined : engine.engine.readiness()), 30_000);
        assert.ok(down.problems.some((p) => /source nats is disconnected/.test(p)), down.problems.join('; '));
      } finally {
        await serverCtl('start', 'nats');
      }
      await waitFor('readiness after the restart', () => engine.engine.readiness().ready, 60_000);
    } finally {
      await engine.stop();
    }
  });
});
