/**
 * argus compatibility: its request validation, its enums file, and the record shape its clients
 * read back. See docs/argus.md for what differs from argus and why.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { isRfc3339, type AuditEvent, type JsonObject, type JsonValue } from '../../../public/index.ts';

export interface ArgusEnums {
  readonly eventTypes: ReadonlySet<string>;
  readonly eventActions: ReadonlySet<string>;
  readonly actorTypes: ReadonlySet<string>;
  readonly targetTypes: ReadonlySet<string>;
}

const DEFAULT_ENUMS = {
  eventTypes: ['MANAGEMENT_EVENT', 'USER_MANAGEMENT', 'DATA_FETCH'],
  eventActions: ['CREATE', 'READ', 'UPDATE', 'DELETE'],
  actorTypes: ['SERVICE', 'ADMIN', 'MEMBER', 'SYSTEM'],
  targetTypes: ['SERVICE', 'RESOURCE'],
};

type EnumName = keyof typeof DEFAULT_ENUMS;

/**
 * Reads an argus `enums.yaml` (`enums: {eventTypes, eventActions, actorTypes, targetTypes}`).
 * Unlike argus, a list in the file replaces the default list (so a value can be removed), and an
 * unreadable or invalid file stops start-up instead of silently falling back to defaults.
 */
export function loadArgusEnums(file: string | undefined): ArgusEnums {
  const lists: Record<EnumName, string[]> = { ...DEFAULT_ENUMS };
  if (file) {
    let doc: unknown;
    try {
      doc = parseYaml(readFileSync(file, 'utf8'));
    } catch (error) {
      throw new Error(`argus enums file ${file}: ${(error as Error).message}`);
    }
    const enums = (doc as { enums?: unknown } | null)?.enums;
    if (!enums || typeof enums !== 'object') throw new Error(`argus enums file ${file}: must have a top-level "enums" mapping`);
    for (const [key, value] of Object.entries(enums)) {
      if (!(key in DEFAULT_ENUMS)) throw new Error(`argus enums file ${file}: unknown list "${key}" (known: ${Object.keys(DEFAULT_ENUMS).join(', ')})`);
      if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) throw new Error(`argus enums file ${file}: "${key}" must be a list of strings`);
      lists[key as EnumName] = value;
    }
  }
  return {
    eventTypes: new Set(lists.eventTypes),
    eventActions: new Set(lists.eventActions),
    actorTypes: new Set(lists.actorTypes),
    targetTypes: new Set(lists.targetTypes),
  };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const SIGNATURE_FIELDS = ['signature', 'signatureAlgorithm', 'publicKeyId'] as const;
const SIGNATURE_ALGORITHMS = ['RS256', 'EdDSA', 'PS256'];
const MAX_ID_LENGTH = 255;

export class ArgusValidationError extends Error {
  override readonly name = 'ArgusValidationError';
}

const isObject = (value: unknown): value is Record<string, JsonValue> =>
  value !== null && typeof value === 'object' && !Array.isArray(value);

/** Some but not all of argus's three signature fields: that item is invalid (argus failed the whole bulk request; we fail the item). */
export function partialSignatureError(item: unknown): string | undefined {
  if (!isObject(item)) return undefined;
  const present = SIGNATURE_FIELDS.filter((field) => item[field] !== undefined && item[field] !== null && item[field] !== '');
  if (present.length > 0 && present.length < SIGNATURE_FIELDS.length) {
    return `signature, signatureAlgorithm and publicKeyId must be given together (got ${present.join(', ')})`;
  }
  return undefined;
}

/**
 * Validates one argus create request and maps it to a native event object: `timestamp` becomes
 * `time`, the base64 `message` is decoded to the JSON it holds, everything else is kept. An `id`
 * the client gives (argus ignored it) is kept, so a retried request is stored once.
 */
