/**
 * Appending batches to the per-actor hash chains (docs/chain-format.md; the why of this design
 * is in docs/decisions.md, "Chain appends").
 *
 * Correctness rests on one rule: inside the batch transaction, the head row of every actor of the
 * batch is locked and each new row links from the locked head. Locks are taken in actor order, so
 * writers do not deadlock; should PostgreSQL's plan for the common case ever take them in another
 * order, it breaks the deadlock by aborting one message, which then takes the ordered path.
 * Everything else here is about not wasting time around that rule:
 *
 * - Batches of one store run one transaction at a time, in call order; they would only queue on
 *   the same head locks inside PostgreSQL. Their one-message writes are pipelined: each is sent
 *   right behind the one before, on one connection, and PostgreSQL runs them back to back; one
 *   whose predecessor failed fails its heads check and is redone after it.
 * - Speculation: while batch N's rows are being written, batch N+1 is hashed in Node on the heads
 *   batch N will leave. Under its locks batch N+1 then only checks that the heads are what it
 *   assumed. Where another writer moved a head, or batch N failed, the actual head comes back
 *   and those actors are re-hashed.
 * - The common case (every head exists, none moved) is one message on a server: one UPDATE that
 *   checks and moves the heads, then the rows by bulk COPY (`copyMessage`); the other cases, and
 *   PGlite, lock the heads first (`FOR UPDATE`, in actor order) in one statement that inserts from
 *   arrays (`writePlanned`).
 * - Redelivery: the unique event id decides. A batch is written without looking ids up first; if
 *   an id is already stored the insert fails, the transaction rolls back, and the batch is
 *   redone with a lookup, keeping the stored events' positions.
 * - A row PostgreSQL refuses is isolated by splitting the batch; the other rows commit.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import type { AuditEvent, EventId } from '../../public/index.ts';
import { canonicalJson, CanonicalJsonError } from '../../public/security.ts';
import { canonicalRecord, chainHashUnchecked, GENESIS_HASH, isHashHex, NO_ACTOR, type ChainPosition } from '../../public/security.ts';
import { CopyBinaryRows, textBound } from './copy-in.ts';
import type { ChainDb } from './db.ts';

/**
 * Joins the records of a batch into one parameter. Canonical JSON never holds a raw control
 * character (JSON escapes them), so U+001E cannot occur inside a record; hashes, numbers and ISO
 * times hold no commas. This spares the driver escaping every quote of every record into an
 * array literal, which was the largest CPU cost of an append.
 */
const RECORD_SEPARATOR = '\u001e';

/** How many actors' heads are remembered (about 200 bytes each); forgetting only costs a re-hash. */
const MAX_REMEMBERED_HEADS = 1_000_000;

/** An event ready to be chained: everything but its position is known before the transaction. */
interface Prepared {
  readonly event: AuditEvent;
  readonly actor: string;
  readonly eventCanonical: string;
  readonly eventTime: ColumnTime;
  readonly receivedAt: ColumnTime;
}

/** A batch ready to append: its events prepared, and those that have no canonical form. */
interface PreparedBatch {
  readonly items: readonly Prepared[];
  readonly rejected: ReadonlyArray<{ id: EventId; reason: string }>;
}

export interface AppendResult {
  readonly positions: Map<EventId, ChainPosition>;
  readonly rejected: Array<{ id: EventId; reason: string }>;
  /** Events already stored before (redelivery): not appended again. */
  readonly duplicates: number;
  readonly appended: number;
  /** Times the batch was hashed on heads another writer (or a failed batch) had moved: hashed again under the locks. */
  readonly rehashed: number;
}

interface Head {
  readonly seq: number;
  readonly hash: string;
}

/** The rows a batch will write, hashed from known heads. */
interface Plan {
  /** The head of every actor of the batch the plan starts from. */
  readonly from: Map<string, Head>;
  /** The head every actor of the batch is left at. */
  readonly to: Map<string, Head>;
  readonly positions: Map<EventId, ChainPosition>;
  readonly appended: number;
  /** The rows to write, column by column. */
  readonly rows: {
    readonly actors: string[]; readonly seqs: number[]; readonly ids: string[]; readonly prevs: string[]; readonly hashes: string[];
    readonly records: string[]; readonly times: ColumnTime[]; readonly receiveds: ColumnTime[];
  };
}

