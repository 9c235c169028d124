/**
 * The verifier's fast pass over a PostgreSQL store, on one thread or several.
 *
 * One thread reads the whole table with one binary COPY. Several threads cut the table into
 * chunks of heap blocks (TID range scans, PostgreSQL 14 and later) and read them under one
 * snapshot, exported by this thread's transaction and imported by each worker's, so together
 * they see exactly what one read would. Each thread owns a region of consecutive chunks and reads
 * it from the front; a thread done with its own takes the last chunk of the region with most left.
 * So no row is read twice, a late or slow thread does less, and each actor's rows reach a thread
 * in few runs (`UnorderedChainCheck`), which are joined at the end (`joinRuns`).
 * This module is also the workers' entry point.
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import pg from 'pg';
import { joinRuns, UnorderedChainCheck, type PassResult, type RowBytes, type UnorderedCheckResult } from '../../public/security.ts';
import type { ChainCheckInput } from '../../public/security.ts';
import { copyChainRows, verifierStream, type BlockRange } from './verify-copy.ts';

/** Chunks per thread when the table is big enough: small enough to even out the threads' ends. */
const CHUNKS_PER_THREAD = 16;
/** 1 MB: below this a chunk's statement costs more than its rows. */
const MIN_CHUNK_BLOCKS = 128;
/** TID range scans; before them a ctid condition made every chunk a full scan. */
const TID_RANGE_SCAN_VERSION = 140_000;

interface Job {
  readonly url: string;
  readonly schema: string;
  readonly input: ChainCheckInput;
  readonly snapshot: string;
  readonly chunkBlocks: number;
  readonly chunks: number;
  readonly queue: SharedArrayBuffer;
  readonly thread: number;
}

type Reply = { readonly result: PassResult } | { readonly error: string };

const WORKER_MARK = 'auditpipeVerifyWorker';

function connect(url: string): pg.Client {
  // A scan of a big table joins one already running wherever it is (synchronize_seqscans), so
  // it would begin mid-table: every actor's early rows would come last, after all the others.
  return new pg.Client({
    connectionString: url, application_name: 'auditpipe', options: '-c default_transaction_read_only=on -c synchronize_seqscans=off',
    stream: verifierStream,
  });
}

export interface ChunkOptions {
  /** Heap blocks per chunk; default: the table cut into 16 chunks per thread, each at least 1 MB. */
  readonly chunkBlocks?: number;
}

/** Checks every row of the store in `schema`, on up to `threads` threads. */
export async function checkAllRows(url: string, schema: string, threads: number, input: ChainCheckInput, options: ChunkOptions = {}): Promise<UnorderedCheckResult> {
  if (options.chunkBlocks !== undefined && (!Number.isSafeInteger(options.chunkBlocks) || options.chunkBlocks < 1)) {
    throw new RangeError(`chunkBlocks must be a positive integer, got ${options.chunkBlocks}`);
  }
  if (threads <= 1) return joinRuns([await checkWholeTable(url, schema, input)], input);
  // Started first: they load their modules while this thread asks for the snapshot.
  const workers = Array.from({ length: threads - 1 }, () => new Worker(new URL(import.meta.url), { workerData: { [WORKER_MARK]: true } }));
  const client = connect(url);
  try {
    await client.connect();
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    const table = await client.query<{ snapshot: string; version: number; blocks: string }>(
      `SELECT pg_export_snapshot() AS snapshot, current_setting('server_version_num')::int AS version,
         pg_relation_size($1::regclass) / current_setting('block_size')::int AS blocks`,
      [`"${schema.replaceAll('"', '""')}".chain_events`]);
    const { snapshot, version } = table.rows[0]!;
    if (version < TID_RANGE_SCAN_VERSION) {
      const pass = await checkRows(client, schema, input);
      return joinRuns([pass], input);
    }
    const blocks = Number(table.rows[0]!.blocks);
    const chunkBlocks = options.chunkBlocks ?? Math.max(MIN_CHUNK_BLOCKS, Math.ceil(blocks / (threads * CHUNKS_PER_THREAD)));
    const chunks = Math.max(1, Math.ceil(blocks / chunkBlocks));
    const queue = ChunkQueue.create(chunks, threads);
    const job = (thread: number): Job => ({ url, schema, input, snapshot, chunkBlocks, chunks, queue, thread });
    const running = [checkChunks(client, job(0)), ...workers.map((worker, index) => checkChunksInWorker(worker, job(index + 1)))];
    // The first failure is thrown below; the others (the threads stopped because of it) are expected.
    for (const pass of running) pass.catch(() => undefined);
    const passes = await Promise.all(running);
    await client.query('COMMIT');
    return joinRuns(passes, input);
  } finally {
    await Promise.all(workers.map((worker) => worker.terminate()));
    await client.end();
  }
}

