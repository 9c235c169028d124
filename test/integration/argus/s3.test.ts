// The argus preset with S3_COMPLIANCE_BUCKET set: events go to the PostgreSQL chain and to a
// locked object in the (real) S3 server, and a 201 means both wrote.
import assert from 'node:assert/strict';
import { gunzipSync } from 'node:zlib';
import { after, describe, it } from 'node:test';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { serverEnv, uniqueName } from '../../helpers/servers.ts';
import { API_KEY, argusDatabase, argusKeys, argusRequest, startArgus } from './helpers.ts';

describe('argus preset with S3_COMPLIANCE_BUCKET', () => {
  const cleanups: Array<() => Promise<void>> = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  it('writes each accepted event to the chain and to an Object Lock bucket before answering 201', async () => {
    // The preset takes S3 credentials from the standard AWS chain, as argus did.
    process.env.AWS_ACCESS_KEY_ID = serverEnv('S3_ACCESS_KEY');
    process.env.AWS_SECRET_ACCESS_KEY = serverEnv('S3_SECRET_KEY');
    const s3 = new S3Client({ endpoint: serverEnv('S3_ENDPOINT'), region: process.env.S3_REGION ?? 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: serverEnv('S3_ACCESS_KEY'), secretAccessKey: serverEnv('S3_SECRET_KEY') } });
    const bucket = uniqueName('argus-worm').toLowerCase().replace(/_/g, '-');
    await s3.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true }));
    const keys = argusKeys();
    const db = await argusDatabase('argus_s3');
    cleanups.push(db.drop);
    const t = await startArgus({
      ...db.env, ARGUS_API_KEY: API_KEY, AUDITPIPE_CHECKPOINT_KEY_FILE: keys.checkpointKeyFile,
      S3_COMPLIANCE_BUCKET: bucket, S3_ENDPOINT: serverEnv('S3_ENDPOINT'), S3_REGION: process.env.S3_REGION ?? 'us-east-1',
      S3_USE_PATH_STYLE: 'true', S3_OBJECT_LOCK_MODE: 'GOVERNANCE', S3_RETENTION_DAYS: '1', S3_PREFIX: 'audit-logs/',
    });
    cleanups.push(() => t.stop());
    const res = await fetch(t.url('argus') + '/api/audit-logs/bulk', {
      method: 'POST', headers: { authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify([argusRequest({ actorId: 's3-a' }), argusRequest({ actorId: 's3-b' })]),
    });
    assert.equal(res.status, 201);
    const ids = (await res.json()).succeeded.map((r: { id: string }) => r.id).sort();

    const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'audit-logs/argus/' }));
    const objects = (listed.Contents ?? []).filter((o) => !o.Key!.includes('/checkpoints/'));
    assert.ok(objects.length >= 1);
    const stored: string[] = [];
    for (const object of objects) {
      const body = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: object.Key! }));
      assert.equal(body.ObjectLockMode, 'GOVERNANCE');
      const text = gunzipSync(Buffer.from(await body.Body!.transformToByteArray())).toString('utf8');
      stored.push(...text.trim().split('\n').map((line) => JSON.parse(line).id as string));
    }
    assert.deepEqual(stored.sort(), ids);
    const rows = await db.sql('SELECT count(*)::int AS n FROM auditpipe.chain_events');
    assert.equal(rows.rows[0].n, 2);
  });
});
