/**
 * The embedded store flushes each commit to disk. PGlite alone starts PostgreSQL with fsync off
 * and its Node file system has no fsync, so a commit only reached the page cache; these tests fail
 * if either comes back (no fsync of the WAL inside a commit, or fsync off).
 */
import assert from 'node:assert/strict';
import fs, { mkdtempSync, readlinkSync, rmSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { openEmbedded } from '../../../src/sinks/postgres/db.ts';
import { syncingNodeFs } from '../../../src/sinks/postgres/embedded-init.ts';

describe('embedded store durability', () => {
  const synced: string[] = [];
  const realFsync = fs.fsyncSync;
  before(() => {
    fs.fsyncSync = (fd: number) => {
      synced.push(readlinkSync(`/proc/self/fd/${fd}`));
      realFsync(fd);
    };
    syncBuiltinESMExports();
  });
  after(() => {
    fs.fsyncSync = realFsync;
    syncBuiltinESMExports();
  });

  it('each commit fsyncs the WAL before it returns; fsync is on', { timeout: 300_000 }, async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'auditpipe-durable-'));
    const dir = path.join(root, 'store');
    const db = await openEmbedded(dir, 'durability test');
    try {
      const settings = await db.read((k) => sql<{ fsync: string }>`SHOW fsync`.execute(k));
      assert.equal(settings.rows[0]?.fsync, 'on');
      await db.statement((k) => sql`CREATE TABLE durable (n int)`.execute(k));
      for (let n = 1; n <= 3; n++) {
        synced.length = 0;
        await db.transaction((tx) => sql`INSERT INTO durable VALUES (${n})`.execute(tx));
        const wal = synced.filter((file) => file.startsWith(path.join(dir, 'pg_wal') + path.sep));
        assert.ok(wal.length >= 1, `commit ${n} fsynced no WAL file (fsynced: ${JSON.stringify(synced)})`);
      }
    } finally {
      await db.close();
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('a PGlite runtime without the Node file system it flushes through is refused, not run unflushed', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'auditpipe-durable-'));
    try {
      const nodeFs = await syncingNodeFs(root);
      const { emscriptenOpts } = await nodeFs.init({} as never, {});
      const preRun = [emscriptenOpts.preRun ?? []].flat() as Array<(module: object) => void>;
      const addFsync = preRun.at(-1)!;
      assert.throws(() => addFsync({}), /no Emscripten NODEFS to flush through; the embedded store will not run without fsync/);

      const streamOps: { fsync?: (stream: { nfd?: number }) => void } = {};
      addFsync({ NODEFS: { stream_ops: streamOps, tryFSOperation: (operation: () => void) => operation() } });
      assert.equal(typeof streamOps.fsync, 'function');
      const fd = fs.openSync(path.join(root, 'file'), 'w');
      synced.length = 0;
      streamOps.fsync!({ nfd: fd });
      fs.closeSync(fd);
      assert.deepEqual(synced, [path.join(root, 'file')]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
