/**
 * The verifier's fast pass over a PostgreSQL store, on one thread or several: the actors are cut
 * into hash partitions; this thread checks the first (two shares) and each other one (one share)
 * goes to a worker thread.
 * Each opens its own read-only connection and streams its partition with one binary COPY
 * (`copyChainRows`) through an `UnorderedChainCheck`. All of an actor's rows are in one
 * partition, read under one snapshot. Measured against one reading thread that forwards rows to
 * the others: PostgreSQL filters every row once per thread, but Node, the part that limits,
 * copies and parses nothing twice (docs/decisions.md, "Verify"). This module is also the
 * workers' entry point.
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import pg from 'pg';
import { UnorderedChainCheck, type UnorderedCheckResult } from '../../security/unordered-check.ts';
import type { ChainCheckInput } from '../../security/verify.ts';
import { ALL_ACTORS, copyChainRows, type Partition } from './verify-copy.ts';

interface Job {
  readonly url: string;
  readonly schema: string;
  readonly partition: Partition;
  readonly input: ChainCheckInput;
}

type Reply = { readonly result: UnorderedCheckResult } | { readonly error: string };

const JOB_KEY = 'auditpipeVerifyJob';

/** Checks every row of the store in `schema`, on `threads` threads; one result per partition. */
export async function checkAllRows(url: string, schema: string, threads: number, input: ChainCheckInput): Promise<UnorderedCheckResult[]> {
  // This thread starts at once and warm, the workers after loading their modules cold: it takes
  // two shares (measured on 2 CPUs: 180,000–191,000 events/s against 163,000–169,000 for halves).
  const partitions: Partition[] = threads <= 1 ? [ALL_ACTORS] : [{ of: threads + 1, slots: [0, 1] }];
  for (let worker = 1; worker < threads; worker += 1) partitions.push({ of: threads + 1, slots: [worker + 1] });
  const jobs = partitions.map((partition): Job => ({ url, schema, partition, input }));
  return await Promise.all(jobs.map((job, index) => (index === 0 ? checkPartition(job) : checkPartitionInWorker(job))));
}

/** One partition, checked in this thread on a connection of its own. */
async function checkPartition(job: Job): Promise<UnorderedCheckResult> {
  // A scan of a big table joins one already running wherever it is (synchronize_seqscans), so
  // it would begin mid-table: every actor's early rows would come last, after all the others.
  const client = new pg.Client({
    connectionString: job.url, application_name: 'auditpipe', options: '-c default_transaction_read_only=on -c synchronize_seqscans=off',
  });
  try {
    await client.connect();
    const check = new UnorderedChainCheck(job.input);
    await copyChainRows(client, job.schema, job.partition, (row) => check.row(row));
    return check.finish();
  } finally {
    await client.end();
  }
}

function checkPartitionInWorker(job: Job): Promise<UnorderedCheckResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: { [JOB_KEY]: job } });
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
  });
}

const job = !isMainThread ? (workerData as Record<string, Job> | undefined)?.[JOB_KEY] : undefined;
if (job && parentPort) {
  const port = parentPort;
  checkPartition(job).then(
    (result) => port.postMessage({ result } satisfies Reply),
    (error: unknown) => port.postMessage({ error: (error as Error).message } satisfies Reply),
  );
}
