/**
 * PostgreSQL stopped mid-run (fast shutdown: open transactions are aborted, connections cut)
 * while HTTP requests are in flight into the chain store, then started again. The contract:
 * nothing answered 2xx is lost, nothing is answered 2xx while the store is down (503 with
 * Retry-After instead), a client that retries what failed ends with every event stored exactly
 * once, and the chains verify.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { writeKeyPair } from '../../../src/security/keys.ts';
import { startEngine, type TestEngine } from '../../helpers/engine.ts';
import { serverCtl, uniqueName } from '../../helpers/servers.ts';
import { waitFor } from '../nats/helpers.ts';
import { adminQuery, createDatabase, databaseUrl, dropDatabase, verifyJson } from './helpers.ts';

const WORKERS = 6;
const EVENTS_PER_REQUEST = 10;
const ACTORS = 25;

interface Answer {
  readonly request: number;
  readonly status: number;
  readonly started: number;
  readonly finished: number;
  readonly retryAfter: string | null;
  readonly body: string;
}

describe('PostgreSQL stopped mid-batch under HTTP load', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-pg-outage-'));
  const keyFile = path.join(dir, 'checkpoint.key');
  const tag = uniqueName('outage');
  let database: string;
  let engine: TestEngine | undefined;
  let postgresStopped = false;

  before(async () => {
    writeKeyPair(keyFile);
    database = await createDatabase('ap_outage');
  });
  after(async () => {
    // Whatever happened, the shared server comes back for everyone else.
    if (postgresStopped) await serverCtl('start', 'postgres');
    await engine?.stop().catch(() => undefined);
    await dropDatabase(database);
  });

  it('answers 503 while it is down, loses nothing answered 2xx, stores every retried event once, and verifies', async () => {
    engine = await startEngine({
      pipelines: [{
        name: 'ledger',
        nak_delay_ms: 200,
        source: { type: 'http', listen: '127.0.0.1:0' },
        batch: { max_events: 40, interval_ms: 20 },
        sinks: [{
          type: 'postgres', url: databaseUrl(database), checkpoint_interval_ms: 500, checkpoint_key_file: keyFile,
          statement_timeout_ms: 5_000,
          retry: { max_attempts: 3, initial_backoff_ms: 100, max_backoff_ms: 400, max_elapsed_ms: 1_500, timeout_ms: 2_000 },
        }],
      }],
    });
    const base = engine.url('ledger');
    const password = decodeURIComponent(new URL(databaseUrl(database)).password);
    const requestIds = (request: number) => Array.from({ length: EVENTS_PER_REQUEST }, (_, i) => `${tag}-${request}-${i}`);
    const body = (request: number) => requestIds(request)
      .map((id, i) => JSON.stringify({ id, actorId: `actor-${(request + i) % ACTORS}`, action: 'update', n: request * EVENTS_PER_REQUEST + i }))
      .join('\n') + '\n';
    const send = async (request: number): Promise<Answer> => {
      const started = performance.now();
      const res = await fetch(`${base}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: body(request) })
        .catch(() => undefined);
      const text = res ? await res.text() : '';
      return { request, status: res?.status ?? 0, started, finished: performance.now(), retryAfter: res?.headers.get('retry-after') ?? null, body: text };
    };

    const answers: Answer[] = [];
    let inFlight = 0;
    let next = 0;
    let done = false;
    // The clients keep sending before, during and after the outage.
    const workers = Promise.all(Array.from({ length: WORKERS }, async () => {
      while (!done) {
        const request = next++;
        inFlight += 1;
        answers.push(await send(request));
        inFlight -= 1;
      }
    }));

    let stoppedAt = 0;
    let startingAt = 0;
    let inFlightAtStop = 0;
    try {
      await waitFor('some requests stored before the outage', async () => answers.filter((a) => a.status === 200).length >= 20, 60_000);
      inFlightAtStop = inFlight;
      postgresStopped = true;
      await serverCtl('stop', 'postgres');
      stoppedAt = performance.now();
      await waitFor('requests sent during the outage to be answered', async () => answers.filter((a) => a.started > stoppedAt).length >= 2 * WORKERS, 60_000);
      startingAt = performance.now();
      await serverCtl('start', 'postgres');
      postgresStopped = false;
      const recoveredAt = performance.now();
      await waitFor('requests stored again after the restart', async () => answers.filter((a) => a.started > recoveredAt && a.status === 200).length >= 20, 120_000);
    } finally {
      done = true;
      if (postgresStopped) {
        await serverCtl('start', 'postgres');
        postgresStopped = false;
      }
    }
    await workers;
    const REQUESTS = next;
    assert.ok(inFlightAtStop > 0, 'requests were in flight when PostgreSQL stopped');

    // While it was down: never a 2xx, always 503 with Retry-After.
    const duringOutage = answers.filter((a) => a.started > stoppedAt && a.finished < startingAt);
    assert.ok(duringOutage.length >= WORKERS, `answers during the outage: ${duringOutage.length}`);
    for (const answer of duringOutage) {
      assert.equal(answer.status, 503, `request ${answer.request} answered ${answer.status} while PostgreSQL was down`);
      assert.match(answer.retryAfter ?? '', /^\d+$/);
      // A clear reason, and never the database credentials.
      const reason = JSON.parse(answer.body) as { error: string; details: unknown };
      assert.equal(reason.error, 'not written');
      assert.ok(JSON.stringify(reason.details).length > 2, answer.body);
      assert.ok(!answer.body.includes(password), 'the 503 answer leaks the database password');
    }
    console.log(`# a 503 during the outage: ${duringOutage[0]!.body.slice(0, 300)}`);
    for (const answer of answers) assert.ok(answer.status === 200 || answer.status === 503, `request ${answer.request}: ${answer.status}`);

    // Nothing answered 2xx is missing (checked before any retry could have stored it again).
    const acked = answers.filter((a) => a.status === 200).flatMap((a) => requestIds(a.request));
    const storedBeforeRetry = new Set((await adminQuery(`SELECT event_id FROM auditpipe.chain_events`, [], database)).rows.map((r) => r.event_id as string));
    const lost = acked.filter((id) => !storedBeforeRetry.has(id));
    assert.deepEqual(lost, [], 'events answered 200 but not stored');

    // The client retries every request that was not answered 2xx, with the same ids.
    const failed = [...new Set(answers.filter((a) => a.status !== 200).map((a) => a.request))];
    assert.ok(failed.length > 0, 'some requests failed during the outage');
    for (const request of failed) {
      let answer = await send(request);
      for (let attempt = 1; answer.status !== 200 && attempt < 60; attempt += 1) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        answer = await send(request);
      }
      assert.equal(answer.status, 200, `request ${request} still fails after PostgreSQL is back`);
    }
    const partlyStored = failed.filter((request) => requestIds(request).some((id) => storedBeforeRetry.has(id))).length;

    await engine.stop();
    engine = undefined;

    const rows = await adminQuery(`SELECT count(*)::int AS n, count(DISTINCT event_id)::int AS ids FROM auditpipe.chain_events`, [], database);
    assert.equal(rows.rows[0].n, REQUESTS * EVENTS_PER_REQUEST, 'every event stored exactly once');
    assert.equal(rows.rows[0].ids, REQUESTS * EVENTS_PER_REQUEST);
    const expected = Array.from({ length: REQUESTS }, (_, r) => requestIds(r)).flat();
    const stored = new Set((await adminQuery(`SELECT event_id FROM auditpipe.chain_events`, [], database)).rows.map((r) => r.event_id as string));
    assert.deepEqual(expected.filter((id) => !stored.has(id)), []);

    const { code, report, stderr } = verifyJson(['--database-url', databaseUrl(database), '--public-key', `${keyFile}.pub`]);
    assert.equal(code, 0, `${JSON.stringify(report.findings.slice(0, 5))} ${stderr}`);
    assert.equal(report.events, REQUESTS * EVENTS_PER_REQUEST);
    assert.equal(report.uncoveredEvents, 0, 'the shutdown checkpoint covers everything');
    // Diagnostic for the log: how many failed requests had been partly committed (deduplicated on retry).
    console.log(`# outage: ${duringOutage.length} answers during the outage, ${failed.length} requests retried, ${partlyStored} of them partly stored before`);
  });
});
