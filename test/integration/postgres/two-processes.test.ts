/**
 * Acceptance: 100,000 events over 1,000 actors through two auditpipe processes writing to the
 * same PostgreSQL database at once. Verify passes; no errors, gaps or forks; count = sent.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { writeKeyPair } from '../../../src/security/keys.ts';
import { freePort } from '../../helpers/servers.ts';
import { adminQuery, createDatabase, databaseUrl, dropDatabase, startCli, verifyJson, waitReadyOrExit, type RunningCli } from './helpers.ts';

const EVENTS = 100_000;
const ACTORS = 1_000;
const PER_REQUEST = 1_000;

const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-two-'));
const keyFile = path.join(dir, 'checkpoint.key');
let database: string;

before(async () => {
  writeKeyPair(keyFile);
  database = await createDatabase('ap_two');
});
after(async () => {
  await dropDatabase(database);
});

function configFor(name: string, port: number): string {
  const file = path.join(dir, `${name}.yml`);
  writeFileSync(file, stringify({
    data_dir: path.join(dir, `data-${name}`),
    log_level: 'warn',
    pipelines: [{
      name: 'load',
      source: { type: 'http', listen: `127.0.0.1:${port}` },
      batch: { max_events: 1000, interval_ms: 50, max_in_flight: 4 },
      // Every request touches all 1,000 actors, so concurrent batches queue on the same head rows:
      // give an attempt room to wait its turn on a loaded 2-core machine.
      sinks: [{
        type: 'postgres', url: databaseUrl(database), checkpoint_key_file: keyFile, checkpoint_interval_ms: 1000,
        retry: { timeout_ms: 60_000, max_elapsed_ms: 300_000 },
      }],
    }],
  }));
  return file;
}

const body = (request: number) => Array.from({ length: PER_REQUEST }, (_, i) => {
  const n = request * PER_REQUEST + i;
  return JSON.stringify({ id: `load-${n}`, actorId: `actor-${n % ACTORS}`, action: 'load', n });
}).join('\n');

describe('two auditpipe processes, one database', () => {
  it(`stores ${EVENTS} events over ${ACTORS} actors exactly once, in gapless verified chains`, { timeout: 900_000 }, async () => {
    const ports = [await freePort(), await freePort()];
    const processes: RunningCli[] = ports.map((port, i) => startCli(['run', '--config', configFor(`p${i}`, port)]));
    try {
      await Promise.all(ports.map((port, i) => waitReadyOrExit(port, processes[i]!)));
      const requests = EVENTS / PER_REQUEST;
      // Five requests are also sent to the other process, as a client retrying elsewhere would.
      const plan = [...Array.from({ length: requests }, (_, r) => ({ r, port: ports[r % 2]! })),
        ...[3, 17, 42, 64, 99].map((r) => ({ r, port: ports[(r + 1) % 2]! }))];
      const statuses: number[] = [];
      let next = 0;
      const worker = async () => {
        while (next < plan.length) {
          const { r, port } = plan[next++]!;
          const res = await fetch(`http://127.0.0.1:${port}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: body(r) });
          statuses.push(res.status);
          const answer = await res.json();
          assert.equal(res.status, 200, JSON.stringify(answer).slice(0, 500));
          assert.equal(answer.written, PER_REQUEST);
        }
      };
      await Promise.all(Array.from({ length: 4 }, worker));
      assert.equal(statuses.length, plan.length);
    } finally {
      for (const p of processes) p.child.kill('SIGTERM');
    }
    const codes = await Promise.all(processes.map((p) => p.exited));
    assert.deepEqual(codes, [0, 0], processes.map((p) => p.stderr()).join('\n'));
    for (const p of processes) assert.doesNotMatch(p.stdout() + p.stderr(), /"level":"error"/, "no errors logged");

    const rows = await adminQuery('SELECT count(*) AS n, count(DISTINCT event_id) AS ids, count(DISTINCT actor) AS actors FROM auditpipe.chain_events', [], database);
    assert.equal(Number(rows.rows[0].n), EVENTS);
    assert.equal(Number(rows.rows[0].ids), EVENTS);
    assert.equal(Number(rows.rows[0].actors), ACTORS);
    const uneven = await adminQuery('SELECT actor FROM auditpipe.chain_events GROUP BY actor HAVING count(*) <> max(seq) OR min(seq) <> 1', [], database);
    assert.deepEqual(uneven.rows, [], 'every chain runs 1..n without gaps');

    const { code, report } = verifyJson(['--database-url', databaseUrl(database), '--public-key', `${keyFile}.pub`]);
    assert.equal(code, 0, JSON.stringify(report.findings.slice(0, 10)));
    assert.equal(report.events, EVENTS);
    assert.equal(report.actors, ACTORS);
    assert.equal(report.uncoveredEvents, 0, 'the shutdown checkpoints cover every event');
    assert.ok(report.checkpoints >= 2);
  });
});
