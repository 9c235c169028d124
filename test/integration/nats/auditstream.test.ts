/**
 * The auditstream drop-in: the seed README's values.yml, with only its endpoints (nats_hosts,
 * nats_token, victoria) pointed at the test servers and a fresh namespace, run by the CLI.
 * The seed format has no ${VAR} interpolation, so the file is written at test time.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { newAuditEvent, Transfer } from '../../../src/client/index.ts';
import { serverEnv, uniqueName } from '../../helpers/servers.ts';
import { deleteStreams, natsConnect, ROOT, runCliFile, storedIds, streamMessages, vlQuery, waitFor } from './helpers.ts';

describe('auditstream values.yml drop-in', () => {
  let nc: NatsConnection;
  let namespace: string;
  before(async () => {
    nc = await natsConnect();
    namespace = uniqueName('alpha');
  });
  after(async () => {
    await deleteStreams(nc, `${namespace}_logs`, `${namespace}_logs_dlq`);
    await nc.close();
  });

  it('runs the seed README example unchanged (endpoints aside) and stores Go-SDK and TS-SDK events', async () => {
    const seed = readFileSync(path.join(ROOT, 'config/values.yml'), 'utf8');
    const values = seed
      .replace('namespace: alpha', `namespace: ${namespace}`)
      .replace('- nats://127.0.0.1:4222', `- ${serverEnv('NATS_URL')}`)
      .replace('nats_token: your-token', `nats_token: ${process.env.NATS_TOKEN ?? ''}`)
      .replace('victoria: http://localhost:9428', `victoria: ${serverEnv('VICTORIA_URL')}`);
    // Only those three lines (and the namespace) differ from the README example.
    assert.equal(values.split('\n').filter((line, i) => line !== seed.split('\n')[i]).length, 4);
    const dir = mkdtempSync(path.join(tmpdir(), 'auditstream-'));
    mkdtempSync(path.join(dir, 'x'));
    const file = path.join(dir, 'values.yml');
    writeFileSync(file, values);
    const plugins = path.join(dir, 'plugins.json');
    writeFileSync(plugins, '{"plugins": []}');
    const child = runCliFile(file, plugins);
    try {
      await waitFor('the process to consume', () => {
        if (child.process.exitCode !== null) throw new Error(`exited ${child.process.exitCode}: ${child.output()}`);
        return child.output().includes('nats source consuming');
      });
      const jsm = await jetstreamManager(nc);
      const info = await jsm.streams.info(`${namespace}_logs`);
      assert.deepEqual(info.config.subjects, [`${namespace}.logs`]);
      assert.equal(info.config.retention, 'workqueue');
      assert.equal(info.config.storage, 'file');
      const consumer = await jsm.consumers.info(`${namespace}_logs`, 'default');
      assert.equal(consumer.config.durable_name, 'default');

      const tag = uniqueName('audits');
      // As the Go SDK publishes: its JSON, no headers.
      await jetstream(nc).publish(`${namespace}.logs`, JSON.stringify({ time: '2026-01-20T10:00:00.5+08:00', stream: tag, msg: 'from go', platform: 'admin', resource: 'user', action: 'login', object_id: 7, user_id: 42, path: '/api/login', ip: '10.0.0.1' }));
      const transfer = new Transfer(nc, namespace);
      const event = newAuditEvent(tag, 'from ts').withMeta('api', 'order', 'create', 'o-1', 7).withResponse(201, { ok: true });
      await transfer.publish('logs', event);
      const ids = await waitFor('both events in VictoriaLogs', async () => {
        const found = await storedIds(tag);
        return found.size === 2 ? found : undefined;
      }, 60_000);
      assert.ok(ids.has(event.id));
      const rows = await vlQuery(`stream:${JSON.stringify(tag)}`);
      const go = rows.find((row) => row._msg === 'from go')!;
      assert.equal(go.user_id, '42');
      assert.match(go._stream!, new RegExp(tag));
      assert.equal(rows.find((row) => row._msg === 'from ts')!['extra.code'], '201');
      await waitFor('the stream to be drained', async () => (await streamMessages(nc, `${namespace}_logs`)) === 0);
      child.process.kill('SIGTERM');
      assert.equal(await child.exited, 0, child.output());
    } finally {
      if (child.process.exitCode === null) child.process.kill('SIGKILL');
    }
  });
});
