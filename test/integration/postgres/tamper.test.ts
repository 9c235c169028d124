/**
 * Each tampering an attacker with SQL access could do, on a copy of a verified store: verify must
 * name the right actor and sequence and exit 1.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { toEvent } from '../../../src/core/event.ts';
import { canonicalRecord, chainHash } from '../../../src/security/chain.ts';
import { checkpointHash, formatCheckpoint, parseCheckpoint, signCheckpoint } from '../../../src/security/checkpoint.ts';
import { loadPrivateKeyFile, writeKeyPair } from '../../../src/security/keys.ts';
import { openPostgres } from '../../../src/sinks/postgres/db.ts';
import { migrate } from '../../../src/sinks/postgres/migrations.ts';
import { ChainStore } from '../../../src/sinks/postgres/store.ts';
import { adminQuery, createDatabase, databaseUrl, dropDatabase, verifyJson, type VerifyJson } from './helpers.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-tamper-'));
const keyFile = path.join(dir, 'checkpoint.key');
const publicKey = `${keyFile}.pub`;
let source: string;
const copies: string[] = [];

const events = (actor: string, from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => toEvent({ id: `${actor}-${from + i}`, actorId: actor, action: `a${from + i}` }, { actorField: 'actorId' }));

before(async () => {
  writeKeyPair(keyFile);
  const key = loadPrivateKeyFile(keyFile);
  source = await createDatabase('ap_tamper_src');
  const db = openPostgres({ url: databaseUrl(source), poolSize: 2, statementTimeoutMs: 30_000 });
  try {
    await migrate(db, 'auditpipe');
    const store = new ChainStore(db, 'auditpipe');
    await store.append([...events('alice', 1, 5), ...events('bob', 1, 5), ...events('carol', 1, 3)]);
    await store.writeCheckpoint(key, 'auditpipe/tamper');
    await store.append([...events('alice', 6, 10), ...events('bob', 6, 10), ...events('carol', 4, 5)]);
    await store.writeCheckpoint(key, 'auditpipe/tamper');
    await store.writeCheckpoint(key, 'auditpipe/tamper');
  } finally {
    await db.close();
  }
});

after(async () => {
  for (const name of [...copies, source]) await dropDatabase(name);
});

/** A copy of the verified store with `tamper` applied by plain SQL, then verified. */
async function tampered(tamper: (query: (text: string, values?: unknown[]) => Promise<{ rows: any[] }>) => Promise<void>, args: string[] = []) {
  const copy = await createDatabase('ap_tamper', source);
  copies.push(copy);
  await tamper((text, values = []) => adminQuery(text, values, copy));
  return verifyJson(['--database-url', databaseUrl(copy), '--public-key', publicKey, ...args]);
}

function has(report: VerifyJson, kind: string, actor: string | null, sequence: number | null): void {
  assert.ok(report.findings.some((f) => f.kind === kind && f.actor === actor && f.sequence === sequence),
    `expected ${kind} at ${actor}#${sequence}; got ${JSON.stringify(report.findings, null, 1)}`);
}

