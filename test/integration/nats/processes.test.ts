/**
 * auditpipe as deployed: `node src/cli/main.ts run --config FILE` child processes against the real
 * NATS and VictoriaLogs. The FailingForwarder relay (loopback, in front of the real VictoriaLogs)
 * holds a write open so that SIGTERM lands while a flush is in progress.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { NatsConnection } from '@nats-io/transport-node';
import { newAuditEvent, Transfer } from '../../../src/client/index.ts';
import { serverEnv, uniqueName } from '../../helpers/servers.ts';
import { deleteStreams, FailingForwarder, natsConnect, natsToVictoria, runCli, storedIds, streamMessages, waitFor, type Child } from './helpers.ts';

describe('auditpipe processes on a NATS stream', () => {
  let nc: NatsConnection;
  const streams: string[] = [];
  const children: Child[] = [];
  before(async () => {
    nc = await natsConnect();
  });
  after(async () => {
    for (const child of children) if (child.process.exitCode === null) child.process.kill('SIGKILL');
    await deleteStreams(nc, ...streams);
    await nc.close();
  });

  function start(config: Record<string, unknown>): Child {
    const child = runCli(config);
    children.push(child);
    return child;
  }

  async function consuming(child: Child) {
    await waitFor('the process to consume', () => {
      if (child.process.exitCode !== null) throw new Error(`exited ${child.process.exitCode}: ${child.output()}`);
      return child.output().includes('nats source consuming');
    });
  }

  async function publish(namespace: string, stream: string, tag: string, count: number): Promise<string[]> {
    const transfer = new Transfer(nc, namespace);
    const ids: string[] = [];
    for (let i = 0; i < count; i += 1) {
      const event = newAuditEvent(tag, `event ${i}`);
      ids.push(event.id);
      await transfer.publishAsync(stream, event);
    }
    await transfer.flush();
    return ids;
  }

  function names(prefix: string) {
    const namespace = uniqueName(prefix);
    streams.push(`${namespace}_logs`, `${namespace}_logs_dlq`);
    return { namespace, stream: 'logs', tag: uniqueName('tag') };
  }

  const settings = (namespace: string, stream: string, victoriaUrl: string, extra: Record<string, unknown> = {}) => ({
    shutdown_timeout_ms: 3_000,
    ...natsToVictoria({
      namespace, stream, victoriaUrl,
      pipeline: { batch: { max_events: 50, interval_ms: 100, max_in_flight: 2 } },
      source: { ack_wait_ms: 8_000, pull_batch: 50 },
      sink: { retry: { max_attempts: 3, initial_backoff_ms: 100, max_backoff_ms: 500, max_elapsed_ms: 4_000, timeout_ms: 4_000 } },
      ...extra,
    }),
  });

  it('SIGTERM during a flush: the final flush completes and is acked, exit code 0', async () => {
    const { namespace, stream, tag } = names('sigterm_ok');
    const forwarder = new FailingForwarder();
    const url = await forwarder.start();
    try {
      const child = start(settings(namespace, stream, url));
      await consuming(child);
      forwarder.mode = 'hold';
      const ids = await publish(namespace, stream, tag, 200);
      await waitFor('a write held open', () => forwarder.heldCount() > 0);
      child.process.kill('SIGTERM');
      await waitFor('shutdown to start', () => child.output().includes('shutting down'));
      forwarder.release();
      assert.equal(await child.exited, 0, child.output());
      const stored = await storedIds(tag);
      // What the process took was written and acked; what it never took is still in the stream.
      const left = await streamMessages(nc, `${namespace}_logs`);
      assert.equal(stored.size + left, 200, `stored ${stored.size}, left ${left}`);
      assert.ok(stored.size > 0);
      // A second process takes the rest: nothing is missing.
      const next = start(settings(namespace, stream, serverEnv('VICTORIA_URL')));
      await consuming(next);
      const all = await waitFor('all 200 events', async () => {
        const counts = await storedIds(tag);
        return counts.size === 200 ? counts : undefined;
      });
      assert.deepEqual([...all.keys()].sort(), ids.sort());
      next.process.kill('SIGTERM');
      assert.equal(await next.exited, 0);
    } finally {
      await forwarder.stop();
    }
  });

  it('SIGTERM during a flush that cannot finish: messages stay unacked, the next process delivers them', async () => {
    const { namespace, stream, tag } = names('sigterm_nak');
    const forwarder = new FailingForwarder();
    const url = await forwarder.start();
    try {
      const child = start(settings(namespace, stream, url));
      await consuming(child);
      forwarder.mode = 'hold';
      const ids = await publish(namespace, stream, tag, 200);
      await waitFor('a write held open', () => forwarder.heldCount() > 0);
      child.process.kill('SIGTERM');
      const code = await child.exited;
      assert.equal(code, 0, child.output());
      forwarder.dropHeld();
      assert.equal((await storedIds(tag)).size, 0, 'the held writes never reached VictoriaLogs');
      assert.equal(await streamMessages(nc, `${namespace}_logs`), 200, 'nothing was acked');
      const next = start(settings(namespace, stream, serverEnv('VICTORIA_URL')));
      await consuming(next);
      const all = await waitFor('all 200 events from the next process', async () => {
        const counts = await storedIds(tag);
        return counts.size === 200 ? counts : undefined;
      });
      assert.deepEqual([...all.keys()].sort(), ids.sort());
      await waitFor('the stream to be drained', async () => (await streamMessages(nc, `${namespace}_logs`)) === 0);
      next.process.kill('SIGTERM');
      assert.equal(await next.exited, 0);
    } finally {
      await forwarder.stop();
    }
  });

  it('two processes on one stream split the work; the union of what they wrote is what was published', async () => {
    const { namespace, stream, tag } = names('twoproc');
    const a = start(settings(namespace, stream, serverEnv('VICTORIA_URL'), { sink: { extra_fields: { writer: 'a' }, retry: { timeout_ms: 4_000 } } }));
    await consuming(a);
    const b = start(settings(namespace, stream, serverEnv('VICTORIA_URL'), { sink: { extra_fields: { writer: 'b' }, retry: { timeout_ms: 4_000 } } }));
    await consuming(b);
    const ids = await publish(namespace, stream, tag, 3_000);
    await waitFor('the stream to be drained', async () => (await streamMessages(nc, `${namespace}_logs`)) === 0, 120_000);
    const { vlQuery } = await import('./helpers.ts');
    const rows = await waitFor('3,000 rows', async () => {
      const found = await vlQuery(`stream:${JSON.stringify(tag)} | fields id, writer`);
      return found.length >= 3_000 ? found : undefined;
    });
    const union = new Set(rows.map((row) => row.id));
    assert.deepEqual([...union].sort(), ids.sort());
    assert.equal(rows.length, 3_000, 'no event written twice');
    const byWriter = { a: rows.filter((r) => r.writer === 'a').length, b: rows.filter((r) => r.writer === 'b').length };
    assert.ok(byWriter.a > 0 && byWriter.b > 0, `both processes wrote: ${JSON.stringify(byWriter)}`);
    for (const child of [a, b]) child.process.kill('SIGTERM');
    assert.deepEqual(await Promise.all([a.exited, b.exited]), [0, 0]);
  });
});
