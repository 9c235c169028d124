/**
 * Why checkpoints are anchored: an attacker with the database *and* the checkpoint signing key
 * rewrites one actor's whole chain consistently (hashes recomputed, head row updated) and
 * replaces the checkpoints with freshly signed ones. The database alone then verifies clean; the
 * checkpoints locked in S3 do not match it, and `auditpipe verify --s3` (run as a child process,
 * as an operator would) names the rewritten actor.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { canonicalRecord, chainHash, GENESIS_HASH } from '../../../src/security/chain.ts';
import { loadPrivateKeyFile, loadPublicKeyFile, writeKeyPair } from '../../../src/security/keys.ts';
import { verifyStore } from '../../../src/security/verify.ts';
import { openPostgres } from '../../../src/sinks/postgres/db.ts';
import { ChainStore } from '../../../src/sinks/postgres/store.ts';
import { compareAnchors, readAnchoredCheckpoints } from '../../../src/sinks/s3/anchors.ts';
import { startEngine } from '../../helpers/engine.ts';
import { serverEnv, uniqueName } from '../../helpers/servers.ts';
import { waitFor } from '../nats/helpers.ts';
import { adminQuery, createDatabase, databaseUrl, dropDatabase, runCliSync, verifyJson } from '../postgres/helpers.ts';
import { bucketName, createBucket, s3Client, s3SinkConfig } from './s3-helpers.ts';

const EVENTS = 60;

describe('anchored checkpoints catch a consistently rewritten database', () => {
  const s3 = s3Client();
  const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-anchor-'));
  const keyFile = path.join(dir, 'checkpoint.key');
  const prefix = uniqueName('rewrite');
  let database: string;
  let bucket: string;
  let configArgs: string[];

  before(async () => {
    writeKeyPair(keyFile);
    database = await createDatabase('ap_anchor');
    bucket = await createBucket(s3, bucketName('ap-anchor'), 'locked');
    const t = await startEngine({
      pipelines: [{
        name: 'ledger',
        source: { type: 'http', listen: '127.0.0.1:0' },
        batch: { max_events: 20, interval_ms: 10 },
        sinks: [
          { type: 'postgres', url: databaseUrl(database), checkpoint_interval_ms: 200, checkpoint_key_file: keyFile },
          s3SinkConfig(bucket, { prefix }),
        ],
      }],
    });
    configArgs = ['--config', path.join(t.dir, 'auditpipe.yml'), '--plugins', path.join(t.dir, 'plugins.json'), '--public-key', `${keyFile}.pub`];
    try {
      const lines = Array.from({ length: EVENTS }, (_, i) => JSON.stringify({ id: `${prefix}-${i}`, actorId: ['alice', 'bob', 'carol'][i % 3], action: 'read', n: i }));
      const res = await fetch(`${t.url('ledger')}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: lines.join('\n') + '\n' });
      assert.equal(res.status, 200, await res.text());
      await waitFor('a checkpoint over every event anchored in S3', async () => {
        const { checkpoints } = await readAnchoredCheckpoints({ client: s3, bucket, prefix, pipeline: 'ledger' });
        return checkpoints.some((c) => c.text.includes(`\nevents ${EVENTS}\n`));
      }, 60_000);
    } finally {
      await t.stop();
    }
  });
  after(() => dropDatabase(database));

  it('the untouched store matches its anchors', async () => {
    const store = new ChainStore(openPostgres({ url: databaseUrl(database), poolSize: 2, statementTimeoutMs: 30_000, readOnly: true }), 'auditpipe');
    try {
      const anchored = await readAnchoredCheckpoints({ client: s3, bucket, prefix, pipeline: 'ledger' });
      assert.deepEqual(anchored.findings, []);
      assert.deepEqual(compareAnchors(anchored.checkpoints, await store.checkpoints(), loadPublicKeyFile(`${keyFile}.pub`)), []);
      assert.ok(anchored.checkpoints.some((c) => c.heads?.length === 3), 'anchored checkpoints carry the heads they commit to');
    } finally {
      await store.db.close();
    }
    const { code, report, stderr } = verifyJson([...configArgs, '--s3']);
    assert.equal(code, 0, `${JSON.stringify(report.findings)} ${stderr}`);
    assert.equal(report.events, EVENTS);
    assert.ok((report as unknown as { anchors: Array<{ checkpoints: number }> }).anchors[0]!.checkpoints > 0);
  });

  it('reports alice\'s chain rewritten with recomputed hashes and re-signed checkpoints, which the database alone cannot show', async () => {
    const q = (text: string, values: unknown[] = []) => adminQuery(text, values, database);
    // The attacker: rewrite every alice event, recompute the chain, move the head, re-sign checkpoints.
    const rows = (await q(`SELECT seq, canonical FROM auditpipe.chain_events WHERE actor = 'alice' ORDER BY seq`)).rows;
    let previous = GENESIS_HASH;
    for (const row of rows) {
      const record = JSON.parse(row.canonical);
      const event = { ...record.event, action: 'grant-admin' };
      const canonical = canonicalRecord({ actor: record.actor, seq: record.seq, id: record.id, receivedAt: record.receivedAt, event });
      const hash = chainHash(previous, canonical);
      await q(`UPDATE auditpipe.chain_events SET canonical = $1, prev_hash = $2, hash = $3 WHERE actor = 'alice' AND seq = $4`, [canonical, previous, hash, row.seq]);
      previous = hash;
    }
    await q(`UPDATE auditpipe.chain_heads SET hash = $1 WHERE actor = 'alice'`, [previous]);
    const origin = /\norigin (\S+)\n/.exec((await q('SELECT body FROM auditpipe.chain_checkpoints ORDER BY number LIMIT 1')).rows[0].body)![1]!;
    await q('DELETE FROM auditpipe.chain_checkpoints');
    const writer = new ChainStore(openPostgres({ url: databaseUrl(database), poolSize: 2, statementTimeoutMs: 30_000 }), 'auditpipe');
    try {
      await writer.writeCheckpoint(loadPrivateKeyFile(keyFile), origin);
    } finally {
      await writer.db.close();
    }

    const store = new ChainStore(openPostgres({ url: databaseUrl(database), poolSize: 2, statementTimeoutMs: 30_000, readOnly: true }), 'auditpipe');
    try {
      const publicKey = loadPublicKeyFile(`${keyFile}.pub`);
      const alone = await verifyStore(store, { publicKey });
      assert.equal(alone.ok, true, `the database alone verifies clean: ${JSON.stringify(alone.findings)}`);

      const anchored = await readAnchoredCheckpoints({ client: s3, bucket, prefix, pipeline: 'ledger' });
      assert.deepEqual(anchored.findings, [], 'the anchors themselves are intact');
      const findings = compareAnchors(anchored.checkpoints, await store.checkpoints(), publicKey);
      assert.ok(findings.length > 0);
      assert.ok(findings.some((f) => f.kind === 'anchor-mismatch' && f.checkpoint === 1), JSON.stringify(findings));
      for (const finding of findings) assert.ok(['anchor-mismatch', 'anchor-missing-in-store'].includes(finding.kind), finding.detail);
    } finally {
      await store.db.close();
    }
  });

  it('auditpipe verify --s3 exits 1 naming the rewritten actor; without --s3 the database alone passes', () => {
    const alone = runCliSync(['verify', ...configArgs]);
    assert.equal(alone.code, 0, alone.stdout + alone.stderr);
    assert.match(alone.stdout, /INTACT/);
    assert.match(alone.stdout, /NOT compared with the checkpoints anchored in S3 \(add --s3\)/);

    const human = runCliSync(['verify', ...configArgs, '--s3']);
    assert.equal(human.code, 1, human.stdout + human.stderr);
    assert.match(human.stdout, /anchor-mismatch: actor "alice" sequence \d+: checkpoint \d+ anchored in s3:\/\//);
    assert.doesNotMatch(human.stdout, /actor "(bob|carol)"/);

    const { code, report } = verifyJson([...configArgs, '--s3']);
    assert.equal(code, 1);
    const byActor = report.findings.filter((f) => f.actor !== null);
    assert.ok(byActor.length > 0, JSON.stringify(report.findings));
    for (const finding of byActor) {
      assert.equal(finding.actor, 'alice', finding.detail);
      assert.equal(finding.kind, 'anchor-mismatch', finding.detail);
    }
    assert.ok(report.findings.some((f) => f.kind === 'anchor-mismatch' && f.actor === null && f.checkpoint === 1), 'the rewritten checkpoint 1 itself');

    // The same without a config: the store by URL, the bucket by flags, credentials from the standard AWS environment.
    const direct = verifyJson([
      '--database-url', databaseUrl(database), '--public-key', `${keyFile}.pub`, '--pipeline', 'ledger',
      '--s3-bucket', bucket, '--s3-prefix', prefix, '--s3-endpoint', serverEnv('S3_ENDPOINT'), '--s3-path-style',
      '--s3-region', process.env.S3_REGION ?? 'us-east-1',
    ], { AWS_ACCESS_KEY_ID: serverEnv('S3_ACCESS_KEY'), AWS_SECRET_ACCESS_KEY: serverEnv('S3_SECRET_KEY') });
    assert.equal(direct.code, 1, direct.stderr);
    assert.ok(direct.report.findings.some((f) => f.kind === 'anchor-mismatch' && f.actor === 'alice'));
  });

  it('auditpipe verify --s3 cannot read the anchors: exit 2 with the reason, no secret printed', () => {
    const result = runCliSync([
      'verify', '--database-url', databaseUrl(database), '--public-key', `${keyFile}.pub`, '--pipeline', 'ledger',
      '--s3-bucket', bucket, '--s3-prefix', prefix, '--s3-endpoint', serverEnv('S3_ENDPOINT'), '--s3-path-style',
      '--s3-region', process.env.S3_REGION ?? 'us-east-1',
    ], { AWS_ACCESS_KEY_ID: serverEnv('S3_ACCESS_KEY'), AWS_SECRET_ACCESS_KEY: 'wrong-secret-value' });
    assert.equal(result.code, 2, result.stdout + result.stderr);
    assert.match(result.stderr, /cannot read the anchored checkpoints in s3:\/\//);
    assert.doesNotMatch(result.stderr, /wrong-secret-value/);
  });
});