export function argusToNative(item: unknown, enums: ArgusEnums): JsonObject {
  if (!isObject(item)) throw new ArgusValidationError('request body must be a JSON object');
  const partial = partialSignatureError(item);
  if (partial) throw new ArgusValidationError(partial);
  const str = (field: string): string | undefined => {
    const value = item[field];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'string') throw new ArgusValidationError(`${field} must be a string`);
    return value;
  };
  const { timestamp: _t, message: _m, time: _time, ...rest } = item;
  const id = item.id;
  if (id !== undefined && id !== null && (typeof id !== 'string' || id === '' || id.length > MAX_ID_LENGTH)) {
    throw new ArgusValidationError(`id must be a non-empty string of at most ${MAX_ID_LENGTH} characters when given`);
  }
  if (id === null) delete rest.id;
  const timestamp = str('timestamp');
  if (!timestamp) throw new ArgusValidationError('timestamp is required');
  // argus parsed with Go's time.RFC3339, which takes no space between date and time.
  if (!isRfc3339(timestamp) || timestamp[10] === ' ') throw new ArgusValidationError('timestamp must be RFC 3339 (e.g. 2026-01-02T15:04:05Z)');
  const status = str('status');
  if (status !== 'SUCCESS' && status !== 'FAILURE') throw new ArgusValidationError('status must be SUCCESS or FAILURE');
  const actorId = str('actorId');
  if (!actorId) throw new ArgusValidationError('actorId is required');
  if (actorId.length > MAX_ID_LENGTH) throw new ArgusValidationError(`actorId must be at most ${MAX_ID_LENGTH} characters`);
  const actorType = str('actorType');
  if (!actorType || !enums.actorTypes.has(actorType)) throw new ArgusValidationError(`actorType must be one of ${[...enums.actorTypes].join(', ')}`);
  const targetType = str('targetType');
  if (!targetType || !enums.targetTypes.has(targetType)) throw new ArgusValidationError(`targetType must be one of ${[...enums.targetTypes].join(', ')}`);
  const eventType = str('eventType');
  if (eventType && !enums.eventTypes.has(eventType)) throw new ArgusValidationError(`eventType must be one of ${[...enums.eventTypes].join(', ')}`);
  const action = str('action');
  if (action && !enums.eventActions.has(action)) throw new ArgusValidationError(`action must be one of ${[...enums.eventActions].join(', ')}`);
  const traceId = str('traceId');
  if (traceId && !UUID.test(traceId)) throw new ArgusValidationError('traceId must be a UUID');
  const targetId = str('targetId');
  if (targetId && targetId.length > MAX_ID_LENGTH) throw new ArgusValidationError(`targetId must be at most ${MAX_ID_LENGTH} characters`);
  if (item.metadata !== undefined && item.metadata !== null && !isObject(item.metadata)) throw new ArgusValidationError('metadata must be a JSON object');
  for (const field of SIGNATURE_FIELDS) str(field);
  const algorithm = str('signatureAlgorithm');
  if (algorithm && !SIGNATURE_ALGORITHMS.includes(algorithm)) throw new ArgusValidationError(`signatureAlgorithm must be one of ${SIGNATURE_ALGORITHMS.join(', ')}`);

  const native: Record<string, JsonValue> = { time: timestamp, ...rest };
  const message = str('message');
  if (message) native.message = decodeMessage(message);
  return native;
}

function decodeMessage(message: string): JsonValue {
  if (!BASE64.test(message) || message.length % 4 !== 0) throw new ArgusValidationError('message must be base64 (standard alphabet, padded)');
  const text = Buffer.from(message, 'base64').toString('utf8');
  try {
    return JSON.parse(text) as JsonValue;
  } catch {
    throw new ArgusValidationError('message must be the base64 encoding of a JSON value');
  }
}

/** The parts of a stored event an argus record is built from. */
export interface StoredEventView {
  readonly id: string;
  readonly time: string;
  readonly receivedAt: string;
  readonly data: JsonObject;
}

/** The record argus answers with (its `AuditLog` JSON), plus chain fields when a sink gave them. */
export function argusRecord(
  event: AuditEvent | StoredEventView,
  receipt?: Readonly<Record<string, JsonValue>>,
  options: { includeMessage?: boolean } = {},
): Record<string, JsonValue> {
  const d = event.data;
  const record: Record<string, JsonValue> = { id: event.id, timestamp: toUtc(event.time) };
  const copy = (field: string, omitEmpty = true) => {
    const value = d[field];
    if (value === undefined || (omitEmpty && (value === null || value === ''))) return;
    record[field] = value;
  };
  copy('traceId');
  copy('status');
  copy('eventType');
  copy('action');
  copy('actorType');
  copy('actorId');
  copy('targetType');
  copy('targetId');
  if (options.includeMessage ?? true) copy('message');
  record.metadata = d.metadata ?? null;
  copy('signature');
  copy('signatureAlgorithm');
  copy('publicKeyId');
  copy('signatureVersion');
  copy('signatureFormat');
  if (receipt?.previousHash !== undefined) record.previousHash = receipt.previousHash;
  if (receipt?.hash !== undefined) record.currentHash = receipt.hash;
  if (receipt?.sequence !== undefined) record.sequence = receipt.sequence;
  record.createdAt = toUtc(event.receivedAt);
  return record;
}

function toUtc(time: string): string {
  const fraction = /\.(\d+)/.exec(time)?.[1];
  const iso = new Date(time).toISOString();
  // Go's RFC3339Nano, as argus wrote it: the client's sub-millisecond digits kept, trailing zeros dropped.
  const digits = (fraction && fraction.length > 3 ? fraction : iso.slice(20, 23)).replace(/0+$/, '');
  return `${iso.slice(0, 19)}${digits ? `.${digits}` : ''}Z`;
}
