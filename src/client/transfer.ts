/**
 * A TypeScript port of auditstream's `transfer` SDK: publishes audit events to the JetStream
 * subject `{namespace}.{stream}` that the NATS source consumes. Unlike the Go SDK every publish
 * carries a `Nats-Msg-Id`, so a retried publish is deduplicated by JetStream within the stream's
 * duplicate window, and `flush()`/`close()` wait for every asynchronous publish.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, type JetStreamClient, type PubAck } from '@nats-io/jetstream';
import { v7 as uuidv7 } from 'uuid';

const SUBJECT_TOKEN = /^[^\s.*>]+$/;

export type ObjectId = string | number | readonly number[] | readonly string[] | null;

/** The JSON an auditstream event has on the wire (field names as in the Go SDK). */
export interface AuditEventJson {
  time: string;
  stream: string;
  msg: string;
  platform: string;
  resource: string;
  action: string;
  object_id: unknown;
  user_id: number | string;
  path: string;
  ip: string;
  extra?: Record<string, unknown>;
}

/**
 * Builder for one audit event, mirroring the Go SDK's `AuditEvent` and its `With*` methods.
 * Serialises to the same JSON fields; `extra` is omitted while empty. The event id travels in the
 * `Nats-Msg-Id` header, not in the JSON, so the payload stays what the Go SDK sends.
 */
export class AuditEventBuilder {
  /** Event id, sent as `Nats-Msg-Id`; reused when the same builder is published again. */
  id: string = uuidv7();
  time: string;
  stream: string;
  msg: string;
  platform = '';
  resource = '';
  action = '';
  objectId: unknown = null;
  userId: number | string = 0;
  path = '';
  ip = '';
  extra: Record<string, unknown> | undefined;

  constructor(stream: string, msg: string, time: Date = new Date()) {
    this.stream = stream;
    this.msg = msg;
    this.time = time.toISOString();
  }

  /** Sets the five core query fields. */
  withMeta(platform: string, resource: string, action: string, objectId: ObjectId | unknown, userId: number | string): this {
    this.platform = platform;
    this.resource = resource;
    this.action = action;
    this.objectId = objectId ?? null;
    this.userId = userId;
    return this;
  }

  /** Sets the request path; the body goes to `extra.body` when given. */
  withRequest(path: string, body?: Record<string, unknown> | null): this {
    this.path = path;
    if (body !== undefined && body !== null) this.setExtra('body', body);
    return this;
  }

  /** Stores the response code in `extra.code`, and the response in `extra.response` when given. */
  withResponse(code: number, response?: unknown): this {
    this.setExtra('code', code);
    if (response !== undefined && response !== null) this.setExtra('response', response);
    return this;
  }

  /** Sets the client IP; a non-empty user agent goes to `extra.agent`. */
  withClient(ip: string, agent?: string): this {
    this.ip = ip;
    if (agent) this.setExtra('agent', agent);
    return this;
  }

  /** Adds one custom field to `extra`. */
  withExtra(key: string, value: unknown): this {
    this.setExtra(key, value);
    return this;
  }

  /** Uses a caller-chosen event id (e.g. one already stored by the caller) instead of a UUIDv7. */
  withId(id: string): this {
    if (!id) throw new Error('event id must be a non-empty string');
    this.id = id;
    return this;
  }

  toJSON(): AuditEventJson {
    const json: AuditEventJson = {
      time: this.time,
      stream: this.stream,
      msg: this.msg,
      platform: this.platform,
      resource: this.resource,
      action: this.action,
      object_id: this.objectId,
      user_id: this.userId,
      path: this.path,
      ip: this.ip,
    };
    if (this.extra) json.extra = this.extra;
    return json;
  }

  private setExtra(key: string, value: unknown): void {
    this.extra ??= {};
    this.extra[key] = value;
  }
}

/** Go-style constructor: `newAuditEvent(stream, msg)`. */
export function newAuditEvent(stream: string, msg: string): AuditEventBuilder {
  return new AuditEventBuilder(stream, msg);
}

export interface TransferOptions {
  /** Asynchronous publishes awaiting their PubAck before `publishAsync` waits (default 1,000). */
  readonly maxPendingAsync?: number;
  /** Time to wait for a PubAck (default 5,000 ms). */
  readonly timeoutMs?: number;
  /**
   * Attempts of a publish that timed out or found no responder (default 3, with backoff). Safe
   * because the retry carries the same Nats-Msg-Id: JetStream drops a copy it already stored.
   */
  readonly attempts?: number;
}

export interface PublishOptions {
  /** Overrides the message id (default: the builder's id, the payload's `id`, or a new UUIDv7). */
  readonly msgId?: string;
  readonly timeoutMs?: number;
}

/** Errors of asynchronous publishes, thrown by `flush()`/`close()`. */
export class PublishAsyncError extends AggregateError {
  override readonly name = 'PublishAsyncError';
}

