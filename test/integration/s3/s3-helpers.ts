/** Talking to the real S3 test server (MinIO with Object Lock) from tests. */
import {
  CreateBucketCommand, GetObjectCommand, HeadObjectCommand, ListObjectVersionsCommand, PutBucketVersioningCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Registry } from 'prom-client';
import { gunzipSync } from 'node:zlib';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLogger } from '../../../src/core/logger.ts';
import type { ComponentContext, PipelineName } from '../../../src/public/index.ts';
import { serverEnv, uniqueName } from '../../helpers/servers.ts';

export function s3Client(): S3Client {
  return new S3Client({
    endpoint: serverEnv('S3_ENDPOINT'),
    region: process.env.S3_REGION ?? 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: serverEnv('S3_ACCESS_KEY'), secretAccessKey: serverEnv('S3_SECRET_KEY') },
  });
}

/** S3 bucket names allow no underscores or capitals. */
export function bucketName(prefix: string): string {
  return uniqueName(prefix).replace(/_/g, '-').toLowerCase();
}

export async function createBucket(client: S3Client, name: string, kind: 'locked' | 'versioned' | 'plain'): Promise<string> {
  await client.send(new CreateBucketCommand({ Bucket: name, ...(kind === 'locked' ? { ObjectLockEnabledForBucket: true } : {}) }));
  if (kind === 'versioned') await client.send(new PutBucketVersioningCommand({ Bucket: name, VersioningConfiguration: { Status: 'Enabled' } }));
  return name;
}

/** The sink config keys for the test server. */
export function s3SinkConfig(bucket: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: 's3',
    bucket,
    prefix: 'audit',
    endpoint: serverEnv('S3_ENDPOINT'),
    region: process.env.S3_REGION ?? 'us-east-1',
    force_path_style: true,
    access_key_id: serverEnv('S3_ACCESS_KEY'),
    secret_access_key: serverEnv('S3_SECRET_KEY'),
    retention: '30s',
    ...extra,
  };
}

export interface StoredVersion {
  readonly key: string;
  readonly versionId: string;
  readonly isLatest: boolean;
}

/** Every object version and delete marker under `prefix`. */
export async function listVersions(client: S3Client, bucket: string, prefix = ''): Promise<{ versions: StoredVersion[]; deleteMarkers: StoredVersion[] }> {
  const versions: StoredVersion[] = [];
  const deleteMarkers: StoredVersion[] = [];
  let keyMarker: string | undefined;
  let versionMarker: string | undefined;
  for (;;) {
    const page = await client.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: prefix, KeyMarker: keyMarker, VersionIdMarker: versionMarker }));
    for (const v of page.Versions ?? []) versions.push({ key: v.Key!, versionId: v.VersionId!, isLatest: Boolean(v.IsLatest) });
    for (const m of page.DeleteMarkers ?? []) deleteMarkers.push({ key: m.Key!, versionId: m.VersionId!, isLatest: Boolean(m.IsLatest) });
    if (!page.IsTruncated) break;
    keyMarker = page.NextKeyMarker;
    versionMarker = page.NextVersionIdMarker;
  }
  return { versions, deleteMarkers };
}

export async function readObject(client: S3Client, bucket: string, key: string, versionId?: string): Promise<{ body: Buffer; metadata: Record<string, string> }> {
  const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key, VersionId: versionId }));
  const body = Buffer.from(await res.Body!.transformToByteArray());
  return { body, metadata: res.Metadata ?? {} };
}

/** The events of a batch object: gunzip, one JSON object per line. */
export function ndjsonEvents(gzipped: Buffer): Array<Record<string, unknown>> {
  return gunzipSync(gzipped).toString('utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line));
}

export async function headMetadata(client: S3Client, bucket: string, key: string): Promise<Record<string, string>> {
  return (await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).Metadata ?? {};
}

/** A component context for driving a sink directly, the way the engine would create it. */
export function componentContext(pipeline = 'direct'): ComponentContext & { readonly services: Map<string, unknown> } {
  const services = new Map<string, unknown>();
  return {
    pipeline: pipeline as PipelineName,
    name: 's3',
    logger: createLogger(process.env.TEST_LOG_LEVEL ?? 'silent'),
    metrics: new Registry(),
    dataDir: mkdtempSync(path.join(tmpdir(), 'auditpipe-s3-')),
    configDir: process.cwd(),
    events: { actorField: 'actorId', limits: { maxIdLength: 256, maxActorIdLength: 256, maxEventBytes: 1024 * 1024 } },
    resolve: <T>(token: string) => {
      if (!services.has(token)) throw new Error(`no service ${token}`);
      return services.get(token) as T;
    },
    has: (token: string) => services.has(token),
    provide: <T>(token: string, value: T) => {
      services.set(token, value);
    },
    services,
  };
}
