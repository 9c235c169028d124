// Publishes auditstream's transfer SDK messages (test/fixtures/auditstream-transfer, written from
// its documented shapes) to real JetStream and checks each one is stored in VictoriaLogs with its
// object_id as sent.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { jetstream } from '@nats-io/jetstream';
import { headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { startEngine } from '../../helpers/engine.ts';
import { serverEnv, uniqueName } from '../../helpers/servers.ts';
import { deleteStreams, natsConnect, natsToVictoria, streamMessages, vlQuery, waitFor } from './helpers.ts';

const FIXTURES = path.resolve(import.meta.dirname, '../../fixtures/auditstream-transfer');
interface Fixture {
  readonly headers: Record<string, string>;
  readonly payload: string;
  readonly object_id: unknown;
}
const fixtures = readdirSync(FIXTURES).filter((f) => f.endsWith('.json'))
  .map((name) => [name, JSON.parse(readFileSync(path.join(FIXTURES, name), 'utf8')) as Fixture] as const);

describe('auditstream transfer SDK messages replayed', () => {
  let nc: NatsConnection;
  const namespace = uniqueName('tfx');
  const stream = 'logs';
  before(async () => {
    nc = await natsConnect();
  });
  after(async () => {
    await deleteStreams(nc, `${namespace}_${stream}`, `${namespace}_${stream}_dlq`);
    await nc.close();
  });

  it('stores every fixture once, object_id kept as sent (int, string, array), with and without Nats-Msg-Id, raw bytes too', async () => {
    const tag = uniqueName('transfer-fixtures');
    const engine = await startEngine(natsToVictoria({ namespace, stream, victoriaUrl: serverEnv('VICTORIA_URL') }));
    try {
      const js = jetstream(nc);
      for (const [, f] of fixtures) {
        const h = natsHeaders();
        for (const [k, v] of Object.entries(f.headers)) h.set(k, v.replace('transfer-fixture', `${namespace}-fixture`));
        await js.publish(`${namespace}.${stream}`, f.payload.replace('${STREAM}', tag), Object.keys(f.headers).length ? { headers: h } : undefined);
      }
      const rows = await waitFor('every fixture in VictoriaLogs', async () => {
        const found = await vlQuery(`stream:${JSON.stringify(tag)}`);
        return found.length >= fixtures.length ? found : undefined;
      });
      assert.equal(rows.length, fixtures.length);
      for (const [name, f] of fixtures) {
        const msg = JSON.parse(f.payload.replace('${STREAM}', tag)).msg;
        const row = rows.find((r) => r._msg === msg);
        assert.ok(row, name);
        // VictoriaLogs keeps field values as text: a number or array as its JSON.
        assert.equal(row.object_id, typeof f.object_id === 'string' ? f.object_id : JSON.stringify(f.object_id), name);
        if (f.headers['Nats-Msg-Id']) assert.equal(row.id, `${namespace}-fixture-1`, name);
      }
      await waitFor('the stream to be drained', async () => (await streamMessages(nc, `${namespace}_${stream}`)) === 0);
    } finally {
      await engine.stop();
    }
  });
});