/**
 * A text[] parameter. Actors and ids can hold any character, so the driver would escape each one
 * into an array literal; when none holds U+001E they travel joined on it instead, like records.
 */
type TextList = { readonly joined: string } | { readonly array: readonly string[] };

function textList(values: readonly string[]): TextList {
  // string_to_array('') is an empty array, not one empty string: that case keeps the array form.
  const joinable = !(values.length === 1 && values[0] === '') && !values.some((value) => value.includes(RECORD_SEPARATOR));
  return joinable ? { joined: values.join(RECORD_SEPARATOR) } : { array: values };
}

function textArray(list: TextList) {
  return 'joined' in list ? sql`string_to_array(${list.joined}, ${RECORD_SEPARATOR})` : sql`${list.array}::text[]`;
}

/** `textArray` written out as SQL text, for a message without parameters. */
function textArrayLiteral(list: TextList): string {
  return 'joined' in list
    ? `string_to_array(${textLiteral(list.joined)}, chr(30))`
    : `ARRAY[${list.array.map(textLiteral).join(',')}]::text[]`;
}

/** A string constant holding `value` whatever standard_conforming_strings says (as pg's escapeLiteral, without its loop per character). */
function textLiteral(value: string): string {
  const quoted = value.replaceAll("'", "''");
  return value.includes('\\') ? ` E'${quoted.replaceAll('\\', '\\\\')}'` : `'${quoted}'`;
}

/** A statement the database refused because of one row's values: the row must be isolated, not retried. */
function isRowError(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  if (typeof code !== 'string') return false;
  // Class 22 = data exception (e.g. \u0000 in text, out of range); 23502/23514 = not-null/check.
  return code.startsWith('22') || code === '23502' || code === '23514';
}

function isStoredIdConflict(error: unknown): boolean {
  const e = error as { code?: unknown; constraint?: unknown; message?: unknown };
  return e?.code === '23505' && (e.constraint === 'chain_events_event_id_key' || String(e.message).includes('chain_events_event_id_key'));
}

function describeRowError(error: unknown): string {
  const e = error as { message?: string; code?: string; detail?: string };
  return `PostgreSQL refused the row: ${e.message ?? String(error)}${e.detail ? ` (${e.detail})` : ''}${e.code ? ` [SQLSTATE ${e.code}]` : ''}`;
}

const ISO_MILLISECONDS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/**
 * A time as the event_time/received_at columns hold it, milliseconds-precision UTC: as text for
 * statements, as Unix milliseconds for the binary COPY (parsed once for both).
 */
export interface ColumnTime {
  readonly text: string;
  readonly ms: number;
}

/** The last time `columnTime` was asked for, and its answer. */
let lastTimeInput = '';
let lastTime: ColumnTime = { text: '', ms: Number.NaN };

/** The column form of an RFC 3339 time; a `CanonicalJsonError` when it is not one. */
export function columnTime(rfc3339: string): ColumnTime {
  // The events of a batch mostly share their receipt time (and often their event time).
  if (rfc3339 === lastTimeInput) return lastTime;
  const ms = Date.parse(rfc3339);
  if (Number.isNaN(ms)) throw new CanonicalJsonError(`time ${JSON.stringify(rfc3339)} is not RFC 3339`);
  // Receipt times (and many event times) are already in this form: no round trip through Date.
  lastTime = { text: ISO_MILLISECONDS.test(rfc3339) ? rfc3339 : new Date(ms).toISOString(), ms };
  lastTimeInput = rfc3339;
  return lastTime;
}

/** Lets pending I/O (a statement's result, the next statement's send) through before more CPU work. */
const yieldToIo = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Events prepared between two yields: about a millisecond of work. */
const PREPARE_CHUNK = 128;

/**
 * The part of an append that needs no database: canonical JSON of each event, column times.
 * Done in slices, so the transaction of the batch before is never kept waiting for it.
 */
