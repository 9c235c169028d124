import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  DeleteObjectCommand, GetObjectRetentionCommand, PutObjectCommand, PutObjectRetentionCommand, type S3Client,
} from '@aws-sdk/client-s3';
import { after, before, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { toEvent, type Batch, type PipelineName } from '../../../src/public/index.ts';
import { s3Settings, s3SinkSchema, type S3SinkConfig } from '../../../src/sinks/s3/index.ts';
import { S3Sink } from '../../../src/sinks/s3/sink.ts';
import { checkpointAnchorsToken, FIRST_PREVIOUS, signCheckpoint, type CheckpointAnchor } from '../../../src/security/checkpoint.ts';
import { compareAnchors, readAnchoredCheckpoints } from '../../../src/sinks/s3/anchors.ts';
import { generateKeyPairSync } from 'node:crypto';
import { validateSection } from '../../../src/core/config.ts';
import { startEngine, type TestEngine } from '../../helpers/engine.ts';
import { uniqueName } from '../../helpers/servers.ts';
import {
  bucketName, componentContext, createBucket, headMetadata, listVersions, ndjsonEvents, readObject, s3Client, s3SinkConfig,
} from './s3-helpers.ts';

const EVENTS = 10_000;
const PER_REQUEST = 500;

function makeEvents(run: string, count: number): Array<Record<string, unknown>> {
  return Array.from({ length: count }, (_, i) => ({
    id: `${run}-${i}`,
    actorId: `actor-${i % 25}`,
    action: 'document.read',
    msg: `event ${i}`,
    n: i,
  }));
}

async function postEvents(url: string, events: Array<Record<string, unknown>>): Promise<Response> {
  return fetch(`${url}/v1/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-ndjson' },
    body: events.map((e) => JSON.stringify(e)).join('\n') + '\n',
  });
}

/** Posts all events in requests of PER_REQUEST, four at a time; returns the statuses. */
async function postAll(url: string, events: Array<Record<string, unknown>>): Promise<number[]> {
  const statuses: number[] = [];
  const chunks: Array<Array<Record<string, unknown>>> = [];
  for (let i = 0; i < events.length; i += PER_REQUEST) chunks.push(events.slice(i, i + PER_REQUEST));
  for (let i = 0; i < chunks.length; i += 4) {
    const answers = await Promise.all(chunks.slice(i, i + 4).map(async (chunk) => {
      const res = await postEvents(url, chunk);
      await res.arrayBuffer();
      return res.status;
    }));
    statuses.push(...answers);
  }
  return statuses;
}

/** Every event of every object version under the prefix, with per-object checks of the metadata. */
async function readBack(client: S3Client, bucket: string, prefix: string) {
  const { versions, deleteMarkers } = await listVersions(client, bucket, prefix);
  const ids: string[] = [];
  for (const version of versions) {
    const { body, metadata } = await readObject(client, bucket, version.key, version.versionId);
    const plain = gunzipSync(body);
    assert.equal(metadata['content-sha256'], createHash('sha256').update(plain).digest('hex'), `content-sha256 of ${version.key}`);
    const events = ndjsonEvents(body);
    assert.equal(metadata['event-count'], String(events.length), `event-count of ${version.key}`);
    assert.equal(metadata['first-event-id'], encodeURIComponent(String(events[0]!.id)));
    assert.equal(metadata['last-event-id'], encodeURIComponent(String(events.at(-1)!.id)));
    for (const event of events) ids.push(String(event.id));
  }
  return { versions, deleteMarkers, ids };
}

describe('S3 Object Lock sink against the real S3 server', () => {
  const client = s3Client();
  let bucket: string;

  before(async () => {
    bucket = await createBucket(client, bucketName('ap-s3'), 'locked');
  });

  describe('10,000 events through an engine', () => {
    let t: TestEngine;
    const run = uniqueName('s3run');
    const sent = makeEvents(run, EVENTS);

    before(async () => {
      t = await startEngine({
        pipelines: [{
          name: 'test',
          source: { type: 'http', listen: '127.0.0.1:0', max_events_per_request: PER_REQUEST },
          batch: { max_events: 500, interval_ms: 20 },
          sinks: [s3SinkConfig(bucket, { prefix: run })],
        }],
      });
    });
    after(() => t.stop());

    it('acks every request, and the objects give back exactly the events, each once, with matching SHA-256', async () => {
      const statuses = await postAll(t.url(), sent);
      assert.deepEqual(statuses, statuses.map(() => 200));
      const { versions, deleteMarkers, ids } = await readBack(client, bucket, `${run}/test/`);
      assert.equal(deleteMarkers.length, 0);
      assert.equal(new Set(versions.map((v) => v.key)).size, versions.length, 'one version per key');
      assert.equal(ids.length, EVENTS, 'no event twice');
      assert.deepEqual(new Set(ids), new Set(sent.map((e) => e.id)));
      for (const version of versions) assert.match(version.key, new RegExp(`^${run}/test/\\d{4}/\\d{2}/\\d{2}/\\d{2}/\\d{8}T\\d{6}\\.\\d{3}Z-[0-9a-f]{32}\\.ndjson\\.gz$`));
    });

    it('stores each event exactly as the other sinks get it', async () => {
      const { versions } = await listVersions(client, bucket, `${run}/test/`);
      const events = ndjsonEvents((await readObject(client, bucket, versions[0]!.key)).body);
      const original = sent.find((e) => e.id === events[0]!.id)!;
      const { time, ...rest } = events[0]!;
      assert.deepEqual(rest, original);
      assert.match(String(time), /^\d{4}-\d{2}-\d{2}T/);
    });

    it('locks every object in COMPLIANCE mode until about now + retention', async () => {
      const { versions } = await listVersions(client, bucket, `${run}/test/`);
      for (const version of versions.slice(0, 5)) {
        const retention = await client.send(new GetObjectRetentionCommand({ Bucket: bucket, Key: version.key, VersionId: version.versionId }));
        assert.equal(retention.Retention?.Mode, 'COMPLIANCE');
        assert.ok(retention.Retention!.RetainUntilDate!.getTime() > Date.now(), 'retain-until lies in the future');
      }
    });

    it('a locked object cannot be deleted, shortened or overwritten: the server refuses', async () => {
      const { versions } = await listVersions(client, bucket, `${run}/test/`);
      const target = versions[0]!;
      const before = await readObject(client, bucket, target.key, target.versionId);

      // MinIO answers 400 "Object is WORM protected", AWS 403 AccessDenied; either way it refuses.
      const refused = (error: Error & { $metadata?: { httpStatusCode?: number } }) =>
        [400, 403].includes(error.$metadata?.httpStatusCode ?? 0) && /WORM|AccessDenied|locked|retention/i.test(`${error.name} ${error.message}`);
      await assert.rejects(client.send(new DeleteObjectCommand({ Bucket: bucket, Key: target.key, VersionId: target.versionId })), refused);
      await assert.rejects(client.send(new DeleteObjectCommand({ Bucket: bucket, Key: target.key, VersionId: target.versionId, BypassGovernanceRetention: true })), refused);
      await assert.rejects(
        client.send(new PutObjectRetentionCommand({ Bucket: bucket, Key: target.key, VersionId: target.versionId, Retention: { Mode: 'COMPLIANCE', RetainUntilDate: new Date(Date.now() + 1000) } })),
        refused,
      );
      await assert.rejects(
        client.send(new PutObjectCommand({ Bucket: bucket, Key: target.key, Body: 'forged', IfNoneMatch: '*' })),
        (error: Error & { $metadata?: { httpStatusCode?: number } }) => error.$metadata?.httpStatusCode === 412,
      );
      // A plain PUT only adds a newer version; the locked one stays, byte for byte.
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: target.key, Body: 'forged' }));
      const after = await readObject(client, bucket, target.key, target.versionId);
      assert.deepEqual(after.body, before.body);
      assert.deepEqual(after.metadata, before.metadata);
      // An unversioned delete only adds a delete marker; the locked version is still there.
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: target.key }));
      const still = await readObject(client, bucket, target.key, target.versionId);
      assert.deepEqual(still.body, before.body);
    });
  });

  describe('one batch retried', () => {
    const batchOf = (run: string): Batch => {
      const events = makeEvents(run, 50).map((e) => toEvent(e, { actorField: 'actorId' }));
      return { pipeline: 'direct' as PipelineName, seq: 1, events, bytes: events.reduce((n, e) => n + e.bytes, 0) };
    };
    const sinkWith = async (extra: Record<string, unknown>) => {
      const { config, problems } = validateSection<S3SinkConfig>(s3SinkSchema, (({ type: _type, ...rest }) => rest)(s3SinkConfig(bucket, extra)), 's3');
      assert.deepEqual(problems, []);
      const sink = new S3Sink(s3Settings(config!), componentContext());
      await sink.start();
      return sink;
    };

    for (const dedup of ['if-none-match', 'head-first'] as const) {
      for (const checksum of ['sha256', 'md5'] as const) {
        it(`writes one object version however often it is retried (dedup ${dedup}, checksum ${checksum})`, async () => {
          const run = uniqueName('retry');
          const sink = await sinkWith({ prefix: run, dedup, checksum });
          try {
            const batch = batchOf(run);
            await sink.write(batch, new AbortController().signal);
            await sink.write(batch, new AbortController().signal);
            await sink.write({ ...batch, seq: 2, events: [...batch.events].reverse() }, new AbortController().signal);
            const { versions, deleteMarkers } = await listVersions(client, bucket, `${run}/`);
            assert.equal(versions.length, 1, 'exactly one object version');
            assert.equal(deleteMarkers.length, 0);
            assert.equal(ndjsonEvents((await readObject(client, bucket, versions[0]!.key)).body).length, 50);
          } finally {
            await sink.close();
          }
        });
      }
    }

    it('sets a legal hold and GOVERNANCE mode when configured', async () => {
      const run = uniqueName('hold');
      const sink = await sinkWith({ prefix: run, lock_mode: 'GOVERNANCE', legal_hold: true });
      try {
        await sink.write(batchOf(run), new AbortController().signal);
        const { versions } = await listVersions(client, bucket, `${run}/`);
        const { GetObjectLegalHoldCommand } = await import('@aws-sdk/client-s3');
        const hold = await client.send(new GetObjectLegalHoldCommand({ Bucket: bucket, Key: versions[0]!.key, VersionId: versions[0]!.versionId }));
        assert.equal(hold.LegalHold?.Status, 'ON');
        const retention = await client.send(new GetObjectRetentionCommand({ Bucket: bucket, Key: versions[0]!.key, VersionId: versions[0]!.versionId }));
        assert.equal(retention.Retention?.Mode, 'GOVERNANCE');
        // Governance can be bypassed for retention, but the legal hold still refuses the delete.
        await assert.rejects(client.send(new DeleteObjectCommand({ Bucket: bucket, Key: versions[0]!.key, VersionId: versions[0]!.versionId, BypassGovernanceRetention: true })));
      } finally {
        await sink.close();
      }
    });

    it('aborts a write when the pipeline aborts it', async () => {
      const run = uniqueName('abort');
      const sink = await sinkWith({ prefix: run });
      try {
        const controller = new AbortController();
        controller.abort(new Error('write timed out'));
        await assert.rejects(sink.write(batchOf(run), controller.signal));
        const { versions } = await listVersions(client, bucket, `${run}/`);
        assert.equal(versions.length, 0);
      } finally {
        await sink.close();
      }
    });
  });

  describe('checkpoint anchoring', () => {
    it('provides an anchor that writes each signed checkpoint once as a locked object, and reads them back', async () => {
      const run = uniqueName('anchor');
      const context = componentContext('anchored');
      const { config } = validateSection<S3SinkConfig>(s3SinkSchema, (({ type: _type, ...rest }) => rest)(s3SinkConfig(bucket, { prefix: run })), 's3');
      const sink = new S3Sink(s3Settings(config!), context);
      sink.registerAnchor();
      await sink.start();
      try {
        const anchors = context.services.get(checkpointAnchorsToken('anchored')) as CheckpointAnchor[];
        assert.equal(anchors.length, 1);
        const keys = generateKeyPairSync('ed25519');
        const sign = (number: number, root: string) => signCheckpoint({ origin: 'auditpipe/anchored', number, time: '2026-11-22T14:00:00.000Z', actors: 1, events: number, root, previous: FIRST_PREVIOUS }, keys.privateKey, 'k1');
        const first = sign(1, 'a'.repeat(64));
        const second = sign(2, 'b'.repeat(64));
        await anchors[0]!.anchor(first);
        await anchors[0]!.anchor(first);
        await anchors[0]!.anchor(second);

        const { versions } = await listVersions(client, bucket, `${run}/anchored/checkpoints/`);
        assert.equal(versions.length, 2, 'one object per checkpoint, even when anchored twice');
        assert.match(versions[0]!.key, /checkpoints\/000000000001-20261122T140000\.000Z-[0-9a-f]{64}\.json$/);
        const { body } = await readObject(client, bucket, versions[0]!.key);
        assert.deepEqual(JSON.parse(body.toString('utf8')), first);
        assert.equal((await headMetadata(client, bucket, versions[0]!.key))['content-sha256'], createHash('sha256').update(body).digest('hex'));
        const retention = await client.send(new GetObjectRetentionCommand({ Bucket: bucket, Key: versions[0]!.key }));
        assert.equal(retention.Retention?.Mode, 'COMPLIANCE');

        const source = { client, bucket, prefix: run, pipeline: 'anchored' };
        const read = await readAnchoredCheckpoints(source);
        assert.deepEqual(read.findings, []);
        assert.deepEqual(read.checkpoints.map((c) => [c.number, c.hash]), [[1, first.hash], [2, second.hash]]);
        const trusted = { publicKey: keys.publicKey, keyId: 'k1' };
        assert.deepEqual(compareAnchors(read.checkpoints, [first, second], trusted), []);
        // A store whose checkpoint 2 was rewritten (and re-signed) no longer matches its anchor.
        assert.deepEqual(compareAnchors(read.checkpoints, [first, sign(2, 'c'.repeat(64))], trusted).map((f) => f.kind), ['anchor-mismatch']);

        // Writing over an anchored checkpoint leaves the locked version and is reported.
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: versions[1]!.key, Body: 'forged' }));
        const tampered = await readAnchoredCheckpoints(source);
        assert.deepEqual(tampered.findings.map((f) => f.kind).sort(), ['anchor-malformed', 'anchor-overwritten']);
        assert.deepEqual(tampered.checkpoints.map((c) => c.number), [1, 2], 'the locked originals still read back');
      } finally {
        await sink.close();
      }
    });
  });
});

describe('S3 sink start-up self-check', () => {
  const client = s3Client();
  const startWith = (bucket: string, extra: Record<string, unknown> = {}) => startEngine({
    pipelines: [{ name: 'test', source: { type: 'http', listen: '127.0.0.1:0' }, sinks: [s3SinkConfig(bucket, extra)] }],
  });

  it('refuses a bucket without Object Lock and says what to change', async () => {
    const bucket = await createBucket(client, bucketName('ap-plain'), 'plain');
    await assert.rejects(startWith(bucket), (error: Error) => {
      assert.match(error.message, new RegExp(`bucket "${bucket}"`));
      assert.match(error.message, /versioning is not enabled/);
      assert.match(error.message, /Object Lock is not enabled; create the bucket with Object Lock/);
      assert.ok(!error.message.includes(process.env.S3_SECRET_KEY!), 'no secret in the message');
      return true;
    });
  });

  it('refuses a versioned bucket without Object Lock', async () => {
    const bucket = await createBucket(client, bucketName('ap-vers'), 'versioned');
    await assert.rejects(startWith(bucket), /Object Lock is not enabled/);
  });

  it('refuses a bucket that does not exist', async () => {
    await assert.rejects(startWith(bucketName('ap-missing')), /does not exist: create it with Object Lock enabled/);
  });

  it('refuses a bucket whose default retention is shorter than configured', async () => {
    const bucket = await createBucket(client, bucketName('ap-short'), 'locked');
    const { PutObjectLockConfigurationCommand } = await import('@aws-sdk/client-s3');
    await client.send(new PutObjectLockConfigurationCommand({
      Bucket: bucket,
      ObjectLockConfiguration: { ObjectLockEnabled: 'Enabled', Rule: { DefaultRetention: { Mode: 'GOVERNANCE', Days: 1 } } },
    }));
    await assert.rejects(startWith(bucket, { retention: '30d' }), /default retention \(GOVERNANCE, 1 days\) is shorter than the configured retention/);
    const t = await startWith(bucket, { retention: '12h' });
    await t.stop();
  });

  it('refuses wrong credentials without echoing them', async () => {
    const bucket = await createBucket(client, bucketName('ap-creds'), 'locked');
    await assert.rejects(startWith(bucket, { secret_access_key: 'wrong-secret-value' }), (error: Error) => {
      assert.match(error.message, new RegExp(`bucket "${bucket}"`));
      assert.ok(!error.message.includes('wrong-secret-value'));
      return true;
    });
  });
});
