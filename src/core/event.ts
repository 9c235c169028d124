import { v7 as uuidv7 } from 'uuid';
import { isRfc3339 } from './time.ts';
import type { ActorId, AuditEvent, EventId, JsonObject, JsonValue } from './types.ts';

/** An input that can never become an event; the message is the reason given back to the client. */
export class InvalidEventError extends Error {
  override readonly name = 'InvalidEventError';
}

export interface EventLimits {
  readonly maxIdLength: number;
  readonly maxActorIdLength: number;
  readonly maxEventBytes: number;
}

export const DEFAULT_EVENT_LIMITS: EventLimits = { maxIdLength: 256, maxActorIdLength: 256, maxEventBytes: 1024 * 1024 };

export interface EventOptions {
  /** Dotted path of the field that holds the actor id (`actorId`, `user_id`, `actor.id`). */
  readonly actorField: string;
  /** Id used when the event has none (e.g. `Nats-Msg-Id`); a UUIDv7 otherwise. */
  readonly fallbackId?: string;
  readonly limits?: EventLimits;
  /** Reject an event without the actor field (the pipeline's `require_actor`). */
  readonly requireActor?: boolean;
  /** The actor id when the caller has already read it (a dialect whose actor field is not a string); the actor field is then not read. */
  readonly actorId?: string;
  readonly now?: Date;
}

export function readPath(object: JsonObject, path: string): JsonValue | undefined {
  // Most actor fields are one key; splitting the path per event was a measurable share of ingest.
  if (!path.includes('.')) return object[path];
  let current: JsonValue | undefined = object;
  for (const key of path.split('.')) {
    if (current === null || typeof current !== 'object' || Array.isArray(current)) return undefined;
    current = (current as JsonObject)[key];
  }
  return current;
}

function isPlainObject(value: unknown): value is JsonObject {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Freezes a freshly parsed JSON value and everything in it (no Object.values arrays: this runs per event). */
function deepFreeze(value: JsonObject | readonly JsonValue[]): void {
  Object.freeze(value);
  for (const key in value) {
    const child = (value as JsonObject)[key];
    if (child !== null && typeof child === 'object' && !Object.isFrozen(child)) deepFreeze(child);
  }
}

let clockMs = Number.NaN;
let clockIso = '';

/** The current time as RFC 3339; one Date per millisecond rather than per event. */
function nowIso(): string {
  const ms = Date.now();
  if (ms !== clockMs) {
    clockMs = ms;
    clockIso = new Date(ms).toISOString();
  }
  return clockIso;
}

/**
 * Turns one parsed JSON value into an immutable event, or throws `InvalidEventError` with the
 * reason. Everything the client sent is kept; only a missing `id` or `time` is filled in.
 */
export function toEvent(value: unknown, options: EventOptions): AuditEvent {
  if (!isPlainObject(value)) throw new InvalidEventError('event must be a JSON object');
  const limits = options.limits ?? DEFAULT_EVENT_LIMITS;
  const now = options.now ? options.now.toISOString() : nowIso();

  const givenId = value.id;
  const givenTime = value.time;
  if (givenId !== undefined && typeof givenId !== 'string') throw new InvalidEventError('"id" must be a string');
  if (givenId === '') throw new InvalidEventError('"id" must not be empty');
  const id = givenId ?? options.fallbackId ?? uuidv7();
  if (id.length > limits.maxIdLength) throw new InvalidEventError(`"id" is longer than ${limits.maxIdLength} characters`);

  if (givenTime !== undefined && (typeof givenTime !== 'string' || !isRfc3339(givenTime))) {
    throw new InvalidEventError('"time" must be an RFC 3339 timestamp');
  }
  const time = givenTime ?? now;

  const actor = options.actorId ?? readPath(value, options.actorField);
  if (actor !== undefined && typeof actor !== 'string') {
    throw new InvalidEventError(`"${options.actorField}" (the actor id) must be a string`);
  }
  if (actor === '') throw new InvalidEventError(`"${options.actorField}" (the actor id) must not be empty`);
  if (actor === undefined && options.requireActor) {
    throw new InvalidEventError(`"${options.actorField}" (the actor id) is required: this pipeline has require_actor on`);
  }
  if (actor !== undefined && actor.length > limits.maxActorIdLength) {
    throw new InvalidEventError(`"${options.actorField}" (the actor id) is longer than ${limits.maxActorIdLength} characters`);
  }

  // id and time first; spreading the value after them keeps that order (same keys, same values).
  const data: Record<string, JsonValue> = { id, time, ...value };
  // A caller's object (not JSON.parse output) may hold `id: undefined`; the spread copied it over.
  data.id = id;
  data.time = time;
  // Serialised before freezing: V8's JSON.stringify takes a slower path over frozen objects
  // (~1.5-2 µs of ~4 for a 500-byte event; docs/decisions.md, "Serialise before freezing").
  const json = JSON.stringify(data);
  deepFreeze(data);
  const bytes = Buffer.byteLength(json);
  if (bytes > limits.maxEventBytes) throw new InvalidEventError(`event is ${bytes} bytes, over the limit of ${limits.maxEventBytes}`);
  return Object.freeze({
    id: id as EventId,
    actorId: actor as ActorId | undefined,
    time,
    receivedAt: now,
    data,
    json,
    bytes,
  });
}
