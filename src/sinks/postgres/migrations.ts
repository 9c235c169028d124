/**
 * Versioned schema migrations, applied at start in one transaction under a transaction-scoped
 * advisory lock, so several processes starting at once apply each version exactly once.
 * A migration is never edited after release; changes are new versions.
 */
import { sql } from 'kysely';
import type { ChainDb } from './db.ts';
import { SCHEMA_NAME } from './schema-name.ts';

export { SCHEMA_NAME };

interface Migration {
  readonly version: number;
  readonly name: string;
  /** Statements; `{s}` is replaced by the quoted schema name. */
  readonly statements: readonly string[];
}

/** The search view as migration 2 created it; migration 3 recreates it around a column change. */
const SEARCH_VIEW = `CREATE VIEW {s}.chain_events_search AS
  SELECT actor, seq, event_id, event_time, received_at, (canonical::jsonb) -> 'event' AS data FROM {s}.chain_events`;

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'hash chains, heads, checkpoints',
    statements: [
      // One row per stored event. (actor, seq) is the chain position: unique, so a fork is
      // impossible. `canonical` is the exact text hashed; `data` is derived from it by the
      // database, so the searchable copy can never disagree with what was hashed.
      `CREATE TABLE {s}.chain_events (
        actor text NOT NULL,
        seq bigint NOT NULL CHECK (seq >= 1),
        event_id text NOT NULL,
        prev_hash text NOT NULL CHECK (octet_length(prev_hash) = 64),
        hash text NOT NULL CHECK (octet_length(hash) = 64),
        canonical text NOT NULL,
        event_time timestamptz NOT NULL,
        received_at timestamptz NOT NULL,
        data jsonb GENERATED ALWAYS AS ((canonical::jsonb) -> 'event') STORED,
        CONSTRAINT chain_events_pkey PRIMARY KEY (actor, seq),
        CONSTRAINT chain_events_event_id_key UNIQUE (event_id)
      )`,
      `CREATE INDEX chain_events_time_idx ON {s}.chain_events (event_time, event_id)`,
      // The tip of each actor's chain; writers lock these rows (in actor order) to append.
      `CREATE TABLE {s}.chain_heads (
        actor text PRIMARY KEY,
        seq bigint NOT NULL CHECK (seq >= 0),
        hash text NOT NULL CHECK (octet_length(hash) = 64)
      )`,
      // Signed checkpoints; `body` is the exact signed text, `heads` the Merkle leaves' values
      // (NULL when unchanged since the previous checkpoint).
      `CREATE TABLE {s}.chain_checkpoints (
        number bigint PRIMARY KEY CHECK (number >= 1),
        created_at timestamptz NOT NULL,
        body text NOT NULL,
        hash text NOT NULL UNIQUE CHECK (octet_length(hash) = 64),
        signature text NOT NULL,
        key_id text NOT NULL,
        heads text
      )`,
    ],
  },
  {
    version: 2,
    name: 'search copy computed at read time; heads updated in place',
    statements: [
      // Parsing every record into jsonb on write cost a quarter of PostgreSQL's time per append
      // (docs/benchmarks.md). Search reads the same value from the view below instead; an
      // expression index on `(canonical::jsonb -> 'event')` buys fast search where it is needed.
      `ALTER TABLE {s}.chain_events DROP COLUMN data`,
      // What jsonb cannot hold (U+0000, written \u0000 in JSON) stays refused, so every stored
      // record can be searched. The regular expression runs only when the escape appears at all.
      `ALTER TABLE {s}.chain_events ADD CONSTRAINT chain_events_no_nul CHECK (
        strpos(canonical, '\\u0000') = 0 OR canonical !~ '(^|[^\\\\])(\\\\\\\\)*\\\\u0000') NOT VALID`,
      SEARCH_VIEW,
      // Every batch rewrites its actors' head rows; room on each page keeps those updates HOT.
      `ALTER TABLE {s}.chain_heads SET (fillfactor = 50)`,
    ],
  },
  {
    version: 3,
    name: 'actors and event ids compared as bytes (collation "C")',
    statements: [
      // Under the database's default collation (often a glibc or ICU locale) every comparison of
      // an actor or an id, in the three indexes and in the heads' ORDER BY, is a locale-aware
      // string comparison; "C" compares bytes: cheaper, the same order on every server, and
      // immune to a C library upgrade re-ordering strings under existing indexes. Rebuilds the
      // indexes of these columns (the rows stay where they are). The view depends on the columns.
      `DROP VIEW {s}.chain_events_search`,
      `ALTER TABLE {s}.chain_events ALTER COLUMN actor TYPE text COLLATE "C", ALTER COLUMN event_id TYPE text COLLATE "C"`,
      `ALTER TABLE {s}.chain_heads ALTER COLUMN actor TYPE text COLLATE "C"`,
      SEARCH_VIEW,
    ],
  },
];

/** Applies every missing migration (up to `upTo`: all by default); returns the versions applied now. */
export async function migrate(db: ChainDb, schema: string, upTo = MIGRATIONS.at(-1)!.version): Promise<number[]> {
  if (!SCHEMA_NAME.test(schema)) throw new Error(`schema "${schema}" must match ${SCHEMA_NAME}`);
  const quoted = `"${schema}"`;
  return db.transaction(async (tx) => {
    await sql`SELECT pg_advisory_xact_lock(hashtext(${`auditpipe:migrate:${schema}`}))`.execute(tx);
    await sql.raw(`CREATE SCHEMA IF NOT EXISTS ${quoted}`).execute(tx);
    await sql.raw(`CREATE TABLE IF NOT EXISTS ${quoted}.auditpipe_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`).execute(tx);
    const done = await sql<{ version: number }>`SELECT version FROM ${sql.id(schema, 'auditpipe_migrations')}`.execute(tx);
    const applied = new Set(done.rows.map((row) => Number(row.version)));
    const newest = Math.max(0, ...applied);
    const known = MIGRATIONS.at(-1)!.version;
    if (newest > known) {
      throw new Error(`schema ${schema} is at migration ${newest}, newer than this auditpipe knows (${known}); upgrade auditpipe`);
    }
    const now: number[] = [];
    for (const migration of MIGRATIONS) {
      if (applied.has(migration.version) || migration.version > upTo) continue;
      for (const statement of migration.statements) await sql.raw(statement.replaceAll('{s}', quoted)).execute(tx);
      await sql`INSERT INTO ${sql.id(schema, 'auditpipe_migrations')} (version, name) VALUES (${migration.version}, ${migration.name})`.execute(tx);
      now.push(migration.version);
    }
    return now;
  });
}
