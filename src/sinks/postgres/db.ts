/**
 * The two ways the chain store reaches PostgreSQL: a real server through a `pg` pool (and one
 * pipelined connection for the appends' one-message writes), or the embedded PGlite database in
 * a directory (one process per directory, guarded by a lock file).
 */
import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { Kysely, PGliteDialect, PostgresDialect, type Transaction } from 'kysely';
import pg from 'pg';
import { statementsThenCopy } from './copy-in.ts';
import { createEmbeddedDatabase, embeddedDatabaseExists, embeddedPgliteOptions } from './embedded-init.ts';
import { textRowsOf } from './verify-rows.ts';

export interface ChainDb {
  readonly kysely: Kysely<any>;
  readonly embedded: boolean;
  /** Where it is, for logs and messages: host/database or the directory; never credentials. */
  readonly where: string;
  /** Runs `work` in one READ COMMITTED transaction. Embedded: one at a time (PGlite has one session). */
  transaction<T>(work: (tx: Transaction<any>) => Promise<T>): Promise<T>;
  /**
   * PostgreSQL only: statements, then `COPY … FROM STDIN` with `data`, in one message run as one
   * implicit transaction (`statementsThenCopy`): the chain append's common case. The number of
   * rows copied. PGlite has no such path.
   */
  readonly statementsThenCopy?: (text: string, data: Buffer) => Promise<number>;
  /** Runs read-only statements outside a transaction. */
  read<T>(work: (db: Kysely<any>) => Promise<T>): Promise<T>;
  /** Runs one statement that writes, as its own transaction (no BEGIN/COMMIT round trips). */
  statement<T>(work: (db: Kysely<any>) => Promise<T>): Promise<T>;
  /**
   * PostgreSQL only: one read statement whose rows come back as arrays of the server's text
   * values, unparsed (no row objects, no type parsers): the verifier's bulk read.
   */
  readonly readTextRows?: (text: string, values: readonly unknown[]) => Promise<Array<Array<string | null>>>;
  /** False after a connection-level failure, until a statement succeeds again. */
  healthy(): boolean;
  close(): Promise<void>;
}

