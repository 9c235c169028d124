import {
  GetBucketVersioningCommand, GetObjectLockConfigurationCommand, HeadBucketCommand, HeadObjectCommand, PutObjectCommand,
  S3Client, type ObjectLockConfiguration, type PutObjectCommandInput, type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { canonicalJson } from '../../public/security.ts';
import { createHash } from 'node:crypto';
import { Counter, type Registry } from 'prom-client';
import { PermanentError, sharedMetric, type Batch, type ComponentContext, type Logger, type Sink } from '../../public/index.ts';
import { checkpointAnchorsService } from '../../public/services.ts';
import type { CheckpointAnchor, SignedCheckpoint } from '../../public/security.ts';
import { checkpointKey, encodeBatch, META_CHECKPOINT_NUMBER, META_CONTENT_SHA256, sha256Hex } from './object.ts';

export type LockMode = 'COMPLIANCE' | 'GOVERNANCE';

/** The sink's settings after validation (index.ts turns the config keys into this). */
export interface S3SinkSettings {
  readonly bucket: string;
  readonly prefix: string;
  readonly endpoint: string;
  readonly region: string;
  readonly forcePathStyle: boolean;
  /** Empty: the standard AWS credential chain (environment, profile, instance role). */
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string; readonly sessionToken: string } | undefined;
  readonly lockMode: LockMode;
  readonly retentionSeconds: number;
  readonly legalHold: boolean;
  readonly checksum: 'sha256' | 'md5';
  /** How a retried upload is kept from creating a second object version. */
  readonly dedup: 'if-none-match' | 'head-first';
  readonly connectTimeoutMs: number;
  readonly anchorTimeoutMs: number;
}

interface ObjectToPut {
  readonly key: string;
  readonly body: Buffer;
  readonly contentType: string;
  readonly contentEncoding?: string;
  readonly contentSha256: string;
  readonly bodySha256: string;
  readonly bodyMd5: string;
  readonly metadata: Record<string, string>;
}

type PutResult = 'created' | 'existed' | 'existed-different';

const DAY_SECONDS = 86_400;

function objectCounter(registry: Registry): Counter<'pipeline' | 'sink' | 'result'> {
  const name = 'auditpipe_s3_objects_total';
  return sharedMetric(registry, name, () => new Counter({
    name,
    help: 'S3 objects by result: created, existed (a retry found its own object), existed_different (same event ids stored earlier with other content).',
    labelNames: ['pipeline', 'sink', 'result'],
    registers: [registry],
  }));
}

