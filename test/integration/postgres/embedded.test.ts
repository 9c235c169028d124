/**
 * Acceptance on the embedded store: the README's run command (npm start), a few events, then
 * `auditpipe verify` passes; after editing the embedded data it fails.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { sql } from 'kysely';
import { openEmbedded } from '../../../src/sinks/postgres/db.ts';
import { freePort } from '../../helpers/servers.ts';
import { ROOT, runCliSync, startCli, verifyJson, waitReadyOrExit } from './helpers.ts';

/** `npm start` without npm: the same arguments the package.json script passes to node. */
function npmStartArgs(): string[] {
  const script: string = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).scripts.start;
  const [node, ...words] = script.split(' ');
  assert.equal(node, 'node');
  // Node's own flags (e.g. --max-semi-space-size) come before the script; the CLI gets the rest.
  const [main, ...rest] = words.filter((word, i) => !(word.startsWith('--') && words.indexOf('src/cli/main.ts') > i));
  assert.equal(main, 'src/cli/main.ts');
  return rest;
}

describe('embedded chain store (default config)', () => {
  it('README run command + a few events verify intact; editing the data makes verify fail', { timeout: 600_000 }, async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'auditpipe-embedded-'));
    const port = await freePort();
    const env = { AUDITPIPE_DATA_DIR: dataDir, AUDITPIPE_HTTP_PORT: String(port), AUDITPIPE_CHECKPOINT_KEY: '' };
    const running = startCli(npmStartArgs(), env);
    try {
      await waitReadyOrExit(port, running);
      const res = await fetch(`http://127.0.0.1:${port}/v1/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-ndjson' },
        body: '{"id":"e1","actorId":"alice","action":"login"}\n{"id":"e2","actorId":"bob","action":"login"}\n{"id":"e3","actorId":"alice","action":"logout"}\n',
      });
      assert.equal(res.status, 200);
      const argus = await fetch(`http://127.0.0.1:${port}/api/audit-logs`, {
        method: 'POST',
        body: JSON.stringify({ timestamp: '2026-03-04T05:06:07Z', status: 'SUCCESS', action: 'CREATE', actorType: 'SERVICE', actorId: 'alice', targetType: 'RESOURCE' }),
      });
      assert.equal(argus.status, 201);
      assert.equal((await argus.json()).sequence, 3);

      // One process per data dir: a second one is refused with a clear reason.
      const otherPort = await freePort();
      const second = runCliSync(npmStartArgs(), { ...env, AUDITPIPE_HTTP_PORT: String(otherPort) });
      assert.notEqual(second.code, 0);
      assert.match(second.stderr, /in use by process \d+/);
    } finally {
      running.child.kill('SIGTERM');
    }
    assert.equal(await running.exited, 0, running.stderr());
    assert.match(running.stdout() + running.stderr(), /generated a checkpoint signing key under the data directory/);

    const intact = verifyJson(['--config', 'config/auditpipe.yml'], { AUDITPIPE_DATA_DIR: dataDir });
    assert.equal(intact.code, 0, JSON.stringify(intact.report.findings));
    assert.equal(intact.report.events, 4);
    assert.equal(intact.report.actors, 2);
    assert.equal(intact.report.uncoveredEvents, 0, 'the shutdown checkpoint covers every event');

    const db = await openEmbedded(path.join(dataDir, 'chain', 'default'), 'test edit');
    try {
      await db.transaction((tx) => sql`UPDATE auditpipe.chain_events SET canonical = replace(canonical, '"login"', '"sudo"') WHERE actor = 'bob'`.execute(tx));
    } finally {
      await db.close();
    }
    const edited = verifyJson(['--config', 'config/auditpipe.yml'], { AUDITPIPE_DATA_DIR: dataDir });
    assert.equal(edited.code, 1);
    assert.ok(edited.report.findings.some((f) => f.kind === 'hash-mismatch' && f.actor === 'bob' && f.sequence === 1), JSON.stringify(edited.report.findings));
    const byDir = runCliSync(['verify', '--data-dir', dataDir]);
    assert.equal(byDir.code, 1);
    assert.match(byDir.stdout, /hash-mismatch: actor "bob" sequence 1/);
  });

  it('starts PostgreSQL with 16 MB of shared buffers, not PGlite\'s 128 MB (resident memory)', { timeout: 120_000 }, async () => {
    const db = await openEmbedded(path.join(mkdtempSync(path.join(tmpdir(), 'auditpipe-embedded-')), 'store'), 'test buffers');
    try {
      const { rows } = await db.read((kysely) => sql<{ shared_buffers: string }>`SHOW shared_buffers`.execute(kysely));
      assert.equal(rows[0]?.shared_buffers, '16MB');
    } finally {
      await db.close();
    }
  });
});
