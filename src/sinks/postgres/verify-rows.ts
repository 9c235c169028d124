/**
 * The verifier's ordered read of chain rows, in pages ordered by (actor, seq), as text: what the
 * embedded store always uses, and what re-reads the actors the fast pass (verify-copy.ts) could
 * not vouch for. Kept free of kysely: `db.ts` builds the pool's raw-text reads on it.
 */
import type pg from 'pg';
import type { VerifyRow } from '../../public/security.ts';

/** Which rows: all, one actor's, or those of a list of actors. */
export interface RowSelection {
  readonly actor?: string;
  readonly actors?: readonly string[];
}

/** Runs one read statement; every value comes back as the server's text (or null). */
export type FetchTextRows = (text: string, values: readonly unknown[]) => Promise<Array<Array<string | null>>>;

/** Type parsing that leaves every value as the text the server sent. */
const RAW_TEXT = { getTypeParser: () => (value: string) => value } as unknown as pg.CustomTypesConfig;

/** `FetchTextRows` on a `pg` pool or client: rows as arrays, no row objects, no type parsers. */
export function textRowsOf(queryable: pg.Pool | pg.Client): FetchTextRows {
  return async (text, values) => (await queryable.query({ text, values: [...values], rowMode: 'array', types: RAW_TEXT })).rows as Array<Array<string | null>>;
}

const COLUMNS = `actor, seq, event_id, prev_hash, hash, canonical,
  round(date_part('epoch', event_time) * 1000000)::int8 AS et, round(date_part('epoch', received_at) * 1000000)::int8 AS ra`;

export const DEFAULT_PAGE_SIZE = 20_000;

export async function* pagedRows(
  fetch: FetchTextRows, schema: string, select: RowSelection = {}, pageSize = DEFAULT_PAGE_SIZE,
): AsyncIterable<readonly VerifyRow[]> {
  const table = `"${schema.replaceAll('"', '""')}".chain_events`;
  const page = async (after: { actor: string; seq: number } | undefined): Promise<VerifyRow[]> => {
    const where: string[] = [];
    const values: unknown[] = [];
    if (select.actor !== undefined) where.push(`actor = $${values.push(select.actor)}`);
    if (select.actors !== undefined) where.push(`actor = ANY($${values.push(select.actors)}::text[])`);
    if (after) where.push(`(actor, seq) > ($${values.push(after.actor)}, $${values.push(after.seq)}::int8)`);
    const rows = await fetch(`SELECT ${COLUMNS} FROM ${table} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY actor, seq LIMIT ${pageSize}`, values);
    return rows.map((row): VerifyRow => ({
      actor: row[0]!,
      seq: Number(row[1]),
      eventId: row[2]!,
      prevHash: row[3]!,
      hash: row[4]!,
      canonical: row[5]!,
      // Microseconds, so a search column moved by less than a millisecond still disagrees.
      eventTimeMs: Number(row[6]) / 1000,
      receivedAtMs: Number(row[7]) / 1000,
    }));
  };
  // The next page is requested before the current one is handed out, so the server reads
  // while the verifier hashes.
  let pending: Promise<VerifyRow[]> | undefined = page(undefined);
  while (pending) {
    // A consumer that stops early leaves a prefetch behind; its failure must not go unhandled.
    pending.catch(() => undefined);
    const rows = await pending;
    pending = undefined;
    if (rows.length === 0) return;
    const last = rows.at(-1)!;
    if (rows.length === pageSize) pending = page({ actor: last.actor, seq: last.seq });
    yield rows;
  }
}
