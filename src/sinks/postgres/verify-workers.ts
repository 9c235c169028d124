/**
 * The verifier's chain walk split over threads: the store cuts the actors into ranges, walks the
 * first itself and hands each other one to a worker thread, which opens its own read-only
 * connection, walks its range (`checkChains`) and sends the result back; the results are merged
 * in range order, so the report reads as one walk would have made it. This module is also the
 * workers' entry point.
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { checkChains, type ChainCheckInput, type ChainCheckResult, type Claims } from '../../security/verify.ts';
import { pagedRows, textRowsOf, type ActorRange } from './verify-rows.ts';

interface Job {
  readonly url: string;
  readonly schema: string;
  readonly range: ActorRange;
  readonly input: ChainCheckInput;
}

type Reply = { readonly result: ChainCheckResult } | { readonly error: string };

const JOB_KEY = 'auditpipeVerifyJob';

export function checkRangeInWorker(job: Job): Promise<ChainCheckResult> {
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

/** One result for consecutive ranges: sums, tails and unmatched claims joined, findings in order up to `maxFindings`. */
export function mergeChainResults(results: readonly ChainCheckResult[], maxFindings: number): ChainCheckResult {
  const tails = new Map<string, { seq: number; hash: string }>();
  const unmatchedClaims: Claims = new Map();
  const unmatchedAnchored: Claims = new Map();
  const findings = [];
  let actors = 0;
  let events = 0;
  let uncoveredEvents = 0;
  let findingsTotal = 0;
  for (const result of results) {
    actors += result.actors;
    events += result.events;
    uncoveredEvents += result.uncoveredEvents;
    findingsTotal += result.findingsTotal;
    for (const finding of result.findings) if (findings.length < maxFindings) findings.push(finding);
    for (const [actor, tail] of result.tails) tails.set(actor, tail);
    for (const [actor, claims] of result.unmatchedClaims) unmatchedClaims.set(actor, claims);
    for (const [actor, claims] of result.unmatchedAnchored) unmatchedAnchored.set(actor, claims);
  }
  return { actors, events, uncoveredEvents, tails, findings, findingsTotal, unmatchedClaims, unmatchedAnchored };
}

async function runJob(job: Job): Promise<ChainCheckResult> {
  // Only the driver: a worker that loaded the whole store (kysely, PGlite) took longer to start.
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: job.url, application_name: 'auditpipe', options: '-c default_transaction_read_only=on' });
  await client.connect();
  try {
    return await checkChains(pagedRows(textRowsOf(client), job.schema, undefined, job.range), job.input);
  } finally {
    await client.end();
  }
}

const job = !isMainThread ? (workerData as Record<string, Job> | undefined)?.[JOB_KEY] : undefined;
if (job && parentPort) {
  const port = parentPort;
  runJob(job).then(
    (result) => port.postMessage({ result } satisfies Reply),
    (error: unknown) => port.postMessage({ error: (error as Error).message } satisfies Reply),
  );
}
