/**
 * The vocabulary every source, sink and plugin shares. Everything here is part of the public
 * plugin API (re-exported from `src/public`), so changes are breaking changes.
 */

declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

export type EventId = Brand<string, 'EventId'>;
export type ActorId = Brand<string, 'ActorId'>;
export type PipelineName = Brand<string, 'PipelineName'>;

export type JsonPrimitive = string | number | boolean | null;
export type JsonValue = JsonPrimitive | JsonObject | readonly JsonValue[];
export interface JsonObject {
  readonly [key: string]: JsonValue;
}

/**
 * One audit event as every sink receives it. Immutable: `data` is deeply frozen.
 * `data` is the stored event: what the client sent, with `id` and `time` filled in when absent.
 */
export interface AuditEvent {
  readonly id: EventId;
  /** Hash-chain partition; undefined when the event names no actor. */
  readonly actorId: ActorId | undefined;
  /** RFC 3339 event time (the receipt time when the client sent none). */
  readonly time: string;
  /** RFC 3339 time auditpipe received the event. */
  readonly receivedAt: string;
  readonly data: JsonObject;
  /** `JSON.stringify(data)`, computed once at the source. */
  readonly json: string;
  /** UTF-8 length of `json`; what the batching stage counts. */
  readonly bytes: number;
}

/** What a sink may say back about individual events of a batch it otherwise wrote. */
export interface WriteResult {
  /** Events that can never be written by this sink (e.g. a constraint violation): termed and dead-lettered. */
  readonly rejected?: ReadonlyArray<{ readonly id: EventId; readonly reason: string }>;
  /** Per-event facts for the source's answer (e.g. chain position), merged across sinks. */
  readonly receipts?: ReadonlyMap<EventId, Readonly<Record<string, JsonValue>>>;
}

export interface Batch {
  readonly pipeline: PipelineName;
  /** Sequence number of the batch within this process; for logs only. */
  readonly seq: number;
  readonly events: readonly AuditEvent[];
  readonly bytes: number;
}

/** How an envelope was settled; a source answers its client from this. */
export type Outcome =
  | { readonly kind: 'ack'; readonly receipt?: Readonly<Record<string, JsonValue>> }
  | { readonly kind: 'nak'; readonly delayMs: number; readonly reason: string }
  | { readonly kind: 'term'; readonly reason: string };

/**
 * One event plus the way to settle it with its source. The engine calls exactly one of
 * ack/nak/term, exactly once, and only after every required sink has answered.
 */
export interface Envelope {
  readonly event: AuditEvent;
  settle(outcome: Outcome): void;
  /** Tells the source a write is still in progress (NATS `working()`); optional. */
  inProgress?(): void;
}

/** A raw input that could not become an event, or an event a sink rejected. */
export interface DeadLetter {
  readonly pipeline: PipelineName;
  readonly reason: string;
  /** The event when there was one. */
  readonly event?: AuditEvent;
  /** The raw bytes as received when there was no valid event (e.g. malformed JSON). */
  readonly raw?: Uint8Array | string;
  /** Where it came from, e.g. `nats:audit.logs#42`. */
  readonly origin?: string;
}
