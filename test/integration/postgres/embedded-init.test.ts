/**
 * The embedded store's database is created (PGlite's initdb) in a child process, so the serving
 * process never holds initdb's WebAssembly heap. Real PGlite, no server needed.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { sql } from 'kysely';
import { openEmbedded } from '../../../src/sinks/postgres/db.ts';
import { createEmbeddedDatabase, embeddedDatabaseExists } from '../../../src/sinks/postgres/embedded-init.ts';

const MB = 1024 * 1024;

describe('embedded store: initdb in a child process', () => {
  // First in this file, so no PGlite of an earlier test is still in this process's memory.
  it('a fresh store opens with only the serving heap in this process (initdb ran elsewhere)', { timeout: 120_000 }, async () => {
    const dir = path.join(mkdtempSync(path.join(tmpdir(), 'auditpipe-init-')), 'store');
    const db = await openEmbedded(dir, 'test init');
    try {
      assert.ok(embeddedDatabaseExists(dir), 'PG_VERSION written');
      await db.statement((kysely) => sql`CREATE TABLE t (n int)`.execute(kysely));
      await db.statement((kysely) => sql`INSERT INTO t VALUES (1)`.execute(kysely));
      const { rows } = await db.read((kysely) => sql<{ n: number }>`SELECT n FROM t`.execute(kysely));
      assert.deepEqual(rows, [{ n: 1 }]);
      // The WebAssembly heaps are external memory: ~140 MB serving, ~450 MB when initdb ran here.
      const external = process.memoryUsage().external;
      assert.ok(external < 300 * MB, `external memory ${Math.round(external / MB)} MB: initdb ran in this process`);
    } finally {
      await db.close();
    }
  });

  it('a store that exists is opened as it is (its data kept)', { timeout: 120_000 }, async () => {
    const dir = path.join(mkdtempSync(path.join(tmpdir(), 'auditpipe-init-')), 'store');
    await createEmbeddedDatabase(dir);
    const first = await openEmbedded(dir, 'test reopen');
    await first.statement((kysely) => sql`CREATE TABLE kept (n int)`.execute(kysely));
    await first.statement((kysely) => sql`INSERT INTO kept VALUES (7)`.execute(kysely));
    await first.close();
    const again = await openEmbedded(dir, 'test reopen');
    try {
      const { rows } = await again.read((kysely) => sql<{ n: number }>`SELECT n FROM kept`.execute(kysely));
      assert.deepEqual(rows, [{ n: 7 }]);
    } finally {
      await again.close();
    }
  });

  it('a child that cannot create the database fails with its own reason, and the store does not open', { timeout: 120_000 }, async () => {
    const parent = mkdtempSync(path.join(tmpdir(), 'auditpipe-init-'));
    const notADir = path.join(parent, 'file');
    writeFileSync(notADir, 'not a directory');
    await assert.rejects(createEmbeddedDatabase(notADir), /creating the database exited with code 1: .+/);
    assert.equal(existsSync(path.join(notADir, 'PG_VERSION')), false);
    // openEmbedded names the store and releases its lock: a later open is not refused as "in use".
    await assert.rejects(openEmbedded(notADir, 'test failure'), /cannot open the embedded store in .*file/);
    await assert.rejects(openEmbedded(notADir, 'test failure'), (error: Error) => !/in use/.test(error.message));
  });
});