describe('verify detects tampering', () => {
  it('passes the untouched store', async () => {
    const { code, report } = verifyJson(['--database-url', databaseUrl(source), '--public-key', publicKey]);
    assert.equal(code, 0, JSON.stringify(report.findings));
    assert.equal(report.events, 25);
    assert.equal(report.actors, 3);
    assert.equal(report.checkpoints, 3);
  });

  it('a modified field', async () => {
    const { code, report } = await tampered((q) => q(`UPDATE auditpipe.chain_events SET canonical = replace(canonical, '"action":"a3"', '"action":"zz"') WHERE actor = 'alice' AND seq = 3`).then(() => undefined));
    assert.equal(code, 1);
    has(report, 'hash-mismatch', 'alice', 3);
    assert.ok(report.findings.every((f) => f.actor === 'alice' && f.sequence === 3), 'only the edited row is reported');
  });

  it('a modified hash', async () => {
    const { code, report } = await tampered((q) => q(`UPDATE auditpipe.chain_events SET hash = repeat('a', 64) WHERE actor = 'alice' AND seq = 4`).then(() => undefined));
    assert.equal(code, 1);
    has(report, 'hash-mismatch', 'alice', 4);
    has(report, 'link-broken', 'alice', 5);
  });

  it('a deleted middle row', async () => {
    const { code, report } = await tampered((q) => q(`DELETE FROM auditpipe.chain_events WHERE actor = 'alice' AND seq = 5`).then(() => undefined));
    assert.equal(code, 1);
    has(report, 'gap', 'alice', 5);
  });

  it('deleted tail rows, with the head row rewound to match (against the last checkpoint)', async () => {
    const { code, report } = await tampered(async (q) => {
      await q(`DELETE FROM auditpipe.chain_events WHERE actor = 'bob' AND seq > 7`);
      await q(`UPDATE auditpipe.chain_heads SET seq = 7, hash = (SELECT hash FROM auditpipe.chain_events WHERE actor = 'bob' AND seq = 7) WHERE actor = 'bob'`);
    });
    assert.equal(code, 1);
    has(report, 'truncated', 'bob', 10);
    assert.ok(report.findings.every((f) => f.actor === 'bob'), JSON.stringify(report.findings));
  });

  it('an inserted row with a correctly recomputed hash', async () => {
    const { code, report } = await tampered(async (q) => {
      // Make room at alice#6 and insert a forged, well-formed record there.
      await q(`UPDATE auditpipe.chain_events SET seq = seq + 1000 WHERE actor = 'alice' AND seq >= 6`);
      await q(`UPDATE auditpipe.chain_events SET seq = seq - 999 WHERE actor = 'alice' AND seq >= 1006`);
      const prev = (await q(`SELECT hash FROM auditpipe.chain_events WHERE actor = 'alice' AND seq = 5`)).rows[0].hash;
      const event = { id: 'forged', time: '2026-01-01T00:00:00.000Z', actorId: 'alice', action: 'grant-admin' };
      const record = canonicalRecord({ actor: 'alice', seq: 6, id: 'forged', receivedAt: '2026-01-01T00:00:00.000Z', event });
      await q(`INSERT INTO auditpipe.chain_events (actor, seq, event_id, prev_hash, hash, canonical, event_time, received_at)
        VALUES ('alice', 6, 'forged', $1, $2, $3, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')`, [prev, chainHash(prev, record), record]);
      await q(`UPDATE auditpipe.chain_heads SET seq = 11, hash = (SELECT hash FROM auditpipe.chain_events WHERE actor = 'alice' AND seq = 11) WHERE actor = 'alice'`);
    });
    assert.equal(code, 1);
    // The forged row itself is self-consistent; the first row after it is where the chain breaks.
    has(report, 'link-broken', 'alice', 7);
    has(report, 'record-mismatch', 'alice', 7);
    has(report, 'checkpoint-mismatch', 'alice', 10);
  });

  it('two rows swapped', async () => {
    const { code, report } = await tampered(async (q) => {
      await q(`UPDATE auditpipe.chain_events SET seq = 100 WHERE actor = 'carol' AND seq = 2`);
      await q(`UPDATE auditpipe.chain_events SET seq = 2 WHERE actor = 'carol' AND seq = 3`);
      await q(`UPDATE auditpipe.chain_events SET seq = 3 WHERE actor = 'carol' AND seq = 100`);
    });
    assert.equal(code, 1);
    has(report, 'record-mismatch', 'carol', 2);
    has(report, 'record-mismatch', 'carol', 3);
    has(report, 'link-broken', 'carol', 2);
  });

  it('a forged checkpoint (signed by another key)', async () => {
    const { code, report } = await tampered(async (q) => {
      const last = (await q(`SELECT body, hash, key_id FROM auditpipe.chain_checkpoints ORDER BY number DESC LIMIT 1`)).rows[0];
      const body = parseCheckpoint(last.body);
      const attacker = generateKeyPairSync('ed25519');
      const forged = signCheckpoint({ ...body, number: body.number + 1, previous: last.hash, time: '2030-01-01T00:00:00.000Z' }, attacker.privateKey, last.key_id);
      await q(`INSERT INTO auditpipe.chain_checkpoints (number, created_at, body, hash, signature, key_id, heads) VALUES ($1, now(), $2, $3, $4, $5, NULL)`,
        [forged.number, forged.text, forged.hash, forged.signature, forged.keyId]);
    });
    assert.equal(code, 1);
    assert.ok(report.findings.some((f) => f.kind === 'checkpoint-signature' && f.checkpoint === 4), JSON.stringify(report.findings));
  });

  it('an altered checkpoint (its attested count lowered to hide truncation)', async () => {
    const { code, report } = await tampered(async (q) => {
      const first = (await q(`SELECT body FROM auditpipe.chain_checkpoints WHERE number = 3`)).rows[0];
      const body = parseCheckpoint(first.body);
      const text = formatCheckpoint({ ...body, events: body.events - 1 });
      await q(`UPDATE auditpipe.chain_checkpoints SET body = $1, hash = $2 WHERE number = 3`, [text, checkpointHash(text)]);
    });
    assert.equal(code, 1);
    assert.ok(report.findings.some((f) => f.kind === 'checkpoint-signature' && f.checkpoint === 3), JSON.stringify(report.findings));
  });

  it('a deleted checkpoint', async () => {
    const { code, report } = await tampered((q) => q(`DELETE FROM auditpipe.chain_checkpoints WHERE number = 2`).then(() => undefined));
    assert.equal(code, 1);
    assert.ok(report.findings.some((f) => f.kind === 'checkpoint-missing' && f.checkpoint === 3), JSON.stringify(report.findings));
  });

  it('checks signatures only against the trusted key; --actor limits the chain walk', async () => {
    const otherKey = path.join(dir, 'other.key');
    writeKeyPair(otherKey);
    const wrong = verifyJson(['--database-url', databaseUrl(source), '--public-key', `${otherKey}.pub`]);
    assert.equal(wrong.code, 1);
    assert.equal(wrong.report.findings.filter((f) => f.kind === 'checkpoint-signature').length, 3);

    const edited = await tampered((q) => q(`UPDATE auditpipe.chain_events SET canonical = replace(canonical, '"action":"a2"', '"action":"zz"') WHERE actor = 'carol' AND seq = 2`).then(() => undefined), ['--actor', 'alice']);
    assert.equal(edited.code, 0, 'carol is not walked with --actor alice');
    assert.equal(edited.report.actors, 1);
    const carol = verifyJson(['--database-url', databaseUrl(copies.at(-1)!), '--public-key', publicKey, '--actor', 'carol']);
    assert.equal(carol.code, 1);
    has(carol.report, 'hash-mismatch', 'carol', 2);
  });

  it('reports the same findings, in the same order, whether one thread or several walk the chains', async () => {
    const { report: one, code } = await tampered(async (q) => {
      await q(`DELETE FROM auditpipe.chain_events WHERE actor = 'alice' AND seq = 3`);
      await q(`DELETE FROM auditpipe.chain_events WHERE actor = 'bob' AND seq >= 9`);
      await q(`UPDATE auditpipe.chain_events SET canonical = replace(canonical, '"action":"a4"', '"action":"zz"') WHERE actor = 'carol' AND seq = 4`);
    }, ['--workers', '1']);
    assert.equal(code, 1);
    for (const workers of ['2', '3', '8']) {
      const parallel = verifyJson(['--database-url', databaseUrl(copies.at(-1)!), '--public-key', publicKey, '--workers', workers]);
      assert.equal(parallel.code, 1);
      const withoutTime = (report: object) => ({ ...report, elapsedMs: 0 });
      assert.deepEqual(withoutTime(parallel.report), withoutTime(one), `--workers ${workers}`);
    }
    has(one, 'gap', 'alice', 3);
    has(one, 'truncated', 'bob', 10);
    has(one, 'hash-mismatch', 'carol', 4);
  });

  it('exits 64 on usage errors and 2 with a clear message when it cannot verify', async () => {
    const { runCliSync } = await import('./helpers.ts');
    const unknown = runCliSync(['verify', '--bogus']);
    assert.equal(unknown.code, 64);
    assert.match(unknown.stderr, /unknown option --bogus/);
    for (const workers of ['0', '-1', '2.5', 'many', '65']) {
      const bad = runCliSync(['verify', '--database-url', databaseUrl(source), `--workers=${workers}`]);
      assert.equal(bad.code, 64, `--workers ${workers}`);
      assert.match(bad.stderr, /--workers must be an integer from 1 to 64/);
    }
    const empty = await createDatabase('ap_tamper_empty');
    copies.push(empty);
    const none = runCliSync(['verify', '--database-url', databaseUrl(empty)]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /no chain store in schema auditpipe/);
    const bad = new URL(databaseUrl(empty));
    bad.port = '1';
    const refused = runCliSync(['verify', '--database-url', bad.toString()]);
    assert.equal(refused.code, 2);
    assert.ok(!refused.stderr.includes(bad.password), 'no password in the message');
  });
});
