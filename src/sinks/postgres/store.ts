/**
 * The chain store: appends events to per-actor hash chains (append.ts), writes signed
 * checkpoints, and answers reads (for the read API and for the verifier).
 */
import { CompiledQuery, sql } from 'kysely';
import type { AuditEvent, JsonObject } from '../../public/index.ts';
import { type ChainPage, type ChainQuery, type ChainRecord, type ChainStoreReader, type ChainSummary } from '../../public/security.ts';
import {
  FIRST_PREVIOUS, headsRoot, MAX_ANCHORED_HEADS, parseCheckpoint, signCheckpoint, sortHeads,
  type AnchoredCheckpointPayload, type ChainHead,
} from '../../public/security.ts';
import type { CheckpointKey } from '../../public/security.ts';
import {
  checkChains, formatHeads, type ChainCheckInput, type ChainCheckResult, type StoredCheckpoint, type VerifyRow, type VerifySource,
} from '../../public/security.ts';
import { joinWithOrderedWalk } from '../../public/security.ts';
import { ChainAppender, columnTime, type AppendResult } from './append.ts';
import type { ChainDb } from './db.ts';
import { pagedRows, type FetchTextRows, type RowSelection } from './verify-rows.ts';
import { checkAllRows } from './verify-workers.ts';

/**
 * How the verifier may read a PostgreSQL store: all rows in storage order with binary COPY, on
 * `workers` threads that each read their chunks of the table under one snapshot on a read-only
 * connection to `url` (`UnorderedChainCheck`); only actors that do not check out are read again
 * in sequence order.
 */
export interface ParallelVerify {
  readonly url: string;
  readonly workers: number;
  /**
   * Fewer threads when each would get fewer events than this: a worker thread needs a few
   * hundred milliseconds to load and warm up, which a small share does not pay back. 0: always `workers`.
   */
  readonly minEventsPerThread?: number;
  /** Heap blocks (8 kB) each thread reads at a time; by default sized from the table (`ChunkOptions`). */
  readonly chunkBlocks?: number;
}

export class ChainStore implements ChainStoreReader, VerifySource {
  readonly db: ChainDb;
  readonly schema: string;
  private readonly events;
  private readonly heads_;
  private readonly checkpoints_;
  private readonly appender: ChainAppender;

  private readonly parallelVerify: ParallelVerify | undefined;

  constructor(db: ChainDb, schema: string, options: { parallelVerify?: ParallelVerify } = {}) {
    this.db = db;
    this.schema = schema;
    this.parallelVerify = options.parallelVerify;
    this.events = sql.id(schema, 'chain_events');
    this.heads_ = sql.id(schema, 'chain_heads');
    this.checkpoints_ = sql.id(schema, 'chain_checkpoints');
    this.appender = new ChainAppender(db, schema);
  }

  /** The database must store text as UTF-8, or the hashed bytes would not round-trip. */
  async checkEncoding(): Promise<void> {
    const result = await this.db.read((db) => sql<{ server_encoding: string }>`SHOW server_encoding`.execute(db));
    const encoding = result.rows[0]?.server_encoding;
    if (encoding !== 'UTF8') throw new Error(`database encoding is ${encoding}; the chain store needs UTF8 so the hashed bytes are stored exactly`);
  }

  /** Throws a clear error when the schema holds no chain store (the verifier never creates one). */
  async checkTables(): Promise<void> {
    const result = await this.db.read((db) => sql<{ t: string | null }>`SELECT to_regclass(${`"${this.schema}".chain_events`})::text AS t`.execute(db));
    if (!result.rows[0]?.t) throw new Error(`no chain store in schema ${this.schema} (table ${this.schema}.chain_events does not exist)`);
  }

  /** Appends a batch after those already handed in (see ChainAppender). */
  append(events: readonly AuditEvent[], abort?: AbortSignal): Promise<AppendResult> {
    return this.appender.append(events, abort);
  }

