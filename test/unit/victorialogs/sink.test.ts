import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validateSection } from '../../../src/core/config.ts';
import { toEvent } from '../../../src/core/event.ts';
import type { Batch, PipelineName } from '../../../src/core/types.ts';
import { victoriaLogsSink, type VictoriaLogsSinkConfig } from '../../../src/sinks/victorialogs/index.ts';
import { ingestPath, ndjson, requestHeaders } from '../../../src/sinks/victorialogs/sink.ts';

function config(overrides: Record<string, unknown> = {}): VictoriaLogsSinkConfig {
  const result = validateSection<VictoriaLogsSinkConfig>(victoriaLogsSink.schema, overrides, 'sink');
  assert.deepEqual(result.problems, []);
  return result.config!;
}

function problems(overrides: Record<string, unknown>): string[] {
  return validateSection(victoriaLogsSink.schema, overrides, 'sink').problems;
}

describe('victorialogs sink request', () => {
  it('builds the ingest URL from keys, encoded, never by concatenating raw strings', () => {
    const path = ingestPath(config({
      url: 'http://127.0.0.1:9428/proxy/',
      stream_fields: ['stream', 'platform'],
      ignore_fields: ['extra.body'],
      extra_fields: { env: 'prod', team: 'a&b' },
    }));
    const url = new URL(path, 'http://x');
    assert.equal(url.pathname, '/proxy/insert/jsonline');
    assert.equal(url.searchParams.get('_stream_fields'), 'stream,platform');
    assert.equal(url.searchParams.get('_msg_field'), 'msg');
    assert.equal(url.searchParams.get('_time_field'), 'time');
    assert.equal(url.searchParams.get('ignore_fields'), 'extra.body');
    assert.equal(url.searchParams.get('extra_fields'), 'env=prod,team=a&b');
  });

  it('omits empty stream and ignore fields', () => {
    const url = new URL(ingestPath(config()), 'http://x');
    assert.equal(url.searchParams.has('_stream_fields'), false);
    assert.equal(url.searchParams.has('ignore_fields'), false);
  });

  it('sends tenant headers only for a non-default tenant, and gzip/auth when configured', () => {
    assert.deepEqual(requestHeaders(config()), { 'content-type': 'application/stream+json' });
    const headers = requestHeaders(config({ account_id: 3, project_id: 0, gzip: true, bearer_token: 's3cret' }));
    assert.equal(headers.AccountID, '3');
    assert.equal(headers.ProjectID, '0');
    assert.equal(headers['content-encoding'], 'gzip');
    assert.equal(headers.authorization, 'Bearer s3cret');
    const basic = requestHeaders(config({ username: 'u', password: 'p' }));
    assert.equal(basic.authorization, `Basic ${Buffer.from('u:p').toString('base64')}`);
  });

  it('writes one valid JSON line per event, even for values with newlines', () => {
    const events = [
      toEvent({ msg: 'line one\nline two', nested: { a: '\r\n' } }, { actorField: 'user_id' }),
      toEvent({ msg: 'plain', user_id: '7' }, { actorField: 'user_id' }),
    ];
    const batch: Batch = { pipeline: 'p' as PipelineName, seq: 1, events, bytes: 0 };
    const body = ndjson(batch);
    assert.ok(body.endsWith('\n'));
    const lines = body.slice(0, -1).split('\n');
    assert.equal(lines.length, 2);
    assert.deepEqual(lines.map((line) => JSON.parse(line)), events.map((event) => event.data));
  });

  it('rejects URLs with credentials, queries or other schemes and bad extra fields', () => {
    assert.match(problems({ url: 'ftp://h:1' }).join(), /http/);
    assert.match(problems({ url: 'http://user:pw@h:1' }).join(), /credentials/);
    assert.match(problems({ url: 'http://h:1/?a=b' }).join(), /query/);
    assert.match(problems({ extra_fields: { 'a=b': 'x' } }).join(), /field name/);
    assert.match(problems({ extra_fields: { a: 'x,y' } }).join(), /","/);
    assert.match(problems({ nope: 1 }).join(), /unknown key "nope"/);
  });
});
