import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { startEngine } from '../../helpers/engine.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const PLUGINS = path.join(ROOT, 'test/fixtures/plugins-example.json');

/** Reads one sample from Prometheus text exposition. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && line.split(' ')[0] !== name) continue;
    const labelText = /\{(.*)\}/.exec(line)?.[1] ?? '';
    const have = Object.fromEntries([...labelText.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

describe('/metrics after known traffic', () => {
  it('counts received, acked, nacked, rejected, retries and HTTP requests exactly', async () => {
    const t = await startEngine({
      pipelines: [{
        name: 'test',
        source: { type: 'http', listen: '127.0.0.1:0' },
        batch: { max_events: 100, interval_ms: 5 },
        nak_delay_ms: 1000,
        sinks: [
          { type: 'ndjson_file', name: 'file', path: 'out.ndjson', retry: { max_attempts: 3, initial_backoff_ms: 1, max_elapsed_ms: 2000 } },
          { type: 'console', name: 'spare', required: false, fd: 2 },
        ],
      }],
    }, { pluginsFile: PLUGINS });
    const post = (body: string, type = 'application/x-ndjson') =>
      fetch(t.url() + '/v1/events', { method: 'POST', headers: { 'content-type': type }, body });
    try {
      assert.equal((await post('{"id":"a"}\n{"id":"b"}\n{"id":"c"}\n')).status, 200); // 3 acked
      assert.equal((await post('{"id":"d"}\n{nope\n{"id":1}\n')).status, 207); // 1 acked, 1 malformed, 1 invalid
      assert.equal((await post('{"id":', 'application/json')).status, 400); // 1 malformed body
      const stored = path.join(t.dir, 'data', 'out.ndjson');
      rmSync(stored);
      mkdirSync(stored);
      assert.equal((await post('{"id":"e"}\n{"id":"f"}\n')).status, 503); // 2 nacked after 3 attempts
      rmSync(stored, { recursive: true });
      assert.equal((await fetch(t.url() + '/v2/none')).status, 404);

      const text = await (await fetch(t.url() + '/metrics')).text();
      const p = { pipeline: 'test' };
      assert.equal(sample(text, 'auditpipe_events_received_total', { ...p, source: 'http' }), 6);
      assert.equal(sample(text, 'auditpipe_events_acked_total', p), 4);
      assert.equal(sample(text, 'auditpipe_events_nacked_total', p), 2);
      assert.equal(sample(text, 'auditpipe_inputs_rejected_total', { ...p, reason: 'malformed_json' }), 2);
      assert.equal(sample(text, 'auditpipe_inputs_rejected_total', { ...p, reason: 'invalid_event' }), 1);
      assert.equal(sample(text, 'auditpipe_sink_retries_total', { ...p, sink: 'file' }), 2);
      assert.equal(sample(text, 'auditpipe_sink_writes_total', { ...p, sink: 'file', outcome: 'gave_up' }), 1);
      assert.equal(sample(text, 'auditpipe_sink_writes_total', { ...p, sink: 'file', outcome: 'success' }), 2);
      assert.equal(sample(text, 'auditpipe_http_requests_total', { ...p, route: '/v1/events', status: '200' }), 1);
      assert.equal(sample(text, 'auditpipe_http_requests_total', { ...p, route: '/v1/events', status: '207' }), 1);
      assert.equal(sample(text, 'auditpipe_http_requests_total', { ...p, route: '/v1/events', status: '503' }), 1);
      assert.equal(sample(text, 'auditpipe_http_requests_total', { ...p, route: 'unmatched', status: '404' }), 1);
      assert.ok(!text.includes('/v2/none'), 'raw paths never become labels');
      assert.equal(sample(text, 'auditpipe_batch_events_count', p), 3);
    } finally {
      await t.stop();
    }
  });
});

describe('/readyz', () => {
  it('is 200 while running and 503 while draining', async () => {
    const t = await startEngine({
      pipelines: [{
        name: 'test',
        source: { type: 'http', listen: '127.0.0.1:0' },
        batch: { max_events: 1000, interval_ms: 60_000 },
        sinks: [{ type: 'ndjson_file', path: 'slow.ndjson' }],
      }],
      shutdown_timeout_ms: 3000,
    }, { pluginsFile: PLUGINS });
    const base = t.url();
    assert.equal((await fetch(base + '/readyz')).status, 200);
    // An event waits in the buffer (long interval) so the drain has work to do while we ask.
    const pending = fetch(base + '/v1/events', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"id":"late"}' });
    await new Promise((r) => setTimeout(r, 100));
    const stopping = t.stop();
    const res = await fetch(base + '/readyz').catch(() => undefined);
    // Either the listener is already closed to new connections or it answers 503: never 200.
    if (res) {
      assert.equal(res.status, 503);
      assert.equal((await res.json()).state, 'draining');
    }
    assert.equal((await pending).status, 200, 'the buffered event is flushed and answered during the drain');
    await stopping;
  });
});
