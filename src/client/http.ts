/**
 * HTTP client SDK for auditpipe's HTTP source (and argus deployments it replaces): a port of
 * argus's Go client without its defects. Events get a UUIDv7 id and a time on the client, so a
 * retry is stored once; batches go out by size, bytes or interval through a few concurrent
 * senders; only retryable answers are retried (network errors, 408, 429, 5xx), with full-jitter
 * backoff; a 207 is read item by item so the caller learns exactly which events failed; what
 * cannot be delivered in time goes to an optional disk spool that the next start replays; events
 * can be signed with a private key or a custom signer, over the same bytes the server verifies;
 * `flush()` and `close()` wait until every event is delivered, failed or spooled.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { v7 as uuidv7 } from 'uuid';
import type { JsonObject, JsonValue } from '../public/index.ts';
import { privateKeySigner, signEvent, type EventSigner, type SignatureAlgorithm } from '../security/signatures.ts';

export { privateKeySigner, signEvent, signingInput, SIGNATURE_DOMAIN_TAG, SIGNATURE_VERSION } from '../security/signatures.ts';
export type { EventSigner, SignatureAlgorithm } from '../security/signatures.ts';

/**
 * One audit event as the caller gives it: native fields (`time`, a JSON `message`) or argus
 * ones (`timestamp`); anything else is kept as is.
 */
export interface AuditLogInput {
  id?: string;
  time?: string;
  timestamp?: string;
  traceId?: string;
  eventType?: string;
  action?: string;
  status?: string;
  actorType?: string;
  actorId?: string;
  targetType?: string;
  targetId?: string;
  /** Any JSON value; sent as base64 of its JSON on the argus API, as is on the native one. */
  message?: JsonValue;
  metadata?: JsonObject;
  [field: string]: JsonValue | undefined;
}

export type DeliveryStatus = 'delivered' | 'failed' | 'spooled';

export interface DeliveryResult {
  readonly id: string;
  readonly status: DeliveryStatus;
  /** Why it failed or was spooled (the server's per-item error, or the last transport error). */
  readonly error?: string;
  /** The HTTP status that decided it, when there was one. */
  readonly httpStatus?: number;
}

export interface FlushReport {
  readonly delivered: number;
  readonly spooled: number;
  readonly failed: readonly DeliveryResult[];
}

export interface HttpAuditClientOptions {
  /** e.g. `http://auditpipe:8080`. */
  readonly baseUrl: string;
  /** Sent as `Authorization: Bearer <apiKey>`. */
  readonly apiKey?: string;
  /** `argus` (default): `POST /api/audit-logs/bulk`; `native`: `POST /v1/events`. */
  readonly api?: 'argus' | 'native';
  readonly batchSize?: number;
  readonly maxBatchBytes?: number;
  readonly batchIntervalMs?: number;
  /** Events waiting to be sent (not counting those in flight). */
  readonly queueSize?: number;
  /** What `log()` does when the queue is full: wait for room (default) or throw `QueueFullError`. */
  readonly whenFull?: 'block' | 'reject';
  /** Batches sent at once. */
  readonly concurrency?: number;
  /** Attempts per batch for retryable failures, before the batch is spooled or failed. */
  readonly maxAttempts?: number;
  readonly initialBackoffMs?: number;
  readonly maxBackoffMs?: number;
  readonly requestTimeoutMs?: number;
  /** Directory for batches that could not be delivered; replayed when a client starts on it. */
  readonly spoolDir?: string;
  /** Signs every event with this key (PKCS#8/PKCS#1 PEM or KeyObject). */
  readonly signingKey?: { readonly keyId: string; readonly privateKey: string | import('node:crypto').KeyObject; readonly algorithm?: SignatureAlgorithm };
  /** Or a custom signer (KMS, HSM): gets the exact bytes to sign, returns a base64 signature. */
  readonly signer?: EventSigner;
  /** Called once for every event that failed or was spooled. */
  readonly onFailure?: (result: DeliveryResult) => void;
  /** Injected for tests; defaults to the global fetch. */
  readonly fetch?: typeof fetch;
}

export class QueueFullError extends Error {
  override readonly name = 'QueueFullError';
}

export class ClientClosedError extends Error {
  override readonly name = 'ClientClosedError';
}

