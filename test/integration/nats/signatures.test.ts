import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, it } from 'node:test';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { privateKeySigner, signEvent } from '../../../src/security/signatures.ts';
import { startEngine } from '../../helpers/engine.ts';
import { serverEnv, uniqueName } from '../../helpers/servers.ts';
import { metricValue, natsToVictoria, storedIds, streamMessages, waitFor, withNats } from './helpers.ts';

describe('NATS source with signatures: required', () => {
  let nc!: NatsConnection;
  const namespace = uniqueName('sig');
  const stream = 'logs';
  withNats((connection) => (nc = connection)).push(`${namespace}_${stream}`, `${namespace}_${stream}_dlq`);

  it('stores a correctly signed event, and terms + dead-letters unsigned and wrongly signed ones with the reason', async () => {
    const trusted = generateKeyPairSync('ed25519');
    const stranger = generateKeyPairSync('ed25519');
    const tag = uniqueName('tag');
    const engine = await startEngine(natsToVictoria({
      namespace, stream, victoriaUrl: serverEnv('VICTORIA_URL'),
      pipeline: { batch: { max_events: 100, interval_ms: 200 } },
      source: {
        signatures: 'required',
        signature_keys: [{ id: 'svc-1', pem: trusted.publicKey.export({ type: 'spki', format: 'pem' }).toString() }],
      },
    }));
    try {
      const js = jetstream(nc);
      const subject = `${namespace}.${stream}`;
      const base = (id: string) => ({ id, time: '2026-11-23T10:00:00Z', user_id: 'u1', stream: tag, msg: 'signed' });
      await js.publish(subject, JSON.stringify(await signEvent(base('good'), privateKeySigner('svc-1', trusted.privateKey))));
      await js.publish(subject, JSON.stringify(await signEvent(base('wrong-key'), privateKeySigner('svc-1', stranger.privateKey))), { msgID: 'wrong-key' });
      await js.publish(subject, JSON.stringify(base('unsigned')), { msgID: 'unsigned' });
      const tampered = await signEvent(base('tampered'), privateKeySigner('svc-1', trusted.privateKey));
      await js.publish(subject, JSON.stringify({ ...tampered, msg: 'changed after signing' }), { msgID: 'tampered' });

      const stored = await waitFor('the signed event', async () => {
        const ids = await storedIds(tag);
        return ids.size >= 1 ? ids : undefined;
      });
      await waitFor('the stream to be drained', async () => (await streamMessages(nc, `${namespace}_${stream}`)) === 0);
      assert.deepEqual([...stored.keys()], ['good']);

      const jsm = await jetstreamManager(nc);
      const dlq = `${namespace}_${stream}_dlq`;
      await waitFor('3 dead letters', async () => (await jsm.streams.info(dlq)).state.messages === 3);
      const reasons = new Map<string, string>();
      for (let seq = 1; seq <= 3; seq += 1) {
        const message = (await jsm.streams.getMessage(dlq, { seq }))!;
        reasons.set(message.header.get('Auditpipe-Msg-Id'), message.header.get('Auditpipe-Reason'));
      }
      assert.match(reasons.get('wrong-key')!, /signature verification failed \(bad_signature\)/);
      assert.match(reasons.get('tampered')!, /signature verification failed \(bad_signature\)/);
      assert.match(reasons.get('unsigned')!, /signature verification failed \(unsigned\)/);
      const registry = engine.engine.metrics.registry;
      assert.equal(await metricValue(registry, 'auditpipe_signature_failures_total', { reason: 'bad_signature' }), 2);
      assert.equal(await metricValue(registry, 'auditpipe_inputs_rejected_total', { reason: 'signature' }), 3);
    } finally {
      await engine.stop();
    }
  });
});