/** HTTP status of an SDK error, when the server answered. */
function statusOf(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

function nameOf(error: unknown): string {
  return (error as Error)?.name ?? 'Error';
}

function describe(error: unknown): string {
  const status = statusOf(error);
  const message = (error as Error)?.message || nameOf(error);
  return `${nameOf(error)}: ${message}${status ? ` (HTTP ${status})` : ''}`;
}

/**
 * Writes each batch as one gzipped NDJSON object under Object Lock (see README.md). A batch is
 * written once the server confirmed the PUT; a retry of the same batch finds its object (412 on
 * the conditional PUT, or the HEAD before it) and counts as written without a second version.
 */
export class S3Sink implements Sink {
  private readonly settings: S3SinkSettings;
  private readonly context: ComponentContext;
  private readonly log: Logger;
  private readonly client: S3Client;
  private readonly objects: Counter<'pipeline' | 'sink' | 'result'>;
  private lastWriteFailed = false;

  constructor(settings: S3SinkSettings, context: ComponentContext, client?: S3Client) {
    this.settings = settings;
    this.context = context;
    this.log = context.logger;
    this.client = client ?? new S3Client(clientConfig(settings));
    this.objects = objectCounter(context.metrics);
  }

  /** Registers this sink as a checkpoint anchor of its pipeline (the chain store reads the list). */
  registerAnchor(): void {
    const token = checkpointAnchorsService(this.context.pipeline);
    const anchor: CheckpointAnchor = { name: `s3:${this.context.name}`, anchor: (checkpoint) => this.anchor(checkpoint) };
    if (this.context.has(token)) {
      const list = this.context.resolve(token);
      if (Array.isArray(list)) {
        list.push(anchor);
        return;
      }
    }
    this.context.provide(token, [anchor]);
  }

  /** Self-check: the bucket exists, is versioned, has Object Lock, and its default retention is long enough. */
  async start(): Promise<void> {
    const { bucket } = this.settings;
    const where = `bucket "${bucket}"${this.settings.endpoint ? ` at ${this.settings.endpoint}` : ''}`;
    const signal = AbortSignal.timeout(Math.max(this.settings.connectTimeoutMs * 3, 10_000));
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: bucket }), { abortSignal: signal });
    } catch (error) {
      const status = statusOf(error);
      if (status === 404 || nameOf(error) === 'NotFound' || nameOf(error) === 'NoSuchBucket') {
        throw new Error(`${where} does not exist: create it with Object Lock enabled (aws s3api create-bucket --bucket ${bucket} --object-lock-enabled-for-bucket, or mc mb --with-lock)`);
      }
      if (status === 403) {
        throw new Error(`${where}: access denied; the credentials need s3:ListBucket, s3:GetBucketVersioning, s3:GetBucketObjectLockConfiguration, s3:PutObject, s3:PutObjectRetention${this.settings.legalHold ? ', s3:PutObjectLegalHold' : ''} and s3:GetObject`);
      }
      throw new Error(`${where}: cannot check the bucket: ${describe(error)}`);
    }

    const problems: string[] = [];
    try {
      const versioning = await this.client.send(new GetBucketVersioningCommand({ Bucket: bucket }), { abortSignal: signal });
      if (versioning.Status !== 'Enabled') {
        problems.push(`versioning is ${versioning.Status ? versioning.Status.toLowerCase() : 'not enabled'}; Object Lock needs it enabled (it is enabled with Object Lock at bucket creation)`);
      }
    } catch (error) {
      throw new Error(`${where}: cannot read the versioning state: ${describe(error)}`);
    }

    let lock: ObjectLockConfiguration | undefined;
    try {
      lock = (await this.client.send(new GetObjectLockConfigurationCommand({ Bucket: bucket }), { abortSignal: signal })).ObjectLockConfiguration;
    } catch (error) {
      if (nameOf(error) !== 'ObjectLockConfigurationNotFoundError' && statusOf(error) !== 404) {
        throw new Error(`${where}: cannot read the Object Lock configuration: ${describe(error)}`);
      }
    }
    if (lock?.ObjectLockEnabled !== 'Enabled') {
      problems.push('Object Lock is not enabled; create the bucket with Object Lock (aws s3api create-bucket --object-lock-enabled-for-bucket, mc mb --with-lock) or enable it on the versioned bucket (aws s3api put-object-lock-configuration)');
    } else {
      const retention = lock.Rule?.DefaultRetention;
      const defaultSeconds = retention?.Days ? retention.Days * DAY_SECONDS : retention?.Years ? retention.Years * 365 * DAY_SECONDS : undefined;
      if (defaultSeconds !== undefined && defaultSeconds < this.settings.retentionSeconds) {
        const shown = retention?.Days ? `${retention.Days} days` : `${retention?.Years} years`;
        problems.push(`the bucket's default retention (${retention?.Mode ?? 'mode unset'}, ${shown}) is shorter than the configured retention (${this.settings.retentionSeconds} s); raise the bucket default to at least ${Math.ceil(this.settings.retentionSeconds / DAY_SECONDS)} days or lower "retention"`);
      }
    }
    if (problems.length > 0) throw new Error(`${where} cannot hold locked audit objects: ${problems.join('; ')}`);
    this.log.info({ bucket, lockMode: this.settings.lockMode, retentionSeconds: this.settings.retentionSeconds, dedup: this.settings.dedup }, 's3 sink ready');
  }

  async write(batch: Batch, signal: AbortSignal): Promise<void> {
    const encoded = encodeBatch(this.settings.prefix, batch);
    try {
      const result = await this.putOnce({
        ...encoded,
        contentType: 'application/x-ndjson',
        contentEncoding: 'gzip',
      }, signal);
      this.objects.inc({ pipeline: this.context.pipeline, sink: this.context.name, result: result.replace('-', '_') });
      if (result === 'existed-different') {
        this.log.warn({ key: encoded.key, batch: batch.seq }, 'an object with the same event ids but other content is already stored; keeping it (idempotent by event id)');
      }
      this.lastWriteFailed = false;
    } catch (error) {
      this.lastWriteFailed = true;
      throw error;
    }
  }

  healthy(): boolean {
    return !this.lastWriteFailed;
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  /**
   * Writes one signed checkpoint as a locked JSON object (RFC 8785 canonical form) under
   * `{prefix}/{pipeline}/checkpoints/`. A few quick attempts within `anchor_timeout_ms`; the
   * chain store counts and logs a failure, and the next checkpoint is anchored again.
   */
  async anchor(checkpoint: SignedCheckpoint): Promise<void> {
    const body = Buffer.from(canonicalJson(checkpoint), 'utf8');
    const contentSha256 = sha256Hex(body);
    const key = checkpointKey(this.settings.prefix, this.context.pipeline, checkpoint, contentSha256);
    const object: ObjectToPut = {
      key,
      body,
      contentType: 'application/json',
      contentSha256,
      bodySha256: createHash('sha256').update(body).digest('base64'),
      bodyMd5: createHash('md5').update(body).digest('base64'),
      metadata: { [META_CONTENT_SHA256]: contentSha256, [META_CHECKPOINT_NUMBER]: String(checkpoint.number) },
    };
    const signal = AbortSignal.timeout(this.settings.anchorTimeoutMs);
    for (let attempt = 1; ; attempt += 1) {
      try {
        const result = await this.putOnce(object, signal);
        if (result === 'existed-different') throw new PermanentError(`checkpoint object ${key} exists with other content`);
        this.log.debug({ key, number: checkpoint.number }, 'checkpoint anchored in S3');
        return;
      } catch (error) {
        if (error instanceof PermanentError || signal.aborted || attempt >= 3) throw error;
        await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
      }
    }
  }

  /**
   * PUTs an object at most once: with `If-None-Match: *` (a 412 means it is there), or after a
   * HEAD that found nothing. An existing object counts as written when its content hash matches.
   */
  private async putOnce(object: ObjectToPut, signal: AbortSignal): Promise<PutResult> {
    if (this.settings.dedup === 'head-first') {
      const existing = await this.headContentHash(object.key, signal);
      if (existing !== undefined) return existing === object.contentSha256 ? 'existed' : 'existed-different';
    }
    try {
      await this.client.send(new PutObjectCommand(this.putInput(object)), { abortSignal: signal });
      return 'created';
    } catch (error) {
      if (statusOf(error) !== 412 && nameOf(error) !== 'PreconditionFailed') throw this.classify('PutObject', object.key, error);
      const existing = await this.headContentHash(object.key, signal);
      if (existing === undefined) throw new Error(`S3 answered 412 for s3://${this.settings.bucket}/${object.key} but HeadObject finds no object; retrying`);
      return existing === object.contentSha256 ? 'existed' : 'existed-different';
    }
  }

  private putInput(object: ObjectToPut): PutObjectCommandInput {
    const { settings } = this;
    const input: PutObjectCommandInput = {
      Bucket: settings.bucket,
      Key: object.key,
      Body: object.body,
      ContentLength: object.body.length,
      ContentType: object.contentType,
      Metadata: object.metadata,
      ObjectLockMode: settings.lockMode,
      ObjectLockRetainUntilDate: new Date(Date.now() + settings.retentionSeconds * 1000),
      ...(object.contentEncoding ? { ContentEncoding: object.contentEncoding } : {}),
      ...(settings.legalHold ? { ObjectLockLegalHoldStatus: 'ON' as const } : {}),
      ...(settings.dedup === 'if-none-match' ? { IfNoneMatch: '*' } : {}),
    };
    if (settings.checksum === 'sha256') {
      input.ChecksumAlgorithm = 'SHA256';
      input.ChecksumSHA256 = object.bodySha256;
    } else {
      input.ContentMD5 = object.bodyMd5;
    }
    return input;
  }

  /** The `content-sha256` metadata of the object at `key`; undefined when there is none. */
  private async headContentHash(key: string, signal: AbortSignal): Promise<string | undefined> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.settings.bucket, Key: key }), { abortSignal: signal });
      // An object without our metadata was not written by this sink: it never matches.
      return head.Metadata?.[META_CONTENT_SHA256] ?? '';
    } catch (error) {
      if (statusOf(error) === 404 || nameOf(error) === 'NotFound' || nameOf(error) === 'NoSuchKey') return undefined;
      throw this.classify('HeadObject', key, error);
    }
  }

  /** Client errors a retry cannot fix become `PermanentError` (the batch is naked at once). */
  private classify(operation: string, key: string, error: unknown): Error {
    if (signalAborted(error)) return error as Error;
    const status = statusOf(error);
    const message = `S3 ${operation} s3://${this.settings.bucket}/${key} failed: ${describe(error)}`;
    if (status !== undefined && status >= 400 && status < 500 && ![408, 409, 412, 429].includes(status)) {
      return new PermanentError(message);
    }
    return new Error(message);
  }
}

function signalAborted(error: unknown): boolean {
  return nameOf(error) === 'AbortError' || nameOf(error) === 'TimeoutError';
}

export function clientConfig(settings: S3SinkSettings): S3ClientConfig {
  return {
    ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
    ...(settings.region ? { region: settings.region } : {}),
    forcePathStyle: settings.forcePathStyle,
    ...(settings.credentials ? { credentials: settings.credentials.sessionToken ? settings.credentials : { accessKeyId: settings.credentials.accessKeyId, secretAccessKey: settings.credentials.secretAccessKey } } : {}),
    // The pipeline's retry policy is the only one: one SDK attempt per write attempt.
    maxAttempts: 1,
    // With the MD5 fallback the SDK must not add its own CRC32 next to Content-MD5.
    requestChecksumCalculation: settings.checksum === 'md5' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED',
    requestHandler: { connectionTimeout: settings.connectTimeoutMs },
  };
}
