/**
 * argus's read API over the pipeline's chain store (provided by the Postgres chain sink through
 * DI): `GET /api/audit-logs`, `GET /api/audit-logs/{id}`, `GET /api/audit-summary`.
 */
import { isRfc3339, type JsonObject, type JsonValue } from '../../../public/index.ts';
import type { ChainQuery, ChainRecord, ChainStoreReader } from '../../../public/security.ts';
import { argusRecord } from './records.ts';

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 1000;
export const MAX_OFFSET = 10_000;
/** Store records examined for one answer when filters the store cannot apply are in play. */
export const MAX_SCANNED = 20_000;
const MAX_FILTER_CHARS = 256;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Filters on top-level event fields, matched exactly. */
const FIELD_FILTERS = ['traceId', 'eventType', 'status', 'targetId'] as const;
type FieldFilter = (typeof FIELD_FILTERS)[number];

export class ReadApiError extends Error {
  override readonly name = 'ReadApiError';
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/**
 * The store interface the read API uses: `ChainStoreReader`, plus two optional abilities a store
 * may offer. Without them the API filters traceId/eventType/status/targetId itself and reports
 * `total` as a lower bound.
 */
export interface ArgusReadStore extends ChainStoreReader {
  /** True when `query` applies `fields` (exact matches on top-level event fields) itself. */
  readonly filtersFields?: boolean;
  count?(filter: ChainQuery & { fields?: Readonly<Record<string, string>> }): Promise<number>;
}

export interface ListRequest {
  readonly store: ChainQuery & { fields: Record<string, string> };
  readonly limit: number;
  readonly offset: number;
  readonly includeMessage: boolean;
}

/** Parses the query string of `GET /api/audit-logs` the way argus did, plus the filters it lacked. */
export function parseListQuery(params: URLSearchParams): ListRequest {
  const text = (name: string): string | undefined => {
    const value = params.get(name);
    if (value === null || value === '') return undefined;
    if (value.length > MAX_FILTER_CHARS) throw new ReadApiError(400, `${name} is longer than ${MAX_FILTER_CHARS} characters`);
    return value;
  };
  const fields: Record<string, string> = {};
  for (const name of FIELD_FILTERS) {
    const value = text(name);
    if (value !== undefined) fields[name] = value;
  }
  if (fields.traceId !== undefined && !UUID.test(fields.traceId)) throw new ReadApiError(400, 'traceId must be a UUID');
  const time = (name: string): string | undefined => {
    const value = text(name);
    if (value !== undefined && !isRfc3339(value)) {
      throw new ReadApiError(400, `${name} must be an RFC 3339 time, e.g. 2026-01-02T15:04:05Z`);
    }
    return value;
  };
  const from = time('from') ?? time('startTime');
  const to = time('to') ?? time('endTime');
  if (from && to && Date.parse(from) >= Date.parse(to)) throw new ReadApiError(400, 'from must be earlier than to');
  // argus silently replaced an invalid limit by 100 and capped it at 1000; kept for its clients.
  const rawLimit = Number(params.get('limit'));
  const limit = Number.isInteger(rawLimit) && rawLimit > 0 ? Math.min(rawLimit, MAX_LIMIT) : DEFAULT_LIMIT;
  const rawOffset = Number(params.get('offset'));
  const offset = Number.isInteger(rawOffset) && rawOffset > 0 ? rawOffset : 0;
  if (offset > MAX_OFFSET) throw new ReadApiError(400, `offset must be at most ${MAX_OFFSET}; page further with the nextCursor of each answer`);
  const cursor = text('cursor');
  if (cursor !== undefined && offset > 0) throw new ReadApiError(400, 'give either offset or cursor, not both');
  const actor = text('actorId');
  const action = text('action');
  return {
    store: {
      ...(actor !== undefined ? { actor } : {}),
      ...(action !== undefined ? { action } : {}),
      ...(from !== undefined ? { from } : {}),
      ...(to !== undefined ? { to } : {}),
      ...(cursor !== undefined ? { cursor } : {}),
      order: 'desc',
      fields,
    },
    limit,
    offset,
    includeMessage: params.get('includeMessage') === 'true',
  };
}

function matchesFields(event: JsonObject, fields: Readonly<Record<string, string>>): boolean {
  for (const [name, value] of Object.entries(fields)) {
    const actual = event[name as FieldFilter];
    if (name === 'traceId' ? typeof actual !== 'string' || actual.toLowerCase() !== value.toLowerCase() : actual !== value) return false;
  }
  return true;
}

export interface ListAnswer {
  readonly logs: Array<Record<string, JsonValue>>;
  readonly total: number;
  readonly limit: number;
  readonly offset: number;
  /** Pass as `cursor` for the next page; absent on the last page. */
  readonly nextCursor?: string;
  /** False when `total` is a lower bound (the store cannot count with these filters). */
  readonly totalExact: boolean;
}

/**
 * Pages through the store until `offset + limit` matches were seen. A store page never asks for
 * more records than matches still wanted, so a page always ends on a store cursor and the
 * cursor handed out never skips or repeats an event.
 */
export async function listAuditLogs(store: ArgusReadStore, request: ListRequest): Promise<ListAnswer> {
  const { limit, offset } = request;
  const fields = request.store.fields;
  const postFilter = Object.keys(fields).length > 0 && store.filtersFields !== true;
  const { fields: _fields, ...baseQuery } = request.store;
  const storeQuery = store.filtersFields ? request.store : baseQuery;
  const records: ChainRecord[] = [];
  let toSkip = offset;
  let cursor = request.store.cursor;
  let scanned = 0;
  let exhausted = false;
  while (records.length < limit) {
    const wanted = Math.min(MAX_LIMIT, toSkip + (limit - records.length));
    const page = await store.query({ ...storeQuery, ...(cursor !== undefined ? { cursor } : {}), limit: wanted });
    scanned += page.records.length;
    for (const record of page.records) {
      if (postFilter && !matchesFields(record.event, fields)) continue;
      if (toSkip > 0) {
        toSkip -= 1;
        continue;
      }
      records.push(record);
    }
    cursor = page.next;
    if (cursor === undefined) {
      exhausted = true;
      break;
    }
    if (scanned >= MAX_SCANNED) break;
  }
  const logs = records.map((record) => argusRecord(
    { id: record.id, time: record.time, receivedAt: record.receivedAt, data: record.event },
    undefined,
    { includeMessage: request.includeMessage },
  ));
  let total: number;
  let totalExact = false;
  if (store.count && (!postFilter || store.filtersFields)) {
    const { cursor: _c, order: _o, ...countFilter } = storeQuery as ChainQuery & { fields?: Record<string, string> };
    total = await store.count(countFilter);
    totalExact = request.store.cursor === undefined;
  } else {
    total = offset + logs.length + (exhausted ? 0 : 1);
    totalExact = exhausted && request.store.cursor === undefined;
  }
  return { logs, total, limit, offset, ...(exhausted || cursor === undefined ? {} : { nextCursor: cursor }), totalExact };
}

/** One record with its chain position, for `GET /api/audit-logs/{id}`. */
export function recordWithPosition(record: ChainRecord): Record<string, JsonValue> {
  return argusRecord(
    { id: record.id, time: record.time, receivedAt: record.receivedAt, data: record.event },
    { sequence: record.sequence, previousHash: record.previousHash, hash: record.hash },
  );
}

const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];