  /**
   * Signs and stores the next checkpoint over every head, chained to the previous one. Writers
   * in several processes take turns through an advisory lock, so numbers never collide.
   */
  async writeCheckpoint(key: CheckpointKey, origin: string, now = new Date()): Promise<AnchoredCheckpointPayload> {
    return this.db.transaction(async (tx) => {
      await sql`SELECT pg_advisory_xact_lock(hashtext(${`auditpipe:checkpoint:${this.schema}`}))`.execute(tx);
      const last = await sql<{ number: string | number; body: string; hash: string }>`
        SELECT number, body, hash FROM ${this.checkpoints_} ORDER BY number DESC LIMIT 1`.execute(tx);
      const headRows = await sql<{ actor: string; seq: string | number; hash: string }>`
        SELECT actor, seq, hash FROM ${this.heads_} WHERE seq > 0`.execute(tx);
      const heads = sortHeads(headRows.rows.map((row) => ({ actor: row.actor, seq: Number(row.seq), hash: row.hash })));
      const root = headsRoot(heads);
      const previous = last.rows[0];
      const previousRoot = previous ? parseCheckpoint(previous.body).root : undefined;
      const signed = signCheckpoint({
        origin,
        number: previous ? Number(previous.number) + 1 : 1,
        time: now.toISOString(),
        actors: heads.length,
        events: heads.reduce((n, head) => n + head.seq, 0),
        root,
        previous: previous?.hash ?? FIRST_PREVIOUS,
      }, key.privateKey, key.keyId);
      await sql`INSERT INTO ${this.checkpoints_} (number, created_at, body, hash, signature, key_id, heads)
        VALUES (${signed.number}, ${signed.time}, ${signed.text}, ${signed.hash}, ${signed.signature}, ${signed.keyId},
          ${root === previousRoot ? null : formatHeads(heads)})`.execute(tx);
      // Anchors get the heads when they changed, so a verifier can name a rewritten actor.
      return root === previousRoot || heads.length > MAX_ANCHORED_HEADS
        ? signed
        : { ...signed, heads: heads.map((head) => [head.actor, head.seq, head.hash] as const) };
    });
  }

  // ---- read API -------------------------------------------------------------------------

  private toRecord(row: { actor: string; seq: string | number; prev_hash: string; hash: string; canonical: string }): ChainRecord {
    const record = JSON.parse(row.canonical) as { id: string; receivedAt: string; event: JsonObject };
    return {
      id: record.id,
      actor: row.actor,
      sequence: Number(row.seq),
      previousHash: row.prev_hash,
      hash: row.hash,
      time: typeof record.event.time === 'string' ? record.event.time : '',
      receivedAt: record.receivedAt,
      event: record.event,
    };
  }

  async get(id: string): Promise<ChainRecord | undefined> {
    const result = await this.db.read((db) => sql<{ actor: string; seq: string; prev_hash: string; hash: string; canonical: string }>`
      SELECT actor, seq, prev_hash, hash, canonical FROM ${this.events} WHERE event_id = ${id}`.execute(db));
    const row = result.rows[0];
    return row ? this.toRecord(row) : undefined;
  }

  async query(filter: ChainQuery): Promise<ChainPage> {
    const limit = filter.limit ?? 100;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new RangeError('limit must be an integer from 1 to 1000');
    const desc = (filter.order ?? 'desc') === 'desc';
    const conditions = [sql`true`];
    if (filter.actor !== undefined) conditions.push(sql`actor = ${filter.actor}`);
    if (filter.action !== undefined) conditions.push(sql`(canonical::jsonb) -> 'event' ->> 'action' = ${filter.action}`);
    if (filter.from !== undefined) conditions.push(sql`event_time >= ${columnTime(filter.from).text}::timestamptz`);
    if (filter.to !== undefined) conditions.push(sql`event_time < ${columnTime(filter.to).text}::timestamptz`);
    if (filter.cursor !== undefined) {
      const [time, id] = decodeCursor(filter.cursor);
      conditions.push(desc
        ? sql`(event_time, event_id) < (${time}::timestamptz, ${id})`
        : sql`(event_time, event_id) > (${time}::timestamptz, ${id})`);
    }
    const order = desc ? sql`event_time DESC, event_id DESC` : sql`event_time ASC, event_id ASC`;
    const result = await this.db.read((db) => sql<{ actor: string; seq: string; prev_hash: string; hash: string; canonical: string; event_id: string; et: string }>`
      SELECT actor, seq, prev_hash, hash, canonical, event_id, to_char(event_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS et
      FROM ${this.events} WHERE ${sql.join(conditions, sql` AND `)} ORDER BY ${order} LIMIT ${limit + 1}`.execute(db));
    const rows = result.rows.slice(0, limit);
    const lastRow = rows.at(-1);
    return {
      records: rows.map((row) => this.toRecord(row)),
      ...(result.rows.length > limit && lastRow ? { next: encodeCursor(lastRow.et, lastRow.event_id) } : {}),
    };
  }