export class Transfer {
  readonly namespace: string;
  private readonly js: JetStreamClient;
  private readonly maxPendingAsync: number;
  private readonly timeoutMs: number;
  private readonly attempts: number;
  private readonly pending = new Set<Promise<void>>();
  private failures: Error[] = [];
  private closed = false;

  /** Wraps a caller-owned connection; `close()` does not close it. */
  constructor(nc: NatsConnection, namespace: string, options: TransferOptions = {}) {
    if (!SUBJECT_TOKEN.test(namespace)) throw new Error(`namespace "${namespace}" must be one subject token (no spaces, ".", "*" or ">")`);
    this.namespace = namespace;
    this.js = jetstream(nc);
    this.maxPendingAsync = options.maxPendingAsync ?? 1_000;
    if (!Number.isInteger(this.maxPendingAsync) || this.maxPendingAsync < 1) throw new Error('maxPendingAsync must be a positive integer');
    this.timeoutMs = options.timeoutMs ?? 5_000;
    this.attempts = options.attempts ?? 3;
    if (!Number.isInteger(this.attempts) || this.attempts < 1) throw new Error('attempts must be a positive integer');
  }

  /** `{namespace}.{stream}`. */
  subject(stream: string): string {
    if (!SUBJECT_TOKEN.test(stream)) throw new Error(`stream "${stream}" must be one subject token (no spaces, ".", "*" or ">")`);
    return `${this.namespace}.${stream}`;
  }

  /** Publishes one event (a builder or any JSON object) and waits for the JetStream PubAck. */
  async publish(stream: string, event: AuditEventBuilder | Record<string, unknown>, options: PublishOptions = {}): Promise<PubAck> {
    this.assertOpen();
    const { data, msgId } = encode(event, options.msgId);
    return this.send(stream, data, msgId, options.timeoutMs);
  }

  /** Publishes pre-serialised JSON bytes and waits for the PubAck. */
  async publishRaw(stream: string, data: Uint8Array | string, options: PublishOptions = {}): Promise<PubAck> {
    this.assertOpen();
    const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
    return this.send(stream, bytes, options.msgId ?? uuidv7(), options.timeoutMs);
  }

  /**
   * Publishes without waiting for the PubAck. Resolves once the publish is in flight; waits while
   * `maxPendingAsync` publishes are. Failures are collected and thrown by `flush()`.
   */
  async publishAsync(stream: string, event: AuditEventBuilder | Record<string, unknown>, options: PublishOptions = {}): Promise<void> {
    this.assertOpen();
    const { data, msgId } = encode(event, options.msgId);
    await this.startAsync(stream, data, msgId, options.timeoutMs);
  }

  /** `publishAsync` for pre-serialised bytes. */
  async publishRawAsync(stream: string, data: Uint8Array | string, options: PublishOptions = {}): Promise<void> {
    this.assertOpen();
    const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
    await this.startAsync(stream, bytes, options.msgId ?? uuidv7(), options.timeoutMs);
  }

  /** Asynchronous publishes still awaiting their PubAck. */
  pendingAsync(): number {
    return this.pending.size;
  }

  /** Waits for every asynchronous publish; throws `PublishAsyncError` listing those that failed. */
  async flush(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
    if (this.failures.length > 0) {
      const failures = this.failures;
      this.failures = [];
      throw new PublishAsyncError(failures, `${failures.length} asynchronous publish${failures.length === 1 ? '' : 'es'} failed: ${failures[0]!.message}`);
    }
  }

  /** Flushes and refuses further publishes. The NATS connection stays open (the caller owns it). */
  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
  }

  private async startAsync(stream: string, data: Uint8Array, msgId: string, timeoutMs?: number): Promise<void> {
    while (this.pending.size >= this.maxPendingAsync) await Promise.race(this.pending);
    const task: Promise<void> = this.send(stream, data, msgId, timeoutMs).then(
      () => undefined,
      (error: unknown) => {
        this.failures.push(new Error(`publish of ${msgId} to ${this.subject(stream)} failed: ${(error as Error)?.message ?? error}`));
      },
    ).finally(() => this.pending.delete(task));
    this.pending.add(task);
  }

  private send(stream: string, data: Uint8Array, msgId: string, timeoutMs?: number): Promise<PubAck> {
    // msgID is sent as the Nats-Msg-Id header.
    return this.js.publish(this.subject(stream), data, { msgID: msgId, timeout: timeoutMs ?? this.timeoutMs, retries: this.attempts });
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('transfer is closed');
  }
}

function encode(event: AuditEventBuilder | Record<string, unknown>, msgId: string | undefined): { data: Uint8Array; msgId: string } {
  const json = JSON.stringify(event);
  if (typeof json !== 'string') throw new Error('event must serialise to JSON');
  const givenId = event instanceof AuditEventBuilder ? event.id : typeof event.id === 'string' && event.id ? event.id : undefined;
  return { data: new TextEncoder().encode(json), msgId: msgId ?? givenId ?? uuidv7() };
}