interface Item {
  readonly id: string;
  /** The native event, signed when a signer is configured: what a spool file holds. */
  readonly event: JsonObject;
  /** The JSON text of the event as the chosen API wants it. */
  readonly wire: string;
  readonly bytes: number;
  readonly settle: (result: DeliveryResult) => void;
  readonly settled: Promise<DeliveryResult>;
  /** The spool file the event was replayed from, deleted once all its events are settled. */
  readonly spoolFile?: SpoolFile;
}

interface SpoolFile {
  readonly path: string;
  remaining: number;
}

const RETRYABLE = (status: number) => status === 408 || status === 429 || status >= 500;
/** Not the event's fault: keep it (spool) rather than fail it, so fixing the config recovers it. */
const CONFIGURATION = (status: number) => status === 401 || status === 403 || status === 404 || status === 405 || status === 415;
const SPOOL_PREFIX = 'auditpipe-spool-';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Native event → what the argus API takes: `timestamp` for `time`, a base64 JSON `message`. */
function argusWire(event: JsonObject): JsonObject {
  const { time, message, ...rest } = event;
  const wire: Record<string, JsonValue> = { ...rest, timestamp: time as string };
  if (message !== undefined && message !== null) wire.message = Buffer.from(JSON.stringify(message), 'utf8').toString('base64');
  return wire;
}

export class HttpAuditClient {
  private readonly options: Required<Pick<HttpAuditClientOptions,
    'api' | 'batchSize' | 'maxBatchBytes' | 'batchIntervalMs' | 'queueSize' | 'whenFull' | 'concurrency' | 'maxAttempts' | 'initialBackoffMs' | 'maxBackoffMs' | 'requestTimeoutMs'>>;
  private readonly baseUrl: string;
  private readonly apiKey: string | undefined;
  private readonly spoolDir: string | undefined;
  private readonly signer: EventSigner | undefined;
  private readonly onFailure: ((result: DeliveryResult) => void) | undefined;
  private readonly fetch: typeof fetch;
  private readonly queue: Item[] = [];
  private queuedBytes = 0;
  private readonly unsettled = new Set<Item>();
  private readonly roomWaiters: Array<() => void> = [];
  private senders = 0;
  private flushDue = false;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly replaying: Promise<void>;
  /**
   * Replayed events not yet counted in a report. Replay sends batches as soon as they fill, so
   * some may be settled before the first flush() looks; they are still its to report.
   */
  private unreportedReplay: Item[] = [];
  /** Spool files being deleted; flush() waits for them so a closed client leaves no stale file. */
  private readonly fileOps = new Set<Promise<void>>();

  constructor(options: HttpAuditClientOptions) {
    if (!options.baseUrl) throw new Error('baseUrl is required');
    const url = new URL(options.baseUrl);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('baseUrl must be an http(s) URL');
    this.baseUrl = url.toString().replace(/\/$/, '');
    this.apiKey = options.apiKey;
    const positive = (name: string, value: number | undefined, fallback: number) => {
      const chosen = value ?? fallback;
      if (!Number.isInteger(chosen) || chosen < 1) throw new Error(`${name} must be a positive integer`);
      return chosen;
    };
    this.options = {
      api: options.api ?? 'argus',
      batchSize: positive('batchSize', options.batchSize, 100),
      maxBatchBytes: positive('maxBatchBytes', options.maxBatchBytes, 1024 * 1024),
      batchIntervalMs: positive('batchIntervalMs', options.batchIntervalMs, 1000),
      queueSize: positive('queueSize', options.queueSize, 10_000),
      whenFull: options.whenFull ?? 'block',
      concurrency: positive('concurrency', options.concurrency, 4),
      maxAttempts: positive('maxAttempts', options.maxAttempts, 5),
      initialBackoffMs: positive('initialBackoffMs', options.initialBackoffMs, 200),
      maxBackoffMs: positive('maxBackoffMs', options.maxBackoffMs, 10_000),
      requestTimeoutMs: positive('requestTimeoutMs', options.requestTimeoutMs, 10_000),
    };
    if (options.api !== undefined && options.api !== 'argus' && options.api !== 'native') throw new Error('api must be "argus" or "native"');
    if (options.signer && options.signingKey) throw new Error('give signer or signingKey, not both');
    // A bad key fails here, loudly, instead of silently disabling the client as argus's SDK did.
    this.signer = options.signer ?? (options.signingKey
      ? privateKeySigner(options.signingKey.keyId, options.signingKey.privateKey, options.signingKey.algorithm)
      : undefined);
    this.onFailure = options.onFailure;
    this.fetch = options.fetch ?? globalThis.fetch;
    this.spoolDir = options.spoolDir;
    if (this.spoolDir) mkdirSync(this.spoolDir, { recursive: true, mode: 0o750 });
    this.replaying = this.replaySpool();
    // The caller learns of a replay problem through flush()/close(); never an unhandled rejection.
    this.replaying.catch(() => undefined);
  }

