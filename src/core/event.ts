import { v7 as uuidv7 } from 'uuid';
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
  readonly now?: Date;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

export function isRfc3339(value: string): boolean {
  return RFC3339.test(value) && !Number.isNaN(Date.parse(value));
}

export function readPath(object: JsonObject, path: string): JsonValue | undefined {
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

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/**
 * Turns one parsed JSON value into an immutable event, or throws `InvalidEventError` with the
 * reason. Everything the client sent is kept; only a missing `id` or `time` is filled in.
 */
export function toEvent(value: unknown, options: EventOptions): AuditEvent {
  if (!isPlainObject(value)) throw new InvalidEventError('event must be a JSON object');
  const limits = options.limits ?? DEFAULT_EVENT_LIMITS;
  const now = (options.now ?? new Date()).toISOString();

  const { id: givenId, time: givenTime, ...rest } = value;
  if (givenId !== undefined && typeof givenId !== 'string') throw new InvalidEventError('"id" must be a string');
  if (givenId === '') throw new InvalidEventError('"id" must not be empty');
  const id = givenId ?? options.fallbackId ?? uuidv7();
  if (id.length > limits.maxIdLength) throw new InvalidEventError(`"id" is longer than ${limits.maxIdLength} characters`);

  if (givenTime !== undefined && (typeof givenTime !== 'string' || !isRfc3339(givenTime))) {
    throw new InvalidEventError('"time" must be an RFC 3339 timestamp');
  }
  const time = givenTime ?? now;

  const actor = readPath(value, options.actorField);
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

  const data: JsonObject = deepFreeze({ id, time, ...rest });
  const json = JSON.stringify(data);
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
