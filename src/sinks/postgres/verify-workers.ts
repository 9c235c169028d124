/**
 * The verifier's fast pass over a PostgreSQL store, on one thread or several: this thread streams
 * every row with one binary COPY, checks the actors of partition 0 itself and forwards the rows
 * of the other partitions, in batches, to worker threads that each check theirs with their own
 * `UnorderedChainCheck`. Actors are partitioned by a hash of their id, so all of an actor's rows
 * reach the same check. One read keeps PostgreSQL's share of the work as small as it gets (a
 * filtered read per thread made it scan the table once per thread). This module is also the
 * workers' entry point.
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import pg from 'pg';
import { UnorderedChainCheck, type UnorderedCheckResult } from '../../security/unordered-check.ts';
import type { ChainCheckInput } from '../../security/verify.ts';
import { copyChainRows, readRows, RowReader } from './verify-copy.ts';

interface Job {
  readonly input: ChainCheckInput;
}

type FromWorker = { readonly ack: true } | { readonly result: UnorderedCheckResult } | { readonly error: string };
type ToWorker = { readonly batch: ArrayBuffer; readonly length: number } | { readonly end: true };

const JOB_KEY = 'auditpipeVerifyJob';
const BATCH_BYTES = 256 * 1024;
/** Batches a worker may have queued before the read waits for it. */
const MAX_BATCHES_IN_FLIGHT = 4;

/** Checks every row of the store in `schema`, on `threads` threads; one result per partition. */
export async function checkAllRows(url: string, schema: string, threads: number, input: ChainCheckInput): Promise<UnorderedCheckResult[]> {
  // A scan of a big table joins one already running wherever it is (synchronize_seqscans), so
  // it would begin mid-table: every actor's early rows would come last, after all the others.
  const client = new pg.Client({
    connectionString: url, application_name: 'auditpipe', options: '-c default_transaction_read_only=on -c synchronize_seqscans=off',
  });
  const local = new UnorderedChainCheck(input);
  const workers = Array.from({ length: threads - 1 }, () => new PartitionWorker({ input }));
  try {
    await client.connect();
    await copyChainRows(client, schema, (row) => {
      // This thread also reads and forwards every row, so it keeps half a worker's share of actors.
      const slot = workers.length === 0 ? 0 : slotOf(row.actor, 2 * threads - 1);
      const partition = slot === 0 ? 0 : 1 + ((slot - 1) % workers.length);
      if (partition === 0) local.row(row);
      else return workers[partition - 1]!.add(row.bytes, row.rowStart, row.rowEnd);
    });
    return [local.finish(), ...await Promise.all(workers.map((worker) => worker.finish()))];
  } finally {
    for (const worker of workers) void worker.terminate();
    await client.end();
  }
}

/** FNV-1a of the actor's UTF-16 code units: cheap, and spreads similar ids evenly. */
function slotOf(actor: string, count: number): number {
  let h = 0x811c9dc5;
  for (let k = 0; k < actor.length; k += 1) h = Math.imul(h ^ actor.charCodeAt(k), 0x01000193);
  return (h >>> 0) % count;
}

/** A worker thread checking one partition, fed batches of rows laid end to end. */
class PartitionWorker {
  readonly #worker: Worker;
  readonly #result: Promise<UnorderedCheckResult>;
  #batch = Buffer.allocUnsafeSlow(BATCH_BYTES);
  #used = 0;
  #inFlight = 0;
  #drained: (() => void) | undefined;
  #waiting: Promise<void> | undefined;

  constructor(job: Job) {
    this.#worker = new Worker(new URL(import.meta.url), { workerData: { [JOB_KEY]: job } });
    this.#result = new Promise((resolve, reject) => {
      this.#worker.on('message', (message: FromWorker) => {
        if ('ack' in message) {
          this.#inFlight -= 1;
          if (this.#inFlight < MAX_BATCHES_IN_FLIGHT) {
            this.#drained?.();
            this.#drained = undefined;
            this.#waiting = undefined;
          }
        } else if ('result' in message) {
          resolve(message.result);
        } else {
          reject(new Error(message.error));
        }
      });
      this.#worker.once('error', reject);
      this.#worker.once('exit', (code) => reject(new Error(`a verify worker exited with code ${code} before answering`)));
    });
    // Observed by finish() or by a waiting add(); until then a failure must not go unhandled.
    this.#result.catch(() => undefined);
  }

  /** Queues the row's bytes; a promise when the worker is behind and the read should wait. */
  add(bytes: Buffer, start: number, end: number): Promise<void> | undefined {
    const length = end - start;
    let wait: Promise<void> | undefined;
    if (this.#used + length > this.#batch.length) {
      wait = this.#send();
      if (length > this.#batch.length) this.#batch = Buffer.allocUnsafeSlow(length);
    }
    bytes.copy(this.#batch, this.#used, start, end);
    this.#used += length;
    return wait;
  }

  #send(): Promise<void> | undefined {
    if (this.#used === 0) return undefined;
    const message: ToWorker = { batch: this.#batch.buffer as ArrayBuffer, length: this.#used };
    this.#worker.postMessage(message, [message.batch]);
    this.#batch = Buffer.allocUnsafeSlow(BATCH_BYTES);
    this.#used = 0;
    this.#inFlight += 1;
    if (this.#inFlight < MAX_BATCHES_IN_FLIGHT) return undefined;
    // Every caller until the worker catches up gets the same promise.
    this.#waiting ??= Promise.race([
      new Promise<void>((resolve) => {
        this.#drained = resolve;
      }),
      this.#result.then(() => undefined),
    ]);
    return this.#waiting;
  }

  async finish(): Promise<UnorderedCheckResult> {
    await this.#send();
    this.#worker.postMessage({ end: true } satisfies ToWorker);
    return await this.#result;
  }

  terminate(): Promise<number> {
    return this.#worker.terminate();
  }
}

const job = !isMainThread ? (workerData as Record<string, Job> | undefined)?.[JOB_KEY] : undefined;
if (job && parentPort) {
  const port = parentPort;
  const check = new UnorderedChainCheck(job.input);
  const reader = new RowReader();
  const onRow = check.row.bind(check);
  port.on('message', (message: ToWorker) => {
    try {
      if ('batch' in message) {
        readRows(Buffer.from(message.batch, 0, message.length), onRow, reader);
        port.postMessage({ ack: true } satisfies FromWorker);
      } else {
        port.postMessage({ result: check.finish() } satisfies FromWorker);
      }
    } catch (error) {
      port.postMessage({ error: (error as Error).message } satisfies FromWorker);
    }
  });
}
