/**
 * The chain store: appends events to per-actor hash chains, writes signed checkpoints, and
 * answers reads (for the read API and for the verifier). All SQL lives here.
 */
import { sql, type Transaction } from 'kysely';
import type { AuditEvent, EventId, JsonObject } from '../../public/index.ts';
import { canonicalJson, CanonicalJsonError } from '../../security/canonical-json.ts';
import {
  canonicalRecord, chainHashUnchecked, GENESIS_HASH, isHashHex, NO_ACTOR,
  type ChainPage, type ChainPosition, type ChainQuery, type ChainRecord, type ChainStoreReader, type ChainSummary,
} from '../../security/chain.ts';
import {
  FIRST_PREVIOUS, headsRoot, MAX_ANCHORED_HEADS, parseCheckpoint, signCheckpoint, sortHeads,
  type AnchoredCheckpointPayload, type ChainHead,
} from '../../security/checkpoint.ts';
import type { CheckpointKey } from '../../security/keys.ts';
import { formatHeads, type StoredCheckpoint, type VerifyRow, type VerifySource } from '../../security/verify.ts';
import type { ChainDb } from './db.ts';

/**
 * Joins the records of a batch into one parameter. Canonical JSON never holds a raw control
 * character (JSON escapes them), so U+001E cannot occur inside a record; hashes and ISO times
 * hold no commas. This spares the driver escaping every quote of every record into an array
 * literal, which was the largest CPU cost of an append.
 */
const RECORD_SEPARATOR = '\u001e';

/** How many actors' head rows the store remembers as existing (about 100 bytes each). */
const MAX_KNOWN_HEADS = 1_000_000;

/** An event ready to be chained: everything but its position is known before the transaction. */
interface Prepared {
  readonly event: AuditEvent;
  readonly actor: string;
  readonly eventCanonical: string;
  readonly eventTime: string;
  readonly receivedAt: string;
}

/** A batch ready to append: its events prepared, and those that have no canonical form. */
export interface PreparedBatch {
  readonly items: Prepared[];
  readonly rejected: Array<{ id: EventId; reason: string }>;
}

export interface AppendResult {
  readonly positions: Map<EventId, ChainPosition>;
  readonly rejected: Array<{ id: EventId; reason: string }>;
  /** Events already stored before (redelivery): not appended again. */
  readonly duplicates: number;
  readonly appended: number;
}

/** A statement the database refused because of one row's values: the row must be isolated, not retried. */
function isRowError(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  if (typeof code !== 'string') return false;
  // Class 22 = data exception (e.g. \u0000 in jsonb, out of range); 23502/23514 = not-null/check.
  return code.startsWith('22') || code === '23502' || code === '23514';
}

function describeRowError(error: unknown): string {
  const e = error as { message?: string; code?: string; detail?: string };
  return `PostgreSQL refused the row: ${e.message ?? String(error)}${e.detail ? ` (${e.detail})` : ''}${e.code ? ` [SQLSTATE ${e.code}]` : ''}`;
}

const ISO_MILLISECONDS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** Milliseconds-precision UTC of an RFC 3339 time: what the event_time/received_at columns hold. */
function columnTime(rfc3339: string): string {
  // Receipt times (and many event times) are already in this form: skip the round trip through Date.
  if (ISO_MILLISECONDS.test(rfc3339) && !Number.isNaN(Date.parse(rfc3339))) return rfc3339;
  const ms = Date.parse(rfc3339);
  if (Number.isNaN(ms)) throw new CanonicalJsonError(`time ${JSON.stringify(rfc3339)} is not RFC 3339`);
  return new Date(ms).toISOString();
}

export class ChainStore implements ChainStoreReader, VerifySource {
  readonly db: ChainDb;
  readonly schema: string;
  private readonly events;
  private readonly heads_;
  private readonly checkpoints_;
  /**
   * Actors whose head row is known to be committed (head rows are never deleted by auditpipe),
   * so a batch of known actors skips the head-creating INSERT. Bounded; forgetting is harmless.
   */
  private readonly knownHeads = new Set<string>();

