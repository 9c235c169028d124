import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import { toEvent, type Batch, type PipelineName } from '../../../src/public/index.ts';
import { validateSection } from '../../../src/core/config.ts';
import {
  batchKey, checkpointKey, encodeBatch, keySegment, metadataId, normalisePrefix, parseRetention,
} from '../../../src/sinks/s3/object.ts';
import { s3Settings, s3SinkSchema, type S3SinkConfig } from '../../../src/sinks/s3/index.ts';

const event = (id: string, time = '2026-11-22T14:03:12.345Z', extra: Record<string, unknown> = {}) =>
  toEvent({ id, time, actorId: 'alice', msg: 'hello', ...extra }, { actorField: 'actorId' });

const batchOf = (...events: ReturnType<typeof event>[]): Batch => ({
  pipeline: 'main' as PipelineName,
  seq: 1,
  events,
  bytes: events.reduce((n, e) => n + e.bytes, 0),
});

describe('s3 object key', () => {
  it('is {prefix}/{pipeline}/{yyyy}/{mm}/{dd}/{hh}/{stamp}-{ids}.ndjson.gz from the earliest event time (UTC)', () => {
    const key = batchKey('audit/', 'main', [event('b', '2026-11-22T15:10:00.000Z'), event('a', '2026-11-22T15:03:12.345+01:00'), event('c')]);
    assert.match(key, /^audit\/main\/2026\/11\/22\/14\/20261122T140312\.345Z-[0-9a-f]{32}\.ndjson\.gz$/);
  });

  it('depends only on the set of events, not their order, so a retried batch maps to the same key', () => {
    const first = batchKey('p', 'main', [event('a'), event('b', '2026-11-22T14:03:13.000Z'), event('c')]);
    assert.equal(batchKey('p', 'main', [event('b', '2026-11-22T14:03:13.000Z'), event('c'), event('a')]), first);
    assert.notEqual(batchKey('p', 'main', [event('a'), event('b')]), first);
    assert.notEqual(batchKey('p', 'main', [event('a'), event('b'), event('d')]), first);
  });

  it('cannot be confused by ids that contain the separator', () => {
    assert.notEqual(batchKey('p', 'm', [event('a\nb'), event('c')]), batchKey('p', 'm', [event('a'), event('b\nc')]));
  });

  it('drops an empty prefix and encodes a pipeline name that is not plainly safe', () => {
    assert.match(batchKey('', 'main', [event('a')]), /^main\/2026\//);
    assert.equal(normalisePrefix('//a/b//'), 'a/b');
    assert.equal(keySegment('team a/b'), 'team%20a%2Fb');
    assert.equal(keySegment('main-1.x_y'), 'main-1.x_y');
  });

  it('refuses an empty batch', () => {
    assert.throws(() => batchKey('p', 'main', []), /empty batch/);
  });
});

describe('s3 object body and metadata', () => {
  it('is the gzip of one stored event per line, with SHA-256 of the uncompressed content, count, first and last id', () => {
    const events = [event('e1'), event('e2', undefined, { nested: { a: [1, 2] } }), event('e3')];
    const object = encodeBatch('audit', batchOf(...events));
    const plain = gunzipSync(object.body);
    assert.equal(plain.toString('utf8'), events.map((e) => e.json + '\n').join(''));
    assert.equal(object.contentSha256, createHash('sha256').update(plain).digest('hex'));
    assert.equal(object.bodySha256, createHash('sha256').update(object.body).digest('base64'));
    assert.equal(object.bodyMd5, createHash('md5').update(object.body).digest('base64'));
    assert.deepEqual(object.metadata, {
      'content-sha256': object.contentSha256,
      'event-count': '3',
      'first-event-id': 'e1',
      'last-event-id': 'e3',
    });
  });

  it('stores ids in metadata as ASCII: URI-encoded, or their SHA-256 when very long', () => {
    assert.equal(metadataId('évent:1'), '%C3%A9vent%3A1');
    const long = 'ü'.repeat(256);
    assert.equal(metadataId(long), `sha256:${createHash('sha256').update(long).digest('hex')}`);
  });
});

describe('s3 checkpoint key', () => {
  it('is {prefix}/{pipeline}/checkpoints/{number, 12 digits}-{stamp}-{sha256}.json, so keys list in checkpoint order', () => {
    const hash = 'ab'.repeat(32);
    assert.equal(checkpointKey('audit', 'main', { number: 42, time: '2026-11-22T14:00:00.000Z' }, hash), `audit/main/checkpoints/000000000042-20261122T140000.000Z-${hash}.json`);
    assert.ok(checkpointKey('a', 'm', { number: 9, time: '2026-11-22T14:00:00.000Z' }, hash) < checkpointKey('a', 'm', { number: 10, time: '2026-11-22T13:00:00.000Z' }, hash));
  });
});

describe('s3 retention and config', () => {
  it('parses retention as a number and a unit', () => {
    assert.equal(parseRetention('90s'), 90);
    assert.equal(parseRetention('12h'), 43_200);
    assert.equal(parseRetention('30d'), 2_592_000);
    assert.equal(parseRetention('7y'), 7 * 365 * 86_400);
    for (const bad of ['', '0d', '-1d', '5', 'd', '1w', '1.5d', '30 days']) assert.equal(parseRetention(bad), undefined, bad);
  });

  const validate = (value: Record<string, unknown>) => validateSection<S3SinkConfig>(s3SinkSchema, value, 'sinks[0] (s3)');

  it('applies defaults: COMPLIANCE, 365 days, SHA-256 checksum, conditional PUT, checkpoint anchoring on', () => {
    const { config, problems } = validate({ bucket: 'audit-logs' });
    assert.deepEqual(problems, []);
    const settings = s3Settings(config!);
    assert.equal(settings.lockMode, 'COMPLIANCE');
    assert.equal(settings.retentionSeconds, 365 * 86_400);
    assert.equal(settings.checksum, 'sha256');
    assert.equal(settings.dedup, 'if-none-match');
    assert.equal(settings.credentials, undefined);
    assert.equal(config!.anchor_checkpoints, true);
  });

  it('names the key and what is expected for bad values and unknown keys', () => {
    const { problems } = validate({ bucket: 'Bad_Bucket', lock_mode: 'forever', retention: '3 weeks', checksum: 'crc32', colour: 'red' });
    const text = problems.join('\n');
    assert.match(text, /bucket.*S3 bucket name/);
    assert.match(text, /lock_mode.*COMPLIANCE.*GOVERNANCE|lock_mode/);
    assert.match(text, /retention.*duration like 90s/);
    assert.match(text, /checksum/);
    assert.match(text, /unknown key "colour"/);
  });

  it('requires a bucket', () => {
    assert.match(validate({}).problems.join('\n'), /bucket.*S3 bucket name/);
  });

  it('requires both parts of a static key pair, and never puts the secret in the message', () => {
    const { config } = validate({ bucket: 'audit-logs', secret_access_key: 'hunter2-secret' });
    assert.throws(() => s3Settings(config!), (error: Error) => /access_key_id.*secret_access_key/.test(error.message) && !error.message.includes('hunter2'));
  });
});