async function prepareBatch(events: readonly AuditEvent[]): Promise<PreparedBatch> {
  const items: Prepared[] = [];
  const rejected: Array<{ id: EventId; reason: string }> = [];
  for (let i = 0; i < events.length; i += 1) {
    if (i > 0 && i % PREPARE_CHUNK === 0) await yieldToIo();
    const event = events[i]!;
    try {
      items.push({
        event,
        actor: event.actorId ?? NO_ACTOR,
        eventCanonical: canonicalJson(event.data),
        eventTime: columnTime(event.time),
        receivedAt: columnTime(event.receivedAt),
      });
    } catch (error) {
      if (!(error instanceof CanonicalJsonError)) throw error;
      rejected.push({ id: event.id, reason: error.message });
    }
  }
  return { items, rejected };
}

/** Hashes `items` onto `heads` (missing actors start at genesis), skipping `stored` ids and repeats. */
function plan(items: readonly Prepared[], heads: ReadonlyMap<string, Head>, stored: ReadonlyMap<EventId, ChainPosition>): Plan {
  const from = new Map<string, Head>();
  const to = new Map<string, Head>();
  const positions = new Map<EventId, ChainPosition>(stored);
  const actor: string[] = [];
  const seqs: number[] = [];
  const ids: string[] = [];
  const prevs: string[] = [];
  const hashes: string[] = [];
  const records: string[] = [];
  const times: ColumnTime[] = [];
  const receiveds: ColumnTime[] = [];
  for (const item of items) {
    let head = to.get(item.actor);
    if (!head) {
      head = heads.get(item.actor) ?? { seq: 0, hash: GENESIS_HASH };
      from.set(item.actor, head);
    }
    if (positions.has(item.event.id)) {
      to.set(item.actor, head);
      continue;
    }
    const seq = head.seq + 1;
    const record = canonicalRecord({ actor: item.actor, seq, id: item.event.id, receivedAt: item.event.receivedAt, event: item.event.data }, item.eventCanonical);
    const hash = chainHashUnchecked(head.hash, record);
    positions.set(item.event.id, { actor: item.actor, sequence: seq, previousHash: head.hash, hash });
    actor.push(item.actor);
    seqs.push(seq);
    ids.push(item.event.id);
    prevs.push(head.hash);
    hashes.push(hash);
    records.push(record);
    times.push(item.eventTime);
    receiveds.push(item.receivedAt);
    to.set(item.actor, { seq, hash });
  }
  return { from, to, positions, appended: ids.length, rows: { actors: actor, seqs, ids, prevs, hashes, records, times, receiveds } };
}

/** The heads statement's parameters of `writePlanned`: where every actor's head starts, and those the plan moves. */
function headsParameters(planned: Plan) {
  const fromHeads = [...planned.from.values()];
  const moved = [...planned.to].filter(([name, head]) => head !== planned.from.get(name));
  return {
    actors: textList([...planned.from.keys()]),
    fromSeqs: fromHeads.map((head) => head.seq).join(','),
    fromHashes: fromHeads.map((head) => head.hash).join(','),
    movedActors: textList(moved.map(([name]) => name)),
    movedSeqs: moved.map(([, head]) => head.seq).join(','),
    movedHashes: moved.map(([, head]) => head.hash).join(','),
  };
}

/** The plan's rows in COPY's binary format, in the column order of `COPY_COLUMNS`. */
function copyRows(planned: Plan): Buffer {
  const { actors, seqs, ids, prevs, hashes, records, times, receiveds } = planned.rows;
  const rows = new CopyBinaryRows(seqs.length * 700);
  for (let i = 0; i < seqs.length; i += 1) {
    const actor = actors[i]!;
    const id = ids[i]!;
    const record = records[i]!;
    const prev = prevs[i]!;
    const hash = hashes[i]!;
    rows.row(COPY_FIELDS, NUMBER_FIELD_BYTES + textBound(actor) + textBound(id) + textBound(prev) + textBound(hash) + textBound(record))
      .text(actor).int8(seqs[i]!).text(id).text(prev).text(hash).text(record)
      .timestamptz(times[i]!.ms).timestamptz(receiveds[i]!.ms);
  }
  return rows.finish();
}

