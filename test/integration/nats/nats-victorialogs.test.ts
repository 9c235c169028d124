import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jetstream, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { newAuditEvent, Transfer } from '../../../src/client/index.ts';
import { serverEnv, uniqueName } from '../../helpers/servers.ts';
import { startEngine } from '../../helpers/engine.ts';
import { metricValue, natsToVictoria, storedIds, streamMessages, waitFor, withNats } from './helpers.ts';

describe('NATS JetStream → VictoriaLogs', () => {
  let nc!: NatsConnection;
  const streams = withNats((connection) => (nc = connection));

  function names(prefix: string) {
    const namespace = uniqueName(prefix);
    const stream = 'logs';
    streams.push(`${namespace}_${stream}`, `${namespace}_${stream}_dlq`);
    return { namespace, stream, tag: uniqueName('tag') };
  }

  it('10,000 events published with the SDK arrive exactly once each and the stream ends empty', async () => {
    const { namespace, stream, tag } = names('bulk');
    // A write attempt that times out may still have been stored by VictoriaLogs (which cannot
    // deduplicate), so the attempt timeout is generous here: on a loaded CI box a 10 s default can
    // expire while VictoriaLogs queues the insert, and the retry would store a second copy.
    const engine = await startEngine(natsToVictoria({
      namespace, stream, victoriaUrl: serverEnv('VICTORIA_URL'),
      pipeline: { batch: { max_events: 500, interval_ms: 100 } },
      source: { ack_wait_ms: 90_000 },
      sink: { retry: { timeout_ms: 60_000, max_elapsed_ms: 120_000 } },
    }));
    try {
      const transfer = new Transfer(nc, namespace);
      const ids: string[] = [];
      for (let i = 0; i < 10_000; i += 1) {
        const event = newAuditEvent(tag, `event ${i}`).withMeta('api', 'order', 'create', i, i % 97).withClient('10.0.0.1', 'test');
        ids.push(event.id);
        await transfer.publishAsync(stream, event);
      }
      await transfer.flush();
      await waitFor('the stream to be drained', async () => (await streamMessages(nc, `${namespace}_${stream}`)) === 0, 120_000);
      const stored = await waitFor('10,000 events in VictoriaLogs', async () => {
        const counts = await storedIds(tag);
        return counts.size === 10_000 ? counts : undefined;
      }, 60_000, 500);
      assert.deepEqual([...stored.keys()].sort(), [...ids].sort());
      const registry = engine.engine.metrics.registry;
      const diagnosis = JSON.stringify({
        duplicates: [...stored.values()].filter((n) => n !== 1).length,
        sinkErrors: await metricValue(registry, 'auditpipe_sink_writes_total', { outcome: 'error' }),
        redeliveries: await metricValue(registry, 'auditpipe_nats_redeliveries_total'),
        naks: await metricValue(registry, 'auditpipe_events_nacked_total'),
      });
      assert.deepEqual([...stored.values()].filter((n) => n !== 1), [], `every event stored exactly once: ${diagnosis}`);
      assert.equal(await metricValue(engine.engine.metrics.registry, 'auditpipe_events_acked_total'), 10_000);
    } finally {
      await engine.stop();
    }
  });

  it('accepts the Go transfer JSON without headers: id from stream + sequence, integer user_id as the actor', async () => {
    const { namespace, stream, tag } = names('gojson');
    const engine = await startEngine(natsToVictoria({ namespace, stream, victoriaUrl: serverEnv('VICTORIA_URL') }));
    try {
      const js = jetstream(nc);
      // Exactly what the Go SDK's sonic marshaller produces: local offset, integer user_id, no Nats-Msg-Id.
      const goJson = `{"time":"2026-01-20T10:15:30.123456789+08:00","stream":"${tag}","msg":"User logged in","platform":"admin","resource":"user","action":"login","object_id":[1,2],"user_id":123,"path":"/api/login","ip":"192.168.1.1","extra":{"agent":"Mozilla/5.0","code":200}}`;
      const ack = await js.publish(`${namespace}.${stream}`, goJson);
      const stored = await waitFor('the Go event in VictoriaLogs', async () => {
        const rows = await import('./helpers.ts').then((h) => h.vlQuery(`stream:${JSON.stringify(tag)}`));
        return rows.length === 1 ? rows[0] : undefined;
      });
      assert.equal(stored.id, `${namespace}_${stream}:${ack.seq}`);
      assert.equal(stored.user_id, '123');
      assert.equal(stored._msg, 'User logged in');
      assert.equal(stored['extra.agent'], 'Mozilla/5.0');
      assert.equal(new Date(stored._time!).toISOString(), '2026-01-20T02:15:30.123Z');
      await waitFor('the stream to be drained', async () => (await streamMessages(nc, `${namespace}_${stream}`)) === 0);
    } finally {
      await engine.stop();
    }
  });

  it('terms a poison message with a copy and its reason on the dead-letter subject; the rest of its batch is delivered', async () => {
    const { namespace, stream, tag } = names('poison');
    const engine = await startEngine(natsToVictoria({ namespace, stream, victoriaUrl: serverEnv('VICTORIA_URL'), pipeline: { batch: { max_events: 100, interval_ms: 500 } } }));
    try {
      const js = jetstream(nc);
      const subject = `${namespace}.${stream}`;
      const good: string[] = [];
      for (let i = 0; i < 5; i += 1) {
        good.push(`good-${i}`);
        await js.publish(subject, JSON.stringify({ id: `good-${i}`, stream: tag, msg: 'ok' }));
        if (i === 2) {
          await js.publish(subject, '{"not json', { msgID: 'poison-1' });
          await js.publish(subject, '[1,2,3]', { msgID: 'poison-2' });
          await js.publish(subject, JSON.stringify({ stream: tag, msg: 'bad time', time: 'yesterday' }), { msgID: 'poison-3' });
        }
      }
      const stored = await waitFor('the 5 good events', async () => {
        const ids = await storedIds(tag);
        return ids.size === 5 ? ids : undefined;
      });
      assert.deepEqual([...stored.keys()].sort(), good);
      await waitFor('the stream to be drained', async () => (await streamMessages(nc, `${namespace}_${stream}`)) === 0);

      const jsm = await jetstreamManager(nc);
      const dlq = `${namespace}_${stream}_dlq`;
      await waitFor('3 dead letters', async () => (await jsm.streams.info(dlq)).state.messages === 3);
      const copies = new Map<string, { data: string; reason: string }>();
      for (let seq = 1; seq <= 3; seq += 1) {
        const message = (await jsm.streams.getMessage(dlq, { seq }))!;
        assert.equal(message.subject, `${namespace}.${stream}.dlq`);
        copies.set(message.header.get('Auditpipe-Msg-Id'), { data: message.string(), reason: message.header.get('Auditpipe-Reason') });
        assert.equal(message.header.get('Auditpipe-Stream'), `${namespace}_${stream}`);
        assert.match(message.header.get('Auditpipe-Stream-Seq'), /^\d+$/);
      }
      assert.equal(copies.get('poison-1')!.data, '{"not json');
      assert.match(copies.get('poison-1')!.reason, /not valid UTF-8 JSON/);
      assert.match(copies.get('poison-2')!.reason, /must be a JSON object/);
      assert.match(copies.get('poison-3')!.reason, /"time" must be an RFC 3339 timestamp/);
      const registry = engine.engine.metrics.registry;
      assert.equal(await metricValue(registry, 'auditpipe_nats_dead_lettered_total', { destination: 'subject' }), 3);
      assert.equal(await metricValue(registry, 'auditpipe_inputs_rejected_total', { reason: 'malformed_json' }), 1);
      assert.equal(await metricValue(registry, 'auditpipe_inputs_rejected_total', { reason: 'invalid_event' }), 2);
    } finally {
      await engine.stop();
    }
  });

  it('never resets limits an operator set on an existing stream, and updates only its own consumer settings', async () => {
    const { namespace, stream } = names('limits');
    const jsm = await jetstreamManager(nc);
    const name = `${namespace}_${stream}`;
    await jsm.streams.add({ name, subjects: [`${namespace}.${stream}`], retention: RetentionPolicy.Workqueue, storage: StorageType.File, max_msgs: 12345, max_bytes: 99_999_999, max_msg_size: 65_536 });
    await jsm.consumers.add(name, { durable_name: 'auditpipe', ack_policy: 'explicit' as never, ack_wait: 60_000_000_000, max_ack_pending: 50, filter_subject: `${namespace}.${stream}` });
    const engine = await startEngine(natsToVictoria({ namespace, stream, victoriaUrl: serverEnv('VICTORIA_URL'), source: { ack_wait_ms: 20_000, max_ack_pending: 2_000 } }));
    try {
      const info = await jsm.streams.info(name);
      assert.equal(info.config.max_msgs, 12345);
      assert.equal(info.config.max_bytes, 99_999_999);
      assert.equal(info.config.max_msg_size, 65_536);
      const consumer = await jsm.consumers.info(name, 'auditpipe');
      assert.equal(consumer.config.ack_wait, 20_000_000_000);
      assert.equal(consumer.config.max_ack_pending, 2_000);
      assert.equal(consumer.config.durable_name, 'auditpipe');
    } finally {
      await engine.stop();
    }
  });

  it('refuses to start on a stream that does not capture its subject', async () => {
    const { namespace, stream } = names('wrongsubj');
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: `${namespace}_${stream}`, subjects: [`${namespace}.other`], storage: StorageType.Memory });
    await assert.rejects(
      startEngine(natsToVictoria({ namespace, stream, victoriaUrl: serverEnv('VICTORIA_URL') })),
      /does not capture subject/,
    );
  });
});