  /**
   * Queues one event; resolves with its id once queued (not yet delivered). With
   * `whenFull: 'reject'` a full queue throws `QueueFullError` instead of waiting. Signing
   * happens here, so a signing error reaches the caller instead of dropping the event.
   */
  async log(input: AuditLogInput): Promise<string> {
    const item = await this.prepare(input);
    await this.admit(item);
    return item.id;
  }

  /** Queues one event and resolves once it is delivered, failed (with the reason) or spooled. */
  async deliver(input: AuditLogInput): Promise<DeliveryResult> {
    const item = await this.prepare(input);
    await this.admit(item);
    return item.settled;
  }

  /**
   * Sends everything queued now and waits until each of those events is delivered, failed or
   * spooled. The first report after start also counts every event replayed from the spool.
   */
  async flush(): Promise<FlushReport> {
    await this.replaying;
    const items = new Set([...this.unreportedReplay, ...this.unsettled]);
    this.unreportedReplay = [];
    const waiting = [...items].map((item) => item.settled);
    this.flushDue = true;
    this.pump();
    const results = await Promise.all(waiting);
    await Promise.all([...this.fileOps]);
    return {
      delivered: results.filter((r) => r.status === 'delivered').length,
      spooled: results.filter((r) => r.status === 'spooled').length,
      failed: results.filter((r) => r.status === 'failed'),
    };
  }

  /** Stops taking events, drains the queue (delivered, failed or spooled) and returns the report. */
  async close(): Promise<FlushReport> {
    this.closed = true;
    for (const wake of this.roomWaiters.splice(0)) wake();
    const report = await this.flush();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    return report;
  }

  /** Events queued or in flight. */
  get pending(): number {
    return this.unsettled.size;
  }

  private async prepare(input: AuditLogInput): Promise<Item> {
    if (this.closed) throw new ClientClosedError('the client is closed');
    if (input === null || typeof input !== 'object' || Array.isArray(input)) throw new TypeError('an audit event must be an object');
    const { timestamp, time, ...rest } = input;
    if (input.id !== undefined && (typeof input.id !== 'string' || input.id === '' || input.id.length > 256)) {
      throw new TypeError('id must be a non-empty string of at most 256 characters');
    }
    const given = time ?? timestamp;
    if (given !== undefined && (typeof given !== 'string' || Number.isNaN(Date.parse(given)))) throw new TypeError('time must be an RFC 3339 string');
    const event: Record<string, JsonValue> = {};
    for (const [key, value] of Object.entries(rest)) if (value !== undefined) event[key] = value;
    event.id = input.id ?? uuidv7();
    event.time = given ?? new Date().toISOString();
    if (event.message === null) delete event.message;
    const signed = this.signer ? await signEvent(event, this.signer) : event;
    return this.item(signed);
  }

  private item(event: JsonObject, spoolFile?: SpoolFile): Item {
    const wire = JSON.stringify(this.options.api === 'argus' ? argusWire(event) : event);
    let settle!: (result: DeliveryResult) => void;
    const settled = new Promise<DeliveryResult>((resolve) => (settle = resolve));
    return { id: event.id as string, event, wire, bytes: Buffer.byteLength(wire), settle, settled, spoolFile };
  }

  private async admit(item: Item, fromSpool = false): Promise<void> {
    while (this.queue.length >= this.options.queueSize) {
      if (this.closed && !fromSpool) throw new ClientClosedError('the client is closed');
      // Replay always waits: a spooled event is never rejected for lack of room.
      if (this.options.whenFull === 'reject' && !fromSpool) throw new QueueFullError(`the queue holds ${this.options.queueSize} events`);
      await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
    }
    if (this.closed && !fromSpool) throw new ClientClosedError('the client is closed');
    this.queue.push(item);
    this.queuedBytes += item.bytes;
    this.unsettled.add(item);
    this.pump();
  }

