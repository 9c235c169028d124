import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { newAuditEvent, PublishAsyncError, Transfer } from '../../../src/client/index.ts';
import { uniqueName } from '../../helpers/servers.ts';
import { deleteStreams, natsConnect } from './helpers.ts';

describe('transfer SDK against JetStream', () => {
  let nc: NatsConnection;
  let namespace: string;
  before(async () => {
    nc = await natsConnect();
    namespace = uniqueName('sdk');
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: `${namespace}_logs`, subjects: [`${namespace}.logs`], retention: RetentionPolicy.Limits, storage: StorageType.Memory });
  });
  after(async () => {
    await deleteStreams(nc, `${namespace}_logs`);
    await nc.close();
  });

  it('publish waits for the PubAck and sets Nats-Msg-Id; publishing the same event again is deduplicated', async () => {
    const transfer = new Transfer(nc, namespace);
    assert.equal(transfer.subject('logs'), `${namespace}.logs`);
    const event = newAuditEvent('audits', 'User logged in').withMeta('admin', 'user', 'login', 123, 456);
    const first = await transfer.publish('logs', event);
    assert.equal(first.duplicate, false);
    const again = await transfer.publish('logs', event);
    assert.equal(again.duplicate, true);
    assert.equal(again.seq, first.seq);
    const jsm = await jetstreamManager(nc);
    const stored = (await jsm.streams.getMessage(`${namespace}_logs`, { seq: first.seq }))!;
    assert.equal(stored.header.get('Nats-Msg-Id'), event.id);
    assert.deepEqual(stored.json(), JSON.parse(JSON.stringify(event)));
  });

  it('publishRaw sends the bytes as they are, with a message id; an `id` in an object becomes the message id', async () => {
    const transfer = new Transfer(nc, namespace);
    const raw = await transfer.publishRaw('logs', '{"msg":"pre-serialised"}', { msgId: 'raw-1' });
    const object = await transfer.publish('logs', { id: 'evt-42', msg: 'object' });
    const jsm = await jetstreamManager(nc);
    const rawStored = (await jsm.streams.getMessage(`${namespace}_logs`, { seq: raw.seq }))!;
    assert.equal(rawStored.string(), '{"msg":"pre-serialised"}');
    assert.equal(rawStored.header.get('Nats-Msg-Id'), 'raw-1');
    assert.equal((await jsm.streams.getMessage(`${namespace}_logs`, { seq: object.seq }))!.header.get('Nats-Msg-Id'), 'evt-42');
  });

  it('publishAsync bounds what is in flight and flush() waits for all of them', async () => {
    const transfer = new Transfer(nc, namespace, { maxPendingAsync: 10 });
    const jsm = await jetstreamManager(nc);
    const before = (await jsm.streams.info(`${namespace}_logs`)).state.messages;
    for (let i = 0; i < 500; i += 1) {
      await transfer.publishAsync('logs', newAuditEvent('audits', `async ${i}`));
      assert.ok(transfer.pendingAsync() <= 10);
    }
    await transfer.flush();
    assert.equal(transfer.pendingAsync(), 0);
    assert.equal((await jsm.streams.info(`${namespace}_logs`)).state.messages, before + 500);
  });

  it('surfaces failed asynchronous publishes on flush(), and refuses publishes after close()', async () => {
    const transfer = new Transfer(nc, namespace, { timeoutMs: 500, attempts: 1 });
    // No stream captures this subject: every publish fails.
    await transfer.publishAsync('nostream', newAuditEvent('audits', 'lost'));
    await transfer.publishAsync('nostream', newAuditEvent('audits', 'lost too'));
    await assert.rejects(transfer.flush(), (error: unknown) => {
      assert.ok(error instanceof PublishAsyncError);
      assert.equal(error.errors.length, 2);
      assert.match(error.message, /2 asynchronous publishes failed/);
      return true;
    });
    await transfer.flush();
    await transfer.close();
    await assert.rejects(transfer.publish('logs', newAuditEvent('audits', 'late')), /closed/);
    assert.throws(() => new Transfer(nc, 'a.b'), /namespace/);
    assert.throws(() => transfer.subject('x>'), /stream/);
  });
});