/** The server's location without user or password, for messages. */
export function describeUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.hostname}${parsed.port ? `:${parsed.port}` : ''}${parsed.pathname}`;
  } catch {
    return 'the configured PostgreSQL url';
  }
}

/** SQLSTATE classes that mean "cannot reach or use the server right now" rather than "bad statement". */
function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  if (typeof code !== 'string') return true; // socket errors, timeouts
  return code.startsWith('08') || code.startsWith('57P') || code === '53300';
}

export interface PostgresOptions {
  readonly url: string;
  readonly poolSize: number;
  readonly statementTimeoutMs: number;
  /** Every transaction read-only (the verifier). */
  readonly readOnly?: boolean;
  readonly onError?: (error: Error) => void;
}

export function openPostgres(options: PostgresOptions): ChainDb {
  const settings = {
    connectionString: options.url,
    statement_timeout: options.statementTimeoutMs,
    idle_in_transaction_session_timeout: options.statementTimeoutMs,
    connectionTimeoutMillis: 10_000,
    application_name: 'auditpipe',
    ...(options.readOnly ? { options: '-c default_transaction_read_only=on' } : {}),
  };
  const pool = new pg.Pool({ ...settings, max: options.poolSize });
  let healthy = true;
  // An idle client losing its server must not crash the process; the next statement reconnects.
  pool.on('error', (error) => {
    healthy = false;
    options.onError?.(error);
  });
  // pg-pool listens for errors only on idle clients. A checked-out client whose server goes away
  // between two statements of a transaction emits 'error' with no listener, which would crash the
  // process; the transaction itself fails on its next statement and the pipeline retries it.
  pool.on('connect', (client) => {
    client.on('error', () => {
      healthy = false;
    });
  });
  const kysely = new Kysely<any>({ dialect: new PostgresDialect({ pool }) });
  const textRows = textRowsOf(pool);
  const track = async <T>(work: () => Promise<T>): Promise<T> => {
    try {
      const result = await work();
      healthy = true;
      return result;
    } catch (error) {
      if (isConnectionError(error)) healthy = false;
      throw error;
    }
  };
  const copies = pipelinedConnection(settings, () => {
    healthy = false;
  });
  return {
    kysely,
    embedded: false,
    where: describeUrl(options.url),
    transaction: (work) => track(() => kysely.transaction().execute(work)),
    statementsThenCopy: (text, data) => track(async () => statementsThenCopy(await copies.client(), text, data)),
    read: (work) => track(() => work(kysely)),
    statement: (work) => track(() => work(kysely)),
    readTextRows: (text, values) => track(() => textRows(text, values)),
    healthy: () => healthy,
    close: async () => {
      await copies.close();
      await kysely.destroy();
    },
  };
}

/**
 * The connection the chain appends' one-message writes go through, in `pg`'s pipeline mode: each
 * message is sent the moment it is ready, behind those still running, so PostgreSQL goes from one
 * batch's message to the next without waiting for Node to read a reply and send again
 * (docs/decisions.md, "Chain appends"). Messages are sent, and run, in call order. Opened on
 * first use; after the connection fails, the messages on it fail and the next call opens another.
 */
function pipelinedConnection(settings: pg.ClientConfig, onFailure: () => void) {
  let current: Promise<pg.Client> | undefined;
  const open = (): Promise<pg.Client> => {
    const client = new pg.Client({ ...settings, pipeline: true } as pg.ClientConfig);
    const forget = () => {
      if (current === opening) current = undefined;
    };
    // Without a listener an 'error' would crash the process; the messages on the connection fail on their own.
    client.on('error', () => {
      onFailure();
      forget();
    });
    client.on('end', forget);
    const opening = client.connect().then(() => client);
    opening.catch(forget);
    return opening;
  };
  return {
    client: (): Promise<pg.Client> => (current ??= open()),
    async close(): Promise<void> {
      const closing = current;
      current = undefined;
      const client = await closing?.catch(() => undefined);
      await client?.end().catch(() => undefined);
    },
  };
}


/** A single-process lock on a directory: a file holding the owner's pid, created exclusively. */
export class DirectoryLock {
  readonly file: string;
  private held = false;

  constructor(file: string) {
    this.file = file;
  }

  acquire(purpose: string): void {
    mkdirSync(path.dirname(this.file), { recursive: true });
    for (let attempt = 0; attempt < 2; attempt += 1) {
      try {
        const fd = openSync(this.file, 'wx', 0o600);
        writeSync(fd, `${process.pid}\n`);
        closeSync(fd);
        this.held = true;
        return;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const owner = Number.parseInt(readFileSync(this.file, 'utf8').trim(), 10);
      if (Number.isInteger(owner) && owner > 0 && processAlive(owner)) {
        throw new Error(`the embedded store ${path.dirname(this.file)} is in use by process ${owner} (lock file ${this.file}); `
          + `only one process may open it at a time — stop that process first, or use a PostgreSQL "url" to share a store between processes (${purpose})`);
      }
      // The owner died without cleaning up: the lock is stale.
      try {
        unlinkSync(this.file);
      } catch {
        // Another process removed it first; retry the exclusive create.
      }
    }
    throw new Error(`could not take the lock ${this.file}: another process keeps taking it`);
  }

  release(): void {
    if (!this.held) return;
    this.held = false;
    try {
      unlinkSync(this.file);
    } catch {
      // Already gone.
    }
  }
}

function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Inside the single executable PGlite cannot find its WebAssembly and data files next to its
 * module: they are SEA assets (scripts/build-binary.mjs embeds them), handed over here.
 * Outside one, PGlite loads them from its package as usual.
 */
async function seaRuntimeFiles(): Promise<{ pgliteWasmModule?: WebAssembly.Module; initdbWasmModule?: WebAssembly.Module; fsBundle?: Blob }> {
  let sea: typeof import('node:sea');
  try {
    sea = await import('node:sea');
  } catch {
    return {};
  }
  if (!sea.isSea()) return {};
  const asset = (name: string) => {
    try {
      return sea.getAsset(name);
    } catch {
      throw new Error(`this executable was built without the embedded store (SEA asset ${name} is missing); rebuild it with "npm run build:binary" where @electric-sql/pglite is installed, or use a PostgreSQL "url"`);
    }
  };
  const [pgliteWasmModule, initdbWasmModule] = await Promise.all([
    WebAssembly.compile(asset('pglite/pglite.wasm')),
    WebAssembly.compile(asset('pglite/initdb.wasm')),
  ]);
  return { pgliteWasmModule, initdbWasmModule, fsBundle: new Blob([asset('pglite/pglite.data')]) };
}

/** Opens (creating when absent) the embedded PGlite database in `dir`, holding its lock file until `close()`. */
export async function openEmbedded(dir: string, purpose: string): Promise<ChainDb> {
  const lock = new DirectoryLock(`${dir}.lock`);
  lock.acquire(purpose);
  let pglite: import('@electric-sql/pglite').PGlite;
  try {
    mkdirSync(dir, { recursive: true });
    const { PGlite } = await import('@electric-sql/pglite');
    const seaFiles = await seaRuntimeFiles();
    // Inside the single executable there is no script to run in a child: initdb runs here.
    if (!seaFiles.pgliteWasmModule && !embeddedDatabaseExists(dir)) await createEmbeddedDatabase(dir);
    pglite = new PGlite({ ...seaFiles, ...(await embeddedPgliteOptions(dir, PGlite.defaultStartParams)) });
    await pglite.waitReady;
  } catch (error) {
    lock.release();
    throw new Error(`cannot open the embedded store in ${dir}: ${(error as Error).message}`);
  }
  const kysely = new Kysely<any>({ dialect: new PGliteDialect({ pglite }) });
  // PGlite is one session: kysely's driver shares it, so statements and transactions take turns.
  let queue: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(work: () => Promise<T>): Promise<T> => {
    const run = queue.then(work, work);
    queue = run.catch(() => undefined);
    return run;
  };
  let closed = false;
  return {
    kysely,
    embedded: true,
    where: dir,
    transaction: (work) => exclusive(() => kysely.transaction().execute(work)),
    read: (work) => exclusive(() => work(kysely)),
    statement: (work) => exclusive(() => work(kysely)),
    healthy: () => !closed,
    close: async () => {
      if (closed) return;
      closed = true;
      try {
        await exclusive(() => kysely.destroy());
      } finally {
        lock.release();
      }
    },
  };
}