const COPY_FIELDS = 8;
/** seq, event_time and received_at in a binary row. */
const NUMBER_FIELD_BYTES = 3 * 12;
const COPY_COLUMNS = 'actor, seq, event_id, prev_hash, hash, canonical, event_time, received_at';

/**
 * Plain SQL has no statement that raises an error on a condition, but a failing cast is one:
 * the heads statement casts this text (with the number of moved heads, so it is not a constant
 * folded at planning) to an integer when a head moved, and the error carries it back.
 */
const HEADS_MOVED = 'auditpipe: chain heads moved:';

/**
 * Planner settings for the one-message write's transaction (`SET LOCAL` ends with it). Without
 * them, for a small heads table PostgreSQL hashes the batch's list and probes it with a
 * sequential scan of the heads, locking them in the table's physical order; with them the join
 * is a nested loop over the list (sorted by `inLockOrder`) or a merge join on actor, both actor
 * order. Measured on 1,000 heads: 7.9 against 7.3 ms of backend CPU per statement.
 */
const IN_LOCK_ORDER = 'SET LOCAL enable_hashjoin = off; SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off;';

/** SQLSTATE 40P01: PostgreSQL aborted this transaction to break a lock cycle between writers. */
const DEADLOCK_DETECTED = '40P01';

/**
 * Actors in the order the "C" collation sorts them (by UTF-8 bytes): the order every writer takes
 * head locks in. JavaScript's default sort (by UTF-16 units) agrees except around surrogate pairs.
 */
export function inLockOrder(actors: string[]): string[] {
  if (!actors.some((actor) => SURROGATE.test(actor))) return actors.sort();
  return actors.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}
const SURROGATE = /[\uD800-\uDFFF]/;

/** A promise with its resolver, for the hand-over points between consecutive batches. */
function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

export class ChainAppender {
  private readonly db: ChainDb;
  private readonly events;
  private readonly heads;
  private readonly headsTable: string;
  private readonly copyStatement: string;
  /** Actors whose head row is committed (auditpipe never deletes one): no head-creating INSERT needed. */
  private readonly existingHeads = new Set<string>();
  /** The heads each actor will have once every batch hashed so far commits: what the next batch assumes. */
  private readonly assumedHeads = new Map<string, Head>();
  /**
   * The previous batch: `hashed` when its rows are final, `sent` when its one-message write is on
   * the connection (or, when it has none, when it ended), `finished` when its transaction ended.
   */
  private previous = { hashed: Promise.resolve(), sent: Promise.resolve(), finished: Promise.resolve() };

  constructor(db: ChainDb, schema: string) {
    this.db = db;
    this.events = sql.id(schema, 'chain_events');
    this.heads = sql.id(schema, 'chain_heads');
    const quoted = `"${schema.replaceAll('"', '""')}"`;
    this.headsTable = `${quoted}.chain_heads`;
    this.copyStatement = `COPY ${quoted}.chain_events (${COPY_COLUMNS}) FROM STDIN (FORMAT binary)`;
  }

  /**
   * Appends a batch after the batches already handed in (callers may call this
   * concurrently; each actor's events are chained in call order). Redelivered ids keep their
   * original position. A row the database refuses comes back in `rejected`; any other failure
   * throws and nothing of that batch is committed. A batch whose `abort` fired before its turn
   * does not start.
   */
  async append(events: readonly AuditEvent[], abort?: AbortSignal): Promise<AppendResult> {
    const hashed = signal();
    const sent = signal();
    const finished = signal();
    const previous = this.previous;
    this.previous = { hashed: hashed.promise, sent: sent.promise, finished: finished.promise };
    try {
      const batch = await prepareBatch(events);
      await previous.hashed;
      // The batch before sends its rows first: hashing this one then overlaps their writing.
      await yieldToIo();
      const speculative = batch.items.length > 0 ? plan(batch.items, this.assumedHeads, new Map()) : undefined;
      if (speculative) this.assume(speculative);
      const message = speculative && this.db.statementsThenCopy ? this.copyMessage(speculative) : undefined;
      await previous.sent;
      // Sent right behind the batch before, on the same connection: PostgreSQL runs it the moment
      // that one ends. If that one fails, this one's heads check fails too (it assumed the heads
      // that one would leave) and it is redone below, after that one is dealt with.
      let written: Promise<boolean> | undefined;
      if (message && !abort?.aborted && this.headsExist(speculative!)) {
        hashed.resolve();
        written = this.copyPlanned(message);
        written.catch(() => undefined); // awaited once the batch before has finished
        sent.resolve();
      }
      await previous.finished;
      if (!written) abort?.throwIfAborted();
      const result: AppendResult = { positions: new Map(), rejected: [...batch.rejected], duplicates: 0, appended: 0, rehashed: 0 };
      if (speculative) await this.appendIsolating(batch.items, speculative, result, hashed.resolve, { message, written });
      return result;
    } catch (error) {
      // What later batches assumed may not have been written: they re-check under their locks anyway.
      this.assumedHeads.clear();
      throw error;
    } finally {
      hashed.resolve();
      sent.resolve();
      finished.resolve();
    }
  }