  /** Starts as many batches as senders allow and arms the interval timer. */
  private pump(): void {
    while (this.queue.length > 0 && this.senders < this.options.concurrency) {
      const full = this.queue.length >= this.options.batchSize || this.queuedBytes >= this.options.maxBatchBytes;
      if (!full && !this.flushDue) break;
      const batch = this.takeBatch();
      this.senders += 1;
      void this.send(batch).finally(() => {
        this.senders -= 1;
        this.pump();
      });
    }
    if (this.queue.length === 0) this.flushDue = false;
    if (this.queue.length > 0 && !this.flushDue && !this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.flushDue = true;
        this.pump();
      }, this.options.batchIntervalMs);
      this.timer.unref?.();
    }
  }

  private takeBatch(): Item[] {
    let count = 0;
    let bytes = 0;
    while (count < this.queue.length && count < this.options.batchSize) {
      const next = this.queue[count]!.bytes;
      if (count > 0 && bytes + next > this.options.maxBatchBytes) break;
      bytes += next;
      count += 1;
    }
    this.queuedBytes -= bytes;
    const batch = this.queue.splice(0, count);
    for (const wake of this.roomWaiters.splice(0, count)) wake();
    return batch;
  }

  private settle(items: readonly Item[], status: DeliveryStatus, error?: string, httpStatus?: number): void {
    for (const item of items) {
      const result: DeliveryResult = { id: item.id, status, ...(error !== undefined ? { error } : {}), ...(httpStatus !== undefined ? { httpStatus } : {}) };
      this.unsettled.delete(item);
      item.settle(result);
      if (status !== 'delivered') {
        try {
          this.onFailure?.(result);
        } catch {
          // A throwing callback must not stop delivery of the other events.
        }
      }
      if (item.spoolFile) {
        item.spoolFile.remaining -= 1;
        if (item.spoolFile.remaining === 0) {
          const op = unlink(item.spoolFile.path).catch(() => undefined);
          this.fileOps.add(op);
          void op.finally(() => this.fileOps.delete(op));
        }
      }
    }
  }

  /** One batch: attempts until delivered, failed per item, or out of attempts (then spooled). */
  private async send(batch: Item[]): Promise<void> {
    let lastError = 'not sent';
    let lastStatus: number | undefined;
    for (let attempt = 1; attempt <= this.options.maxAttempts; attempt += 1) {
      let response: Response;
      let body: unknown;
      try {
        response = await this.fetch(this.endpoint(), {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {}) },
          body: `[${batch.map((item) => item.wire).join(',')}]`,
          signal: AbortSignal.timeout(this.options.requestTimeoutMs),
        });
        const text = await response.text();
        try {
          body = text ? JSON.parse(text) : undefined;
        } catch {
          body = undefined;
        }
      } catch (error) {
        lastError = `request failed: ${(error as Error).message}`;
        lastStatus = undefined;
        if (attempt < this.options.maxAttempts) await sleep(this.backoff(attempt));
        continue;
      }
      const status = response.status;
      if (status === 200 || status === 201) return this.settle(batch, 'delivered', undefined, status);
      if (status === 207 || status === 400) {
        const failures = this.itemFailures(body, batch.length);
        if (failures) {
          batch.forEach((item, index) => {
            const error = failures.get(index);
            if (error !== undefined) this.settle([item], 'failed', error, status);
          });
          return this.settle(batch.filter((_, index) => !failures.has(index)), 'delivered', undefined, status);
        }
        return this.settle(batch, 'failed', describe(body, status), status);
      }
      if (status === 413 && batch.length > 1) {
        // Too big for the server's limits: halve it; each half is its own batch.
        const half = Math.ceil(batch.length / 2);
        await Promise.all([this.send(batch.slice(0, half)), this.send(batch.slice(half))]);
        return;
      }
      lastError = describe(body, status);
      lastStatus = status;
      if (CONFIGURATION(status)) return this.spoolOrFail(batch, lastError, status);
      if (!RETRYABLE(status)) return this.settle(batch, 'failed', lastError, status);
      if (attempt < this.options.maxAttempts) await sleep(this.backoff(attempt, response.headers.get('retry-after')));
    }
    return this.spoolOrFail(batch, lastError, lastStatus);
  }

  private endpoint(): string {
    return this.options.api === 'argus' ? `${this.baseUrl}/api/audit-logs/bulk` : `${this.baseUrl}/v1/events`;
  }

  /** Index → error of the failed items in a 207/400 answer, or undefined when it lists none. */
  private itemFailures(body: unknown, size: number): Map<number, string> | undefined {
    const failed = (body as { failed?: unknown } | undefined)?.failed;
    if (!Array.isArray(failed)) return undefined;
    const map = new Map<number, string>();
    for (const entry of failed) {
      const index = (entry as { index?: unknown })?.index;
      if (typeof index === 'number' && Number.isInteger(index) && index >= 0 && index < size) {
        const error = (entry as { error?: unknown }).error;
        map.set(index, typeof error === 'string' ? error : 'rejected by the server');
      }
    }
    return map;
  }

  /** Full jitter: a random wait up to the exponential ceiling, or at least what Retry-After asks. */
  private backoff(attempt: number, retryAfter?: string | null): number {
    const ceiling = Math.min(this.options.maxBackoffMs, this.options.initialBackoffMs * 2 ** (attempt - 1));
    const jittered = Math.random() * ceiling;
    const asked = retryAfter && /^\d+$/.test(retryAfter) ? Number(retryAfter) * 1000 : 0;
    return Math.min(this.options.maxBackoffMs, Math.max(jittered, asked));
  }

  private async spoolOrFail(batch: Item[], error: string, httpStatus?: number): Promise<void> {
    if (!this.spoolDir) return this.settle(batch, 'failed', error, httpStatus);
    // Replayed events already have a spool file; it is deleted only once they are settled, so
    // writing them again would duplicate the file. Keep the old file instead.
    const fresh = batch.filter((item) => !item.spoolFile);
    try {
      if (fresh.length > 0) await this.writeSpool(fresh.map((item) => item.event));
    } catch (spoolError) {
      return this.settle(batch, 'failed', `${error}; spooling failed: ${(spoolError as Error).message}`, httpStatus);
    }
    for (const item of batch) {
      // Settled as spooled, but the replayed file stays for the next start.
      if (item.spoolFile) item.spoolFile.remaining = Number.POSITIVE_INFINITY;
    }
    this.settle(batch, 'spooled', error, httpStatus);
  }

  private async writeSpool(events: readonly JsonObject[]): Promise<void> {
    const dir = this.spoolDir!;
    const name = `${SPOOL_PREFIX}${Date.now().toString().padStart(15, '0')}-${randomBytes(4).toString('hex')}.ndjson`;
    const temporary = path.join(dir, `.${name}.tmp`);
    const handle = await open(temporary, 'wx', 0o640);
    try {
      await handle.writeFile(events.map((event) => JSON.stringify(event)).join('\n') + '\n');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, path.join(dir, name));
  }

  /** Queues the events of every spool file left by an earlier run, oldest first. */
  private async replaySpool(): Promise<void> {
    if (!this.spoolDir) return;
    const names = (await readdir(this.spoolDir)).filter((name) => name.startsWith(SPOOL_PREFIX) && name.endsWith('.ndjson')).sort();
    for (const name of names) {
      const file = path.join(this.spoolDir, name);
      const lines = (await readFile(file, 'utf8')).split('\n').filter((line) => line.trim() !== '');
      const spoolFile: SpoolFile = { path: file, remaining: lines.length };
      if (lines.length === 0) {
        await unlink(file).catch(() => undefined);
        continue;
      }
      for (const line of lines) {
        let event: JsonObject;
        try {
          event = JSON.parse(line) as JsonObject;
        } catch {
          // A torn line cannot be sent; keep the file for inspection rather than lose it silently.
          spoolFile.remaining = Number.POSITIVE_INFINITY;
          continue;
        }
        const item = this.item(event, spoolFile);
        this.unreportedReplay.push(item);
        await this.admit(item, true);
      }
    }
    this.flushDue = true;
    this.pump();
  }
}

function describe(body: unknown, status: number): string {
  const b = body as { error?: unknown; details?: unknown } | undefined;
  const parts = [b?.error, b?.details].filter((p) => typeof p === 'string' && p);
  return `HTTP ${status}${parts.length ? `: ${parts.join(': ')}` : ''}`;
}