async function checkWholeTable(url: string, schema: string, input: ChainCheckInput): Promise<PassResult> {
  const client = connect(url);
  try {
    await client.connect();
    return await checkRows(client, schema, input);
  } finally {
    await client.end();
  }
}

/** Reads the whole table (`next` undefined) or each chunk `next` hands out until it has none left. */
async function checkRows(client: pg.Client, schema: string, input: ChainCheckInput, next?: () => BlockRange | undefined): Promise<PassResult> {
  const check = new UnorderedChainCheck(input);
  const onRow = (row: RowBytes) => check.row(row);
  if (!next) await copyChainRows(client, schema, undefined, onRow);
  else for (let blocks = next(); blocks; blocks = next()) await copyChainRows(client, schema, blocks, onRow);
  return check.finish();
}

function checkChunks(client: pg.Client, job: Job): Promise<PassResult> {
  const queue = new ChunkQueue(job.queue);
  return checkRows(client, job.schema, job.input, () => {
    const chunk = queue.claim(job.thread);
    if (chunk === undefined) return undefined;
    const from = chunk * job.chunkBlocks;
    // The last chunk is open-ended: the relation's size was read after the snapshot was taken.
    return chunk === job.chunks - 1 ? { from } : { from, to: from + job.chunkBlocks };
  });
}

/**
 * A read-only connection to `url` inside a transaction that sees exactly what the transaction
 * that exported `snapshot` sees (which must still be open). Every worker reads through one.
 */
export async function connectInSnapshot(url: string, snapshot: string): Promise<pg.Client> {
  if (!/^[0-9A-F-]+$/i.test(snapshot)) throw new Error(`not a snapshot identifier: ${snapshot}`);
  const client = connect(url);
  try {
    await client.connect();
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    await client.query(`SET TRANSACTION SNAPSHOT '${snapshot}'`);
    return client;
  } catch (error) {
    await client.end();
    throw error;
  }
}

/** In a worker: this job's chunks on a connection of its own, in the snapshot of the main thread's transaction. */
async function checkChunksOnOwnConnection(job: Job): Promise<PassResult> {
  const client = await connectInSnapshot(job.url, job.snapshot);
  try {
    const pass = await checkChunks(client, job);
    await client.query('COMMIT');
    return pass;
  } finally {
    await client.end();
  }
}

function checkChunksInWorker(worker: Worker, job: Job): Promise<PassResult> {
  return new Promise((resolve, reject) => {
    let settled = false;
    worker.once('message', (reply: Reply) => {
      settled = true;
      if ('error' in reply) reject(new Error(reply.error));
      else resolve(reply.result);
    });
    worker.once('error', (error) => {
      settled = true;
      reject(error);
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new Error(`a verify worker exited with code ${code} before answering`));
    });
    worker.postMessage(job);
  });
}

/**
 * The chunks still to read, shared by the threads: thread k owns the region
 * [k·chunks/threads, (k+1)·chunks/threads) and takes from its front; a thread whose region is
 * empty takes from the back of the fullest one. Layout: a lock word, then per region its next
 * and end chunk.
 */
class ChunkQueue {
  readonly #cells: Int32Array;

  static create(chunks: number, threads: number): SharedArrayBuffer {
    const buffer = new SharedArrayBuffer(4 * (1 + 2 * threads));
    const cells = new Int32Array(buffer);
    for (let k = 0; k < threads; k += 1) {
      cells[1 + 2 * k] = Math.floor((k * chunks) / threads);
      cells[2 + 2 * k] = Math.floor(((k + 1) * chunks) / threads);
    }
    return buffer;
  }

  constructor(buffer: SharedArrayBuffer) {
    this.#cells = new Int32Array(buffer);
  }

  claim(thread: number): number | undefined {
    const cells = this.#cells;
    while (Atomics.compareExchange(cells, 0, 0, 1) !== 0); // held for a few loads and stores
    try {
      const own = 1 + 2 * thread;
      const next = Atomics.load(cells, own);
      if (next < Atomics.load(cells, own + 1)) {
        Atomics.store(cells, own, next + 1);
        return next;
      }
      let fullest = -1;
      let most = 0;
      for (let at = 1; at < cells.length; at += 2) {
        const left = Atomics.load(cells, at + 1) - Atomics.load(cells, at);
        if (left > most) {
          most = left;
          fullest = at;
        }
      }
      if (fullest < 0) return undefined;
      return Atomics.sub(cells, fullest + 1, 1) - 1;
    } finally {
      Atomics.store(cells, 0, 0);
    }
  }
}

if (!isMainThread && parentPort && (workerData as Record<string, unknown> | undefined)?.[WORKER_MARK]) {
  const port = parentPort;
  port.once('message', (job: Job) => {
    checkChunksOnOwnConnection(job).then(
      (result) => port.postMessage({ result } satisfies Reply),
      (error: unknown) => port.postMessage({ error: (error as Error).message } satisfies Reply),
    );
  });
}
