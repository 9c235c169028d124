// The HTTP SDK across a server outage, on real PostgreSQL: events logged while auditpipe is down
// are retried, spooled to disk, and replayed by the next client start against a new engine on
// the same store; each event ends up in the chain exactly once, even when a spool is replayed twice.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { HttpAuditClient } from '../../../src/client/index.ts';
import { API_KEY, argusDatabase, argusKeys, argusRequest, freePort, startArgus } from './helpers.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');

describe('HTTP SDK with the server stopped for a while', () => {
  const cleanups: Array<() => Promise<void>> = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  it('spools while the server is down and delivers everything once after it is back', async () => {
    const keys = argusKeys();
    const db = await argusDatabase('argus_sdk');
    cleanups.push(db.drop);
    const env = { ...db.env, ARGUS_API_KEY: API_KEY, ARGUS_SIGNATURE_KEYS_FILE: keys.keysFile, AUDITPIPE_CHECKPOINT_KEY_FILE: keys.checkpointKeyFile };
    const port = await freePort();
    const baseUrl = `http://127.0.0.1:${port}`;
    const spoolDir = mkdtempSync(path.join(tmpdir(), 'argus-spool-'));
    const options = {
      baseUrl, apiKey: API_KEY, spoolDir, batchSize: 10, batchIntervalMs: 20, maxAttempts: 3, initialBackoffMs: 10, maxBackoffMs: 50,
      signingKey: { keyId: 'svc-ed', privateKey: keys.ed.privateKey },
    };
    const event = (n: number) => {
      const { timestamp: _t, message: _m, ...rest } = argusRequest({ actorId: `outage-${n % 4}` });
      return { ...rest, message: { n } };
    };

    const first = await startArgus(env, port);
    const client = new HttpAuditClient(options);
    const before = await Promise.all(Array.from({ length: 20 }, (_, n) => client.log(event(n))));
    assert.equal((await client.flush()).delivered, 20);
    await first.stop();

    const during = await Promise.all(Array.from({ length: 30 }, (_, n) => client.log(event(100 + n))));
    const down = await client.close();
    assert.equal(down.spooled, 30, 'nothing is lost or reported failed while the server is down');
    assert.equal(down.failed.length, 0);
    const spoolFiles = readdirSync(spoolDir);
    assert.ok(spoolFiles.length >= 3);
    // A copy of the spool, replayed a second time below: as if the answer to a written batch was lost.
    const copy = mkdtempSync(path.join(tmpdir(), 'argus-spool-copy-'));
    cpSync(spoolDir, copy, { recursive: true });

    const second = await startArgus(env, port);
    cleanups.push(() => second.stop());
    const restarted = new HttpAuditClient(options);
    const replay = await restarted.close();
    assert.equal(replay.delivered, 30);
    assert.deepEqual(readdirSync(spoolDir), [], 'the replayed spool is removed');
    const again = await new HttpAuditClient({ ...options, spoolDir: copy }).close();
    assert.equal(again.delivered, 30);

    const ids = await db.sql('SELECT event_id FROM auditpipe.chain_events');
    assert.equal(ids.rows.length, 50, 'every event stored once');
    assert.deepEqual(ids.rows.map((r) => r.event_id).sort(), [...before, ...during].sort());
    const gaps = await db.sql('SELECT actor, count(*)::int AS n, max(seq)::int AS top FROM auditpipe.chain_events GROUP BY actor');
    for (const row of gaps.rows) assert.equal(row.n, row.top, `chain of ${row.actor} has no gap and no duplicate`);

    await second.stop();
    // The whole store verifies offline: chains, heads, signed checkpoints.
    const url = new URL(process.env.DATABASE_URL!);
    url.pathname = `/${db.name}`;
    const verify = spawnSync(process.execPath, [path.join(ROOT, 'src/cli/main.ts'), 'verify', '--database-url', url.toString(), '--public-key', `${keys.checkpointKeyFile}.pub`, '--json'], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(verify.status, 0, verify.stdout + verify.stderr);
    assert.equal(JSON.parse(verify.stdout).events, 50);
  });
});