  async summary(): Promise<ChainSummary> {
    return this.db.read(async (db) => {
      const heads = await sql<{ actors: string; events: string | null }>`
        SELECT count(*) AS actors, sum(seq) AS events FROM ${this.heads_} WHERE seq > 0`.execute(db);
      const last = await sql<{ body: string; hash: string }>`SELECT body, hash FROM ${this.checkpoints_} ORDER BY number DESC LIMIT 1`.execute(db);
      const checkpoint = last.rows[0] ? parseCheckpoint(last.rows[0].body) : undefined;
      return {
        events: Number(heads.rows[0]?.events ?? 0),
        actors: Number(heads.rows[0]?.actors ?? 0),
        ...(checkpoint ? { lastCheckpoint: { number: checkpoint.number, time: checkpoint.time, hash: last.rows[0]!.hash, events: checkpoint.events } } : {}),
      };
    });
  }

  // ---- verifier source (read-only) ------------------------------------------------------

  /** Rows ordered by actor then sequence: all, or one actor's. */
  rows(actor?: string): AsyncIterable<readonly VerifyRow[]> {
    return this.#selectRows(actor === undefined ? {} : { actor });
  }

  #selectRows(select: RowSelection): AsyncIterable<readonly VerifyRow[]> {
    const fetch: FetchTextRows = this.db.readTextRows
      // The embedded store: the same statement through kysely, values as PGlite returns them.
      ?? (async (text, values) => (await this.db.read((db) => db.executeQuery(CompiledQuery.raw(text, [...values])))).rows
        .map((row) => Object.values(row as Record<string, unknown>).map((value) => (value === null ? null : String(value)))));
    return pagedRows(fetch, this.schema, select);
  }

  /** Present when the store was opened with `parallelVerify` (a PostgreSQL URL the verifier's connections can open). */
  get checkAllChains(): ((input: ChainCheckInput) => Promise<ChainCheckResult>) | undefined {
    const parallel = this.parallelVerify;
    if (!parallel) return undefined;
    return async (input) => {
      const total = await this.db.read((db) => sql<{ events: string | number }>`SELECT coalesce(sum(seq), 0) AS events FROM ${this.heads_}`.execute(db));
      const minEvents = parallel.minEventsPerThread ?? 0;
      const count = Math.max(1, minEvents > 0 ? Math.min(parallel.workers, Math.floor(Number(total.rows[0]?.events ?? 0) / minEvents)) : parallel.workers);
      const fast = await checkAllRows(parallel.url, this.schema, count, input, parallel.chunkBlocks ? { chunkBlocks: parallel.chunkBlocks } : {});
      const ordered = await checkChains(fast.suspects.length > 0 ? this.#selectRows({ actors: fast.suspects }) : noRows(), input);
      return joinWithOrderedWalk(fast, ordered);
    };
  }

  async heads(actor?: string): Promise<ChainHead[]> {
    const result = await this.db.read((db) => sql<{ actor: string; seq: string | number; hash: string }>`
      SELECT actor, seq, hash FROM ${this.heads_} ${actor === undefined ? sql`` : sql`WHERE actor = ${actor}`}`.execute(db));
    return result.rows.map((row) => ({ actor: row.actor, seq: Number(row.seq), hash: row.hash }));
  }

  async checkpoints(): Promise<StoredCheckpoint[]> {
    const result = await this.db.read((db) => sql<{ number: string | number; body: string; hash: string; signature: string; key_id: string; heads: string | null }>`
      SELECT number, body, hash, signature, key_id, heads FROM ${this.checkpoints_} ORDER BY number`.execute(db));
    return result.rows.map((row) => ({ number: Number(row.number), text: row.body, hash: row.hash, signature: row.signature, keyId: row.key_id, heads: row.heads }));
  }
}

async function* noRows(): AsyncIterable<readonly VerifyRow[]> {}

function encodeCursor(time: string, id: string): string {
  return Buffer.from(JSON.stringify([time, id]), 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): [string, string] {
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(value) && value.length === 2 && typeof value[0] === 'string' && typeof value[1] === 'string' && !Number.isNaN(Date.parse(value[0]))) {
      return [value[0], value[1]];
    }
  } catch {
    // fall through
  }
  throw new RangeError('cursor is not one this store returned');
}