describe('NATS source start-up failures', () => {
  it('fails start with the server named (never the token) when NATS is unreachable', async () => {
    const { freePort } = await import('../../helpers/servers.ts');
    const port = await freePort();
    const config = natsToVictoria({ namespace: uniqueName('down'), stream: 'logs', victoriaUrl: serverEnv('VICTORIA_URL'), source: { servers: [`nats://127.0.0.1:${port}`], token: 'very-secret-token', connect_timeout_ms: 2_000 } });
    await assert.rejects(startEngine(config), (error: unknown) => {
      const message = (error as Error).message;
      assert.match(message, new RegExp(`cannot connect to NATS at nats://127.0.0.1:${port}`));
      assert.doesNotMatch(message, /very-secret-token/);
      return true;
    });
  });

  it('fails start on a wrong token', async () => {
    const config = natsToVictoria({ namespace: uniqueName('badtoken'), stream: 'logs', victoriaUrl: serverEnv('VICTORIA_URL'), source: { token: 'wrong-token', connect_timeout_ms: 2_000 } });
    await assert.rejects(startEngine(config), (error: unknown) => {
      assert.match((error as Error).message, /cannot connect to NATS.*(auth|Authorization)/i);
      assert.doesNotMatch((error as Error).message, /wrong-token/);
      return true;
    });
  });
});