  /** Whether every actor of the plan has a committed head row (the one-message write moves heads, it does not create them). */
  private headsExist(planned: Plan): boolean {
    for (const actor of planned.from.keys()) if (!this.existingHeads.has(actor)) return false;
    return true;
  }

  private assume(planned: Plan): void {
    if (this.assumedHeads.size + planned.to.size > MAX_REMEMBERED_HEADS) this.assumedHeads.clear();
    for (const [actor, head] of planned.to) this.assumedHeads.set(actor, head);
  }

  private async appendIsolating(items: readonly Prepared[], speculative: Plan | undefined, into: AppendResult, hashed: () => void, copy: PlannedCopy = {}): Promise<void> {
    try {
      let outcome;
      try {
        outcome = (speculative && await this.appendAlone(speculative, hashed, copy))
          || await this.db.transaction((tx) => this.appendTx(tx, items, speculative, false, hashed));
      } catch (error) {
        if (!isStoredIdConflict(error)) throw error;
        outcome = await this.db.transaction((tx) => this.appendTx(tx, items, undefined, true, hashed));
      }
      if (this.existingHeads.size + outcome.actors.length > MAX_REMEMBERED_HEADS) this.existingHeads.clear();
      for (const actor of outcome.actors) this.existingHeads.add(actor);
      for (const [id, position] of outcome.positions) into.positions.set(id, position);
      (into as { duplicates: number }).duplicates += outcome.duplicates;
      (into as { rehashed: number }).rehashed += outcome.rehashed;
      (into as { appended: number }).appended += outcome.appended;
    } catch (error) {
      if (!isRowError(error)) throw error;
      this.assumedHeads.clear();
      if (items.length === 1) {
        into.rejected.push({ id: items[0]!.event.id, reason: describeRowError(error) });
        return;
      }
      // Halves in order, so each actor's events keep their batch order in the chain.
      const middle = Math.ceil(items.length / 2);
      await this.appendIsolating(items.slice(0, middle), undefined, into, hashed);
      await this.appendIsolating(items.slice(middle), undefined, into, hashed);
    }
  }

  /**
   * The common case: every actor already has a head row and the heads are where the plan
   * assumed. On a server: one message that checks and moves the heads, then COPYs the rows in
   * (`copyPlanned`; `copy.written` when it already went out behind the batch before). On PGlite:
   * one statement. Either way one implicit transaction. Undefined when the heads are not where
   * assumed (nothing was written then).
   */
  private async appendAlone(planned: Plan, hashed: () => void, copy: PlannedCopy) {
    if (copy.written) {
      if (!await copy.written) return undefined;
    } else {
      if (!this.headsExist(planned)) return undefined;
      hashed();
      if (this.db.statementsThenCopy) {
        if (!await this.copyPlanned(copy.message ?? this.copyMessage(planned))) return undefined;
      } else if ((await this.db.statement((db) => this.writePlanned(db, planned))).length > 0) {
        return undefined;
      }
    }
    return { positions: planned.positions, duplicates: 0, appended: planned.appended, actors: [...planned.from.keys()], rehashed: 0 };
  }