/**
 * argus's daily summary: up to 1000 newest events with an event time in today (UTC), the upper
 * bound exclusive (argus included the first instant of tomorrow), plus chain totals.
 */
export async function auditSummary(store: ArgusReadStore, now = new Date()): Promise<Record<string, JsonValue>> {
  const day = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
  const next = new Date(day.getTime() + 86_400_000);
  const page = await store.query({ from: day.toISOString(), to: next.toISOString(), order: 'desc', limit: MAX_LIMIT });
  const date = day.toISOString().slice(0, 10);
  const str = (value: JsonValue | undefined) => (typeof value === 'string' ? value : '');
  const runtimeActivity = page.records.map((record) => ({
    actor: str(record.event.actorId) || record.actor,
    actorType: str(record.event.actorType),
    action: str(record.event.action),
    eventType: str(record.event.eventType),
    status: str(record.event.status),
    timestamp: new Date(record.time).toISOString(),
    id: record.id,
  }));
  const totals = await store.summary();
  return {
    date,
    summary: `Audit activity report for ${MONTHS[day.getUTCMonth()]} ${String(day.getUTCDate()).padStart(2, '0')}, ${day.getUTCFullYear()}`,
    runtimeActivity,
    chain: {
      events: totals.events,
      actors: totals.actors,
      ...(totals.lastCheckpoint ? { lastCheckpoint: { ...totals.lastCheckpoint } } : {}),
    },
  };
}
