/**
 * require_actor on a NATS pipeline: a message without the actor is poison like any invalid
 * event (termed, copied to the dead-letter subject with the reason); the others are delivered,
 * auditstream's integer user_id included.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { serverEnv, uniqueName } from '../../helpers/servers.ts';
import { startEngine } from '../../helpers/engine.ts';
import { metricValue, natsToVictoria, storedIds, streamMessages, waitFor, withNats } from './helpers.ts';

describe('require_actor on a NATS pipeline', () => {
  let nc!: NatsConnection;
  const streams = withNats((connection) => (nc = connection));

  it('dead-letters a message without the actor and delivers its neighbours', async () => {
    const namespace = uniqueName('reqactor');
    const stream = 'logs';
    const tag = uniqueName('tag');
    streams.push(`${namespace}_${stream}`, `${namespace}_${stream}_dlq`);
    const engine = await startEngine(natsToVictoria({
      namespace, stream, victoriaUrl: serverEnv('VICTORIA_URL'),
      pipeline: { require_actor: true, batch: { max_events: 100, interval_ms: 200 } },
    }));
    try {
      const js = jetstream(nc);
      const subject = `${namespace}.${stream}`;
      await js.publish(subject, JSON.stringify({ id: 'with-string', user_id: 'alice', stream: tag, msg: 'ok' }));
      await js.publish(subject, JSON.stringify({ id: 'no-actor', stream: tag, msg: 'who?', action: 'login' }), { msgID: 'no-actor' });
      await js.publish(subject, JSON.stringify({ id: 'with-number', user_id: 42, stream: tag, msg: 'ok' }));

      const stored = await waitFor('the two events with an actor', async () => {
        const ids = await storedIds(tag);
        return ids.size === 2 ? ids : undefined;
      });
      assert.deepEqual([...stored.keys()].sort(), ['with-number', 'with-string']);
      await waitFor('the stream to be drained', async () => (await streamMessages(nc, `${namespace}_${stream}`)) === 0);

      const jsm = await jetstreamManager(nc);
      const dlq = `${namespace}_${stream}_dlq`;
      await waitFor('1 dead letter', async () => (await jsm.streams.info(dlq)).state.messages === 1);
      const copy = (await jsm.streams.getMessage(dlq, { seq: 1 }))!;
      assert.equal(copy.header.get('Auditpipe-Msg-Id'), 'no-actor');
      assert.equal(copy.header.get('Auditpipe-Reason'), '"user_id" (the actor id) is required: this pipeline has require_actor on');
      assert.equal(JSON.parse(copy.string()).id, 'no-actor');
      assert.equal(await metricValue(engine.engine.metrics.registry, 'auditpipe_inputs_rejected_total', { reason: 'invalid_event' }), 1);
    } finally {
      await engine.stop();
    }
  });
});
