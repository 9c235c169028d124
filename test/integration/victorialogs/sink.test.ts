import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { validateSection } from '../../../src/core/config.ts';
import { toEvent } from '../../../src/core/event.ts';
import { createLogger } from '../../../src/core/logger.ts';
import type { ComponentContext } from '../../../src/core/component.ts';
import type { Batch, PipelineName } from '../../../src/core/types.ts';
import { victoriaLogsSink, type VictoriaLogsSinkConfig } from '../../../src/sinks/victorialogs/index.ts';
import { VictoriaLogsSink } from '../../../src/sinks/victorialogs/sink.ts';
import { serverEnv, uniqueName } from '../../helpers/servers.ts';
import { storedIds, vlQuery } from '../nats/helpers.ts';

function sink(options: Record<string, unknown>): VictoriaLogsSink {
  const { config, problems } = validateSection<VictoriaLogsSinkConfig>(victoriaLogsSink.schema, { url: serverEnv('VICTORIA_URL'), stream_fields: ['stream'], ...options }, 'sink');
  assert.deepEqual(problems, []);
  const context = { pipeline: 'p', name: 'victorialogs', logger: createLogger('silent'), metrics: new Registry() } as unknown as ComponentContext;
  return new VictoriaLogsSink(config!, context);
}

function batch(tag: string, count: number): Batch {
  const events = Array.from({ length: count }, (_, i) => toEvent({ id: `${tag}-${i}`, stream: tag, msg: `line ${i}\nsecond line`, nested: { deep: i } }, { actorField: 'actorId' }));
  return { pipeline: 'p' as PipelineName, seq: 1, events, bytes: 0 };
}

describe('VictoriaLogs sink against VictoriaLogs', () => {
  it('gzip, tenant headers, extra and ignored fields reach VictoriaLogs as configured', async () => {
    const tag = uniqueName('tenant');
    const writer = sink({ gzip: true, account_id: 7, project_id: 3, extra_fields: { env: 'ci' }, ignore_fields: ['nested.deep'] });
    await writer.start();
    await writer.write(batch(tag, 20), new AbortController().signal);
    await writer.close();
    const tenant = { AccountID: '7', ProjectID: '3' };
    assert.equal((await storedIds(tag, tenant)).size, 20);
    assert.equal((await storedIds(tag)).size, 0, 'nothing in the default tenant');
    const [row] = await vlQuery(`id:${JSON.stringify(`${tag}-3`)}`, tenant);
    assert.equal(row!._msg, 'line 3\nsecond line');
    assert.equal(row!.env, 'ci');
    assert.equal(row!['nested.deep'], undefined);
  });

  it('throws on a non-2xx answer with the status, and honours the abort signal', async () => {
    const writer = sink({ path: '/insert/no-such-endpoint' });
    await assert.rejects(writer.write(batch(uniqueName('bad'), 1), new AbortController().signal), /VictoriaLogs answered HTTP 4\d\d/);
    assert.equal(writer.healthy(), false);
    const aborted = new AbortController();
    aborted.abort(new Error('attempt timed out'));
    await assert.rejects(writer.write(batch(uniqueName('abort'), 1), aborted.signal), /VictoriaLogs request failed/);
    await writer.close();
  });
});
