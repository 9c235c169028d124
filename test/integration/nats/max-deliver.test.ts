/**
 * Max deliveries: a message the pipeline keeps failing, and a message whose last delivery expired
 * without any answer (a process that died holding it), are both dead-lettered and leave the work
 * queue. The failing VictoriaLogs is a loopback relay (FailingForwarder) answering 500.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { startEngine } from '../../helpers/engine.ts';
import { serverEnv, uniqueName } from '../../helpers/servers.ts';
import { FailingForwarder, metricValue, natsToVictoria, storedIds, streamMessages, waitFor, withNats } from './helpers.ts';

describe('NATS max deliveries', () => {
  let nc!: NatsConnection;
  const streams = withNats((connection) => (nc = connection));

  const fast = { batch: { max_events: 10, interval_ms: 50 }, nak_delay_ms: 200 };
  const quickSink = { retry: { max_attempts: 2, initial_backoff_ms: 50, max_backoff_ms: 100, max_elapsed_ms: 1_000, timeout_ms: 500 } };

  async function deadLetters(namespace: string) {
    const jsm = await jetstreamManager(nc);
    const dlq = `${namespace}_logs_dlq`;
    const count = (await jsm.streams.info(dlq)).state.messages;
    const messages = [];
    for (let seq = 1; seq <= count; seq += 1) messages.push((await jsm.streams.getMessage(dlq, { seq }))!);
    return messages;
  }

  it('a write that keeps failing is dead-lettered on its last delivery instead of naked again', async () => {
    const namespace = uniqueName('maxdel');
    streams.push(`${namespace}_logs`, `${namespace}_logs_dlq`);
    const tag = uniqueName('tag');
    const forwarder = new FailingForwarder();
    const url = await forwarder.start();
    forwarder.mode = 'fail500';
    const engine = await startEngine(natsToVictoria({ namespace, stream: 'logs', victoriaUrl: url, pipeline: fast, sink: quickSink, source: { max_deliver: 3, ack_wait_ms: 5_000 } }));
    try {
      await jetstream(nc).publish(`${namespace}.logs`, JSON.stringify({ id: 'doomed', stream: tag, msg: 'never written' }));
      const [copy] = await waitFor('the dead letter', async () => {
        const found = await deadLetters(namespace);
        return found.length === 1 ? found : undefined;
      });
      assert.match(copy!.header.get('Auditpipe-Reason'), /max deliveries \(3\) reached; last failure: sink victorialogs: VictoriaLogs answered HTTP 500/);
      assert.equal(copy!.header.get('Auditpipe-Deliveries'), '3');
      assert.equal(JSON.parse(copy!.string()).id, 'doomed');
      await waitFor('the work queue to be empty', async () => (await streamMessages(nc, `${namespace}_logs`)) === 0);
      assert.equal(await metricValue(engine.engine.metrics.registry, 'auditpipe_nats_dead_lettered_total', { reason: 'max_deliver' }), 1);
      assert.equal(await metricValue(engine.engine.metrics.registry, 'auditpipe_events_acked_total'), 0);
      assert.equal((await storedIds(tag)).size, 0);
    } finally {
      await engine.stop();
      await forwarder.stop();
    }
  });

  it('a message whose deliveries all expired unanswered is dead-lettered from the server advisory', async () => {
    const namespace = uniqueName('expired');
    streams.push(`${namespace}_logs`, `${namespace}_logs_dlq`);
    const config = natsToVictoria({ namespace, stream: 'logs', victoriaUrl: serverEnv('VICTORIA_URL'), pipeline: fast, sink: quickSink, source: { max_deliver: 2, ack_wait_ms: 1_500 } });
    // Create the stream and consumer, then stop, so that a "dying" client can take the deliveries.
    await (await startEngine(config)).stop();
    await jetstream(nc).publish(`${namespace}.logs`, JSON.stringify({ id: 'orphan', msg: 'taken by a process that died' }));
    const consumer = await jetstream(nc).consumers.get(`${namespace}_logs`, 'auditpipe');
    for (let delivery = 1; delivery <= 2; delivery += 1) {
      // Each fetch takes the message and never answers, like a process killed mid-write.
      const message = await waitFor(`delivery ${delivery}`, async () => consumer.next({ expires: 1_000 }));
      assert.equal(message.info.deliveryCount, delivery);
    }
    const engine = await startEngine(config);
    try {
      const [copy] = await waitFor('the dead letter', async () => {
        const found = await deadLetters(namespace);
        return found.length === 1 ? found : undefined;
      });
      assert.match(copy!.header.get('Auditpipe-Reason'), /max deliveries \(2\) reached without an ack/);
      assert.equal(JSON.parse(copy!.string()).id, 'orphan');
      await waitFor('the work queue to be empty', async () => (await streamMessages(nc, `${namespace}_logs`)) === 0);
    } finally {
      await engine.stop();
    }
  });
});
