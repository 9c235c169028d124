/**
 * Pure parts of the S3 sink: how a batch becomes one object (key, body, metadata) and how the
 * retention setting is read. No network here, so all of it is unit-tested.
 */
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import type { AuditEvent, Batch } from '../../public/index.ts';

/** Metadata keys (stored as `x-amz-meta-<key>`) every batch object carries. */
export const META_CONTENT_SHA256 = 'content-sha256';
export const META_EVENT_COUNT = 'event-count';
export const META_FIRST_EVENT_ID = 'first-event-id';
export const META_LAST_EVENT_ID = 'last-event-id';
export const META_CHECKPOINT_NUMBER = 'checkpoint-number';

/** Longest event id stored as itself in metadata (URI-encoded); longer ones are stored as their SHA-256. */
const MAX_META_ID_CHARS = 600;

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400, y: 365 * 86_400 };
const DURATION = /^(\d{1,9})\s*(s|m|h|d|y)$/;

/** `30d`, `7y`, `90s`, … → seconds; undefined when it does not parse. A year is 365 days (as S3 counts). */
export function parseRetention(value: string): number | undefined {
  const match = DURATION.exec(value.trim());
  if (!match) return undefined;
  const seconds = Number(match[1]) * UNITS[match[2]!]!;
  return seconds > 0 ? seconds : undefined;
}

/** Strips slashes at both ends; `''` means objects start directly with the pipeline name. */
export function normalisePrefix(prefix: string): string {
  return prefix.replace(/^\/+|\/+$/g, '');
}

/** A pipeline name as one key segment: kept when it is plainly safe, URI-encoded otherwise. */
export function keySegment(name: string): string {
  return /^[A-Za-z0-9._-]+$/.test(name) ? name : encodeURIComponent(name);
}

function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** When the batch happened, for the key's date path: its earliest event time (UTC), whatever the order. */
function batchTime(events: readonly AuditEvent[]): Date {
  let earliest = Number.POSITIVE_INFINITY;
  for (const event of events) {
    const parsed = Date.parse(event.time);
    const time = Number.isNaN(parsed) ? Date.parse(event.receivedAt) : parsed;
    if (time < earliest) earliest = time;
  }
  return new Date(earliest);
}

/** `{yyyy}/{mm}/{dd}/{hh}` and a file-name-safe `yyyymmddThhmmss.sssZ` of one instant. */
function timeParts(time: Date): { path: string; stamp: string } {
  const iso = time.toISOString(); // 2026-11-22T14:03:12.345Z
  const [date, clock] = iso.split('T') as [string, string];
  const [yyyy, mm, dd] = date.split('-') as [string, string, string];
  return { path: `${yyyy}/${mm}/${dd}/${clock.slice(0, 2)}`, stamp: `${yyyy}${mm}${dd}T${clock.replace(/:/g, '')}` };
}

/**
 * The object key of a batch, a function of its set of events only: the same events give the
 * same key, in any order, however often the batch is retried.
 * `{prefix}/{pipeline}/{yyyy}/{mm}/{dd}/{hh}/{stamp}-{ids}.ndjson.gz` with the date and stamp of
 * the earliest event time and `ids` the SHA-256 (first 32 hex digits) of the sorted event ids.
 */
export function batchKey(prefix: string, pipeline: string, events: readonly AuditEvent[]): string {
  if (events.length === 0) throw new Error('an empty batch has no object key');
  const ids = events.map((event) => event.id as string).sort();
  const idsHash = sha256Hex(JSON.stringify(ids)).slice(0, 32);
  const { path, stamp } = timeParts(batchTime(events));
  return [normalisePrefix(prefix), keySegment(pipeline), path, `${stamp}-${idsHash}.ndjson.gz`].filter(Boolean).join('/');
}

/** An event id as an S3 metadata value: URI-encoded (metadata is ASCII), or `sha256:<hex>` when very long. */
export function metadataId(id: string): string {
  const encoded = encodeURIComponent(id);
  return encoded.length <= MAX_META_ID_CHARS ? encoded : `sha256:${sha256Hex(id)}`;
}

export interface BatchObject {
  readonly key: string;
  /** gzip of the NDJSON. */
  readonly body: Buffer;
  /** Hex SHA-256 of the uncompressed NDJSON (what the metadata carries and a reader re-computes). */
  readonly contentSha256: string;
  /** Base64 SHA-256 of `body`, for `x-amz-checksum-sha256`. */
  readonly bodySha256: string;
  /** Base64 MD5 of `body`, for `Content-MD5`. */
  readonly bodyMd5: string;
  readonly metadata: Record<string, string>;
}

/** One batch as one object: NDJSON (each stored event exactly, one per line), gzipped. */
export function encodeBatch(prefix: string, batch: Batch): BatchObject {
  let ndjson = '';
  for (const event of batch.events) ndjson += event.json + '\n';
  const plain = Buffer.from(ndjson, 'utf8');
  const body = gzipSync(plain);
  const contentSha256 = sha256Hex(plain);
  return {
    key: batchKey(prefix, batch.pipeline, batch.events),
    body,
    contentSha256,
    bodySha256: createHash('sha256').update(body).digest('base64'),
    bodyMd5: createHash('md5').update(body).digest('base64'),
    metadata: {
      [META_CONTENT_SHA256]: contentSha256,
      [META_EVENT_COUNT]: String(batch.events.length),
      [META_FIRST_EVENT_ID]: metadataId(batch.events[0]!.id),
      [META_LAST_EVENT_ID]: metadataId(batch.events.at(-1)!.id),
    },
  };
}

/**
 * The key of an anchored checkpoint: `{prefix}/{pipeline}/checkpoints/{number}-{stamp}-{sha256}.json`,
 * the number zero-padded to 12 digits so keys list in checkpoint order; `sha256` is of the stored JSON.
 */
export function checkpointKey(prefix: string, pipeline: string, checkpoint: { readonly number: number; readonly time: string }, contentSha256: string): string {
  const parsed = Date.parse(checkpoint.time);
  const { stamp } = timeParts(Number.isNaN(parsed) ? new Date() : new Date(parsed));
  const number = String(checkpoint.number).padStart(12, '0');
  return [normalisePrefix(prefix), keySegment(pipeline), 'checkpoints', `${number}-${stamp}-${contentSha256}.json`].filter(Boolean).join('/');
}

/** The folder of a pipeline's anchored checkpoints (with a trailing slash). */
export function checkpointFolder(prefix: string, pipeline: string): string {
  return [normalisePrefix(prefix), keySegment(pipeline), 'checkpoints'].filter(Boolean).join('/') + '/';
}

export { sha256Hex };
