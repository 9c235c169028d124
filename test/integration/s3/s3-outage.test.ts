import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEngine, type TestEngine } from '../../helpers/engine.ts';
import { serverCtl, uniqueName } from '../../helpers/servers.ts';
import { bucketName, createBucket, listVersions, ndjsonEvents, readObject, s3Client, s3SinkConfig } from './s3-helpers.ts';

/** Attempts of the sink that failed so far (the engine's own metric). */
async function failedAttempts(t: TestEngine): Promise<number> {
  const metric = await t.engine.metrics.registry.getSingleMetric('auditpipe_sink_writes_total')!.get();
  return metric.values.filter((v) => v.labels.outcome === 'error').reduce((n, v) => n + v.value, 0);
}

describe('S3 server down during a run', () => {
  const client = s3Client();
  let t: TestEngine;
  let bucket: string;
  const run = uniqueName('outage');
  const post = (ids: string[]) => fetch(`${t.url()}/v1/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-ndjson' },
    body: ids.map((id, i) => JSON.stringify({ id, actorId: `actor-${i % 3}` })).join('\n') + '\n',
  });

  before(async () => {
    bucket = await createBucket(client, bucketName('ap-outage'), 'locked');
    t = await startEngine({
      pipelines: [{
        name: 'test',
        source: { type: 'http', listen: '127.0.0.1:0' },
        batch: { max_events: 100, interval_ms: 20 },
        // Retry long enough to outlast the outage, so the request waits instead of getting a 503.
        sinks: [s3SinkConfig(bucket, { prefix: run, connect_timeout_ms: 1000, retry: { max_attempts: 1000, initial_backoff_ms: 50, max_backoff_ms: 500, max_elapsed_ms: 300_000, timeout_ms: 3000 } })],
      }],
    });
  });
  after(async () => {
    await serverCtl('start', 's3').catch(() => undefined);
    await t.stop();
  });

  it('acks nothing while the server is down, then writes everything exactly once', async () => {
    const beforeIds = Array.from({ length: 150 }, (_, i) => `${run}-before-${i}`);
    assert.equal((await post(beforeIds)).status, 200);

    await serverCtl('stop', 's3');
    const duringIds = Array.from({ length: 250 }, (_, i) => `${run}-during-${i}`);
    let answered = false;
    const during = post(duringIds).then(async (res) => {
      answered = true;
      return { status: res.status, body: await res.text() };
    });
    // Wait until the sink has really tried and failed against the stopped server.
    while ((await failedAttempts(t)) < 2) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(answered, false, 'no answer while S3 is down');
    const readyz = await fetch(`${t.url()}/readyz`);
    await readyz.arrayBuffer();
    assert.equal(readyz.status, 503, '/readyz reports the required sink down');

    await serverCtl('start', 's3');
    const answer = await during;
    assert.equal(answer.status, 200, answer.body);

    const { versions, deleteMarkers } = await listVersions(client, bucket, `${run}/`);
    assert.equal(deleteMarkers.length, 0);
    assert.equal(new Set(versions.map((v) => v.key)).size, versions.length, 'one version per key');
    const ids: string[] = [];
    for (const version of versions) {
      for (const event of ndjsonEvents((await readObject(client, bucket, version.key, version.versionId)).body)) ids.push(String(event.id));
    }
    assert.equal(ids.length, beforeIds.length + duringIds.length, 'each event once');
    assert.deepEqual(new Set(ids), new Set([...beforeIds, ...duringIds]));
  });
});