  constructor(db: ChainDb, schema: string) {
    this.db = db;
    this.schema = schema;
    this.events = sql.id(schema, 'chain_events');
    this.heads_ = sql.id(schema, 'chain_heads');
    this.checkpoints_ = sql.id(schema, 'chain_checkpoints');
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

  /**
   * Appends a batch. Redelivered ids keep their original position. A row the database refuses
   * is isolated by splitting the batch (the parts commit separately) and comes back in
   * `rejected`; any other failure throws and nothing of that transaction is committed.
   */
  async append(events: readonly AuditEvent[]): Promise<AppendResult> {
    return this.appendPrepared(this.prepare(events));
  }

  /**
   * The part of an append that needs no database (canonical JSON of each event, column times), so
   * a caller that serialises appends can do it for the next batch while the current one runs.
   */
  prepare(events: readonly AuditEvent[]): PreparedBatch {
    const batch: PreparedBatch = { items: [], rejected: [] };
    for (const event of events) {
      try {
        batch.items.push({
          event,
          actor: event.actorId ?? NO_ACTOR,
          eventCanonical: canonicalJson(event.data),
          eventTime: columnTime(event.time),
          receivedAt: columnTime(event.receivedAt),
        });
      } catch (error) {
        if (!(error instanceof CanonicalJsonError)) throw error;
        batch.rejected.push({ id: event.id, reason: error.message });
      }
    }
    return batch;
  }

  async appendPrepared(batch: PreparedBatch): Promise<AppendResult> {
    const result: AppendResult = { positions: new Map(), rejected: [...batch.rejected], duplicates: 0, appended: 0 };
    if (batch.items.length > 0) await this.appendIsolating(batch.items, result);
    return result;
  }

  private async appendIsolating(items: readonly Prepared[], into: AppendResult): Promise<void> {
    try {
      const { positions, duplicates, appended, actors } = await this.db.transaction((tx) => this.appendTx(tx, items));
      if (this.knownHeads.size + actors.length > MAX_KNOWN_HEADS) this.knownHeads.clear();
      for (const actor of actors) this.knownHeads.add(actor);
      for (const [id, position] of positions) into.positions.set(id, position);
      (into as { duplicates: number }).duplicates += duplicates;
      (into as { appended: number }).appended += appended;
    } catch (error) {
      if (!isRowError(error)) throw error;
      if (items.length === 1) {
        into.rejected.push({ id: items[0]!.event.id, reason: describeRowError(error) });
        return;
      }
      // Halves in order, so each actor's events keep their batch order in the chain.
      const middle = Math.ceil(items.length / 2);
      await this.appendIsolating(items.slice(0, middle), into);
      await this.appendIsolating(items.slice(middle), into);
    }
  }

  private async appendTx(tx: Transaction<any>, items: readonly Prepared[]) {
    const positions = new Map<EventId, ChainPosition>();
    const actors = [...new Set(items.map((item) => item.actor))];
    // Heads are created first (only for actors not known to have one), then locked in one
    // consistent order, so concurrent writers (in this process or others) queue per actor
    // instead of deadlocking.
    const unknown = actors.filter((actor) => !this.knownHeads.has(actor));
    if (unknown.length > 0) {
      await sql`INSERT INTO ${this.heads_} (actor, seq, hash)
        SELECT a, 0, ${GENESIS_HASH} FROM unnest(${unknown}::text[]) AS a ORDER BY a
        ON CONFLICT (actor) DO NOTHING`.execute(tx);
    }
    const locked = await sql<{ actor: string; seq: string | number; hash: string }>`SELECT actor, seq, hash FROM ${this.heads_}
      WHERE actor = ANY(${actors}::text[]) ORDER BY actor FOR UPDATE`.execute(tx);
    const heads = new Map<string, { seq: number; hash: string }>();
    for (const row of locked.rows) {
      // Checked once here, so the chain below can hash without re-validating each link.
      if (!isHashHex(row.hash)) throw new Error(`head row of actor ${JSON.stringify(row.actor)} holds a malformed hash`);
      heads.set(row.actor, { seq: Number(row.seq), hash: row.hash });
    }
    if (heads.size !== actors.length) {
      // A head row disappeared (edited by hand): forget what we knew; the retry recreates it.
      for (const actor of actors) if (!heads.has(actor)) this.knownHeads.delete(actor);
      throw new Error(`head rows of ${actors.length - heads.size} actors are missing; retrying creates them`);
    }

    // Checked under the head locks: a concurrent writer of the same id has committed by now.
    const ids = [...new Set(items.map((item) => item.event.id as string))];
    const stored = await sql<{ event_id: string; actor: string; seq: string | number; prev_hash: string; hash: string }>`
      SELECT event_id, actor, seq, prev_hash, hash FROM ${this.events} WHERE event_id = ANY(${ids}::text[])`.execute(tx);
    for (const row of stored.rows) {
      positions.set(row.event_id as EventId, { actor: row.actor, sequence: Number(row.seq), previousHash: row.prev_hash, hash: row.hash });
    }
    const duplicates = items.filter((item) => positions.has(item.event.id)).length;

    const moved = new Set<string>();
    const cols = { actor: [] as string[], seq: [] as number[], id: [] as string[], prev: [] as string[], hash: [] as string[], canonical: [] as string[], time: [] as string[], received: [] as string[] };
    for (const item of items) {
      if (positions.has(item.event.id)) continue;
      const head = heads.get(item.actor);
      if (!head) throw new Error(`head row of actor ${JSON.stringify(item.actor)} was not locked`);
      const seq = head.seq + 1;
      const record = canonicalRecord({ actor: item.actor, seq, id: item.event.id, receivedAt: item.event.receivedAt, event: item.event.data }, item.eventCanonical);
      const hash = chainHashUnchecked(head.hash, record);
      positions.set(item.event.id, { actor: item.actor, sequence: seq, previousHash: head.hash, hash });
      cols.actor.push(item.actor);
      cols.seq.push(seq);
      cols.id.push(item.event.id);
      cols.prev.push(head.hash);
      cols.hash.push(hash);
      cols.canonical.push(record);
      cols.time.push(item.eventTime);
      cols.received.push(item.receivedAt);
      head.seq = seq;
      head.hash = hash;
      moved.add(item.actor);
    }
    if (cols.id.length > 0) {
      // One statement (one round trip): the rows, and the heads they move.
      const movedActors = [...moved];
      await sql`WITH appended AS (
          INSERT INTO ${this.events} (actor, seq, event_id, prev_hash, hash, canonical, event_time, received_at)
          SELECT * FROM unnest(${cols.actor}::text[], ${cols.seq}::int8[], ${cols.id}::text[],
            string_to_array(${cols.prev.join(',')}, ','), string_to_array(${cols.hash.join(',')}, ','),
            string_to_array(${cols.canonical.join(RECORD_SEPARATOR)}, ${RECORD_SEPARATOR}),
            string_to_array(${cols.time.join(',')}, ',')::timestamptz[], string_to_array(${cols.received.join(',')}, ',')::timestamptz[]))
        UPDATE ${this.heads_} AS h SET seq = v.seq, hash = v.hash
        FROM unnest(${movedActors}::text[], ${movedActors.map((actor) => heads.get(actor)!.seq)}::int8[], ${movedActors.map((actor) => heads.get(actor)!.hash)}::text[]) AS v(actor, seq, hash)
        WHERE h.actor = v.actor`.execute(tx);
    }
    return { positions, duplicates, appended: cols.id.length, actors };
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
    if (filter.action !== undefined) conditions.push(sql`data->>'action' = ${filter.action}`);
    if (filter.from !== undefined) conditions.push(sql`event_time >= ${columnTime(filter.from)}::timestamptz`);
    if (filter.to !== undefined) conditions.push(sql`event_time < ${columnTime(filter.to)}::timestamptz`);
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

  async *rows(actor?: string, pageSize = 20_000): AsyncIterable<readonly VerifyRow[]> {
    let after: { actor: string; seq: number } | undefined;
    // The next page is requested before the current one is handed out, so the server reads
    // while the verifier hashes.
    let pending: Promise<VerifyRow[]> | undefined = this.rowsPage(actor, after, pageSize);
    while (pending) {
      // A consumer that stops early leaves a prefetch behind; its failure must not go unhandled.
      pending.catch(() => undefined);
      const rows = await pending;
      pending = undefined;
      if (rows.length === 0) return;
      const last = rows.at(-1)!;
      after = { actor: last.actor, seq: last.seq };
      if (rows.length === pageSize) pending = this.rowsPage(actor, after, pageSize);
      yield rows;
    }
  }

  private async rowsPage(actor: string | undefined, after: { actor: string; seq: number } | undefined, pageSize: number): Promise<VerifyRow[]> {
    const columns = `actor, seq, event_id, prev_hash, hash, canonical,
      (extract(epoch FROM event_time) * 1000)::float8 AS et, (extract(epoch FROM received_at) * 1000)::float8 AS ra`;
    if (this.db.readTextRows) {
      const where: string[] = [];
      const values: unknown[] = [];
      if (actor !== undefined) where.push(`actor = $${values.push(actor)}`);
      if (after) where.push(`(actor, seq) > ($${values.push(after.actor)}, $${values.push(after.seq)}::int8)`);
      const table = `"${this.schema.replaceAll('"', '""')}".chain_events`;
      const rows = await this.db.readTextRows(
        `SELECT ${columns} FROM ${table} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY actor, seq LIMIT ${pageSize}`, values);
      return rows.map((row): VerifyRow => ({
        actor: row[0]!,
        seq: Number(row[1]),
        eventId: row[2]!,
        prevHash: row[3]!,
        hash: row[4]!,
        canonical: row[5]!,
        eventTimeMs: Number(row[6]),
        receivedAtMs: Number(row[7]),
      }));
    }
    const where = [sql`true`];
    if (actor !== undefined) where.push(sql`actor = ${actor}`);
    if (after) where.push(sql`(actor, seq) > (${after.actor}, ${after.seq}::int8)`);
    const result = await this.db.read((db) => sql<{ actor: string; seq: string | number; event_id: string; prev_hash: string; hash: string; canonical: string; et: number; ra: number }>`
      SELECT ${sql.raw(columns)}
      FROM ${this.events} WHERE ${sql.join(where, sql` AND `)} ORDER BY actor, seq LIMIT ${pageSize}`.execute(db));
    return result.rows.map((row): VerifyRow => ({
      actor: row.actor,
      seq: Number(row.seq),
      eventId: row.event_id,
      prevHash: row.prev_hash,
      hash: row.hash,
      canonical: row.canonical,
      eventTimeMs: Number(row.et),
      receivedAtMs: Number(row.ra),
    }));
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