  /**
   * One transaction: lock the heads, make the plan agree with them (re-hashing where a head is
   * not the assumed one, leaving out stored ids when `lookUpIds`), write rows and heads.
   */
  private async appendTx(tx: Transaction<any>, items: readonly Prepared[], speculative: Plan | undefined, lookUpIds: boolean, hashed: () => void) {
    let planned = speculative ?? plan(items, this.assumedHeads, new Map());
    const actors = [...planned.from.keys()];
    const missing = actors.filter((actor) => !this.existingHeads.has(actor));
    if (missing.length > 0) {
      await sql`INSERT INTO ${this.heads} (actor, seq, hash)
        SELECT a, 0, ${GENESIS_HASH} FROM unnest(${missing}::text[]) AS a ORDER BY a
        ON CONFLICT (actor) DO NOTHING`.execute(tx);
    }
    let stored = new Map<EventId, ChainPosition>();
    if (lookUpIds) {
      const ids = [...new Set(items.map((item) => item.event.id as string))];
      const rows = await sql<{ event_id: string; actor: string; seq: string | number; prev_hash: string; hash: string }>`
        SELECT event_id, actor, seq, prev_hash, hash FROM ${this.events} WHERE event_id = ANY(${ids}::text[])`.execute(tx);
      stored = new Map(rows.rows.map((row) => [row.event_id as EventId, { actor: row.actor, sequence: Number(row.seq), previousHash: row.prev_hash, hash: row.hash }]));
      if (stored.size > 0) {
        planned = plan(items, planned.from, stored);
        this.assume(planned);
      }
    }
    // At most twice: the second time with the heads the first attempt found locked.
    let rehashed = 0;
    for (let attempt = 1; ; attempt += 1) {
      if (attempt > 1) this.assume(planned);
      hashed();
      const differing = await this.writePlanned(tx, planned);
      if (differing.length === 0) break;
      if (attempt > 1) throw new Error(`the head rows of ${differing.length} actors changed while locked`);
      rehashed += 1;
      const heads = new Map(planned.from);
      for (const row of differing) {
        if (row.seq === null || row.hash === null) {
          // A head row disappeared (edited by hand): forget what we knew; the retry recreates it.
          this.existingHeads.delete(row.actor);
          throw new Error(`the head row of actor ${JSON.stringify(row.actor)} is missing; retrying creates it`);
        }
        if (!isHashHex(row.hash)) throw new Error(`the head row of actor ${JSON.stringify(row.actor)} holds a malformed hash`);
        heads.set(row.actor, { seq: Number(row.seq), hash: row.hash });
      }
      planned = plan(items, heads, stored);
    }
    return {
      positions: planned.positions,
      duplicates: stored.size > 0 ? items.filter((item) => stored.has(item.event.id)).length : 0,
      appended: planned.appended,
      actors,
      rehashed,
    };
  }

  /**
   * One statement: lock the heads of the plan's actors in actor order, and if every one is where
   * the plan starts, write the rows and move the heads. Returns the heads that are not where the
   * plan starts (nothing was written then; the locks are kept until the transaction ends).
   */
  private async writePlanned(db: Kysely<any>, planned: Plan) {
    const h = headsParameters(planned);
    const r = planned.rows;
    const result = await sql<HeadRow>`
      WITH locked AS MATERIALIZED (
        SELECT actor, seq, hash FROM ${this.heads} WHERE actor = ANY(${textArray(h.actors)}) ORDER BY actor FOR UPDATE),
      differing AS MATERIALIZED (
        SELECT e.actor, l.seq, l.hash
        FROM unnest(${textArray(h.actors)}, string_to_array(${h.fromSeqs}, ',')::int8[], string_to_array(${h.fromHashes}, ',')) AS e(actor, seq, hash)
        LEFT JOIN locked l ON l.actor = e.actor
        WHERE l.seq IS DISTINCT FROM e.seq OR l.hash IS DISTINCT FROM e.hash),
      appended AS (
        INSERT INTO ${this.events} (actor, seq, event_id, prev_hash, hash, canonical, event_time, received_at)
        SELECT * FROM unnest(${textArray(textList(r.actors))}, string_to_array(${r.seqs.join(',')}, ',')::int8[], ${textArray(textList(r.ids))},
          string_to_array(${r.prevs.join(',')}, ','), string_to_array(${r.hashes.join(',')}, ','),
          string_to_array(${r.records.join(RECORD_SEPARATOR)}, ${RECORD_SEPARATOR}),
          string_to_array(${r.times.map((t) => t.text).join(',')}, ',')::timestamptz[], string_to_array(${r.receiveds.map((t) => t.text).join(',')}, ',')::timestamptz[])
        WHERE NOT EXISTS (SELECT FROM differing)),
      moved AS (
        UPDATE ${this.heads} AS h SET seq = v.seq, hash = v.hash
        FROM unnest(${textArray(h.movedActors)}, string_to_array(${h.movedSeqs}, ',')::int8[], string_to_array(${h.movedHashes}, ',')) AS v(actor, seq, hash)
        WHERE h.actor = v.actor AND NOT EXISTS (SELECT FROM differing))
      SELECT actor, seq, hash FROM differing`.execute(db);
    return result.rows;
  }

  /**
   * The plan as one message: a statement that checks and moves the heads, then the rows in COPY's
   * binary format. A simple-query message takes no parameters, so the heads' values are written
   * into the statement as literals. The rows go out with it, before the heads are checked, so a
   * moved head must stop the COPY: the statement then fails, which rolls the message back (see
   * `HEADS_MOVED`).
   *
   * Unlike `writePlanned` it takes no ordered lock first: the UPDATE locks each head as it moves
   * it and checks it in its WHERE, which halves the heads' work (a lock and an update per head were
   * two tuple writes and two WAL records; docs/decisions.md, "Chain appends"). It locks in the
   * order its join produces rows, which `IN_LOCK_ORDER` makes actor order, the order every writer
   * locks in; should two writers deadlock all the same, PostgreSQL aborts one message and that
   * batch takes the ordered path (`copyPlanned`).
   */
  private copyMessage(planned: Plan): CopyMessage {
    const actors = inLockOrder([...planned.from.keys()]);
    const from = actors.map((actor) => planned.from.get(actor)!);
    const to = actors.map((actor) => planned.to.get(actor)!);
    const text = `${IN_LOCK_ORDER}
      WITH moved AS (
        UPDATE ${this.headsTable} AS h SET seq = v.seq, hash = v.hash
        FROM unnest(${textArrayLiteral(textList(actors))},
          string_to_array(${textLiteral(from.map((head) => head.seq).join(','))}, ',')::int8[], string_to_array(${textLiteral(from.map((head) => head.hash).join(','))}, ','),
          string_to_array(${textLiteral(to.map((head) => head.seq).join(','))}, ',')::int8[], string_to_array(${textLiteral(to.map((head) => head.hash).join(','))}, ','))
          AS v(actor, from_seq, from_hash, seq, hash)
        WHERE h.actor = v.actor AND h.seq = v.from_seq AND h.hash = v.from_hash
        RETURNING 1)
      SELECT CASE WHEN count(*) = ${actors.length} THEN 0 ELSE ('${HEADS_MOVED} ' || count(*))::int END FROM moved;
      ${this.copyStatement}`;
    return { text, rows: copyRows(planned) };
  }

  /**
   * Whether the message was written; false when nothing was written and the batch must take the
   * ordered path: a head was not where the plan starts, or PostgreSQL broke a deadlock by
   * aborting this message.
   */
  private async copyPlanned(message: CopyMessage): Promise<boolean> {
    try {
      await this.db.statementsThenCopy!(message.text, message.rows);
      return true;
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code === '22P02' && String((error as Error).message).includes(HEADS_MOVED)) return false;
      if (code === DEADLOCK_DETECTED) return false;
      throw error;
    }
  }
}

/** A batch's one-message write: the message, and whether it was written when it was sent ahead. */
interface PlannedCopy {
  readonly message?: CopyMessage;
  readonly written?: Promise<boolean>;
}

/** A plan as one simple-query message: the heads statement and COPY, and the COPY's rows. */
interface CopyMessage {
  readonly text: string;
  readonly rows: Buffer;
}

/** A head row as the plan statement returns it: where it is, or NULLs when it is missing. */
interface HeadRow {
  readonly actor: string;
  readonly seq: string | number | null;
  readonly hash: string | null;
}
