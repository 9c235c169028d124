/**
 * Creating the embedded store's database (PGlite's initdb) in a child process.
 *
 * initdb runs a second WebAssembly PostgreSQL and grows the heap to ~450 MB; neither the heap
 * nor the compiled code goes back to the system while the process lives, even from a worker
 * thread that has ended. Run in the serving process it kept a first start of the default pipeline
 * at ~460-640 MB for good; run in a child that exits, the serving process only opens a
 * database that exists, as on every later start (~220 MB; docs/decisions.md, "Memory").
 *
 * Run as a script (`node embedded-init.ts DIR`) it creates the database in DIR and exits 0.
 */
import { spawn } from 'node:child_process';
import { existsSync, fsyncSync } from 'node:fs';
import { isSea } from 'node:sea';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * PostgreSQL's default 128 MB of shared buffers live in the WebAssembly heap and are touched over
 * time: 16 MB holds a restarted embedded store at ~180 MB RSS instead of ~310 (docs/decisions.md, "Memory").
 */
const EMBEDDED_SHARED_BUFFERS = '16MB';

/**
 * The start parameters of every embedded PGlite: the child that creates it and the process that serves it.
 * PGlite starts PostgreSQL with `-F` (fsync off); the store acknowledges an event only once it is
 * on disk, so fsync is turned back on, with `wal_sync_method=fsync` because the WebAssembly
 * runtime's fdatasync never reaches the file (its fsync does, through `syncingNodeFs`).
 */
export function embeddedStartParams(defaults: readonly string[]): string[] {
  return [...defaults, '-c', `shared_buffers=${EMBEDDED_SHARED_BUFFERS}`, '-c', 'fsync=on', '-c', 'wal_sync_method=fsync'];
}

type NodeFsClass = typeof import('@electric-sql/pglite/nodefs').NodeFS;
type EmscriptenOptions = Awaited<ReturnType<InstanceType<NodeFsClass>['init']>>['emscriptenOpts'];

/** The part of the Emscripten module this file touches: its Node file system. */
interface NodeFsModule {
  NODEFS?: {
    stream_ops?: { fsync?: (stream: { nfd?: number }) => void };
    tryFSOperation?: (operation: () => void) => void;
  };
}

/**
 * PGlite's Node file system writes with `fs.writeSync` and has no fsync at all (Emscripten's NODEFS
 * defines none, so PostgreSQL's fsync calls succeed without doing anything): a commit reached the
 * page cache, not the disk, and a power loss could take acknowledged events. This gives NODEFS an
 * fsync that calls `fs.fsyncSync` on the real descriptor, errors mapped as its other operations
 * map them (PostgreSQL then fails the commit, or PANICs, as it does on a real fsync failure). A
 * PGlite whose runtime has not got that shape is refused rather than run without flushing.
 */
export async function syncingNodeFs(dir: string): Promise<InstanceType<NodeFsClass>> {
  const { NodeFS } = await import('@electric-sql/pglite/nodefs');
  class SyncingNodeFS extends NodeFS {
    override async init(...args: Parameters<InstanceType<NodeFsClass>['init']>): ReturnType<InstanceType<NodeFsClass>['init']> {
      const result = await super.init(...args);
      const options: EmscriptenOptions = result.emscriptenOpts;
      const preRun = [options.preRun ?? []].flat();
      const addFsync = (module: NodeFsModule): void => {
        const nodefs = module.NODEFS;
        const streamOps = nodefs?.stream_ops;
        const tryOperation = nodefs?.tryFSOperation;
        if (!streamOps || !tryOperation) {
          throw new Error('this PGlite version has no Emscripten NODEFS to flush through; the embedded store will not run without fsync (use a PostgreSQL "url" or the PGlite version in package-lock.json)');
        }
        streamOps.fsync ??= (stream) => {
          const fd = stream.nfd;
          if (fd !== undefined) tryOperation(() => fsyncSync(fd));
        };
      };
      return { ...result, emscriptenOpts: { ...options, preRun: [...preRun, addFsync] } };
    }
  }
  return new SyncingNodeFS(dir);
}

/** What every embedded PGlite is opened with: the flushing file system on `dir` and the start parameters. */
export async function embeddedPgliteOptions(dir: string, defaultStartParams: readonly string[]) {
  return { fs: await syncingNodeFs(dir), startParams: embeddedStartParams(defaultStartParams) };
}

/** Whether `dir` holds a database already (PGlite runs initdb when PG_VERSION is absent). */
export function embeddedDatabaseExists(dir: string): boolean {
  return existsSync(path.join(dir, 'PG_VERSION'));
}

/** At most this long for initdb, which takes 2-4 s on a 2-core machine. */
const INIT_TIMEOUT_MS = 120_000;

/** Creates the database in `dir` in a child process; rejects with the child's own words when it fails. */
export function createEmbeddedDatabase(dir: string): Promise<void> {
  const script = fileURLToPath(import.meta.url);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, dir], { stdio: ['ignore', 'ignore', 'pipe'], timeout: INIT_TIMEOUT_MS });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      if (stderr.length < 4096) stderr += chunk;
    });
    child.on('error', (error) => reject(new Error(`cannot start the process that creates the database: ${error.message}`)));
    child.on('exit', (code, signal) => {
      if (code === 0 && embeddedDatabaseExists(dir)) return resolve();
      const why = signal ? `was stopped by ${signal}` : `exited with code ${code}`;
      const said = stderr.trim().split('\n').filter(Boolean).at(-1);
      reject(new Error(`creating the database ${why}${said ? `: ${said}` : ''}`));
    });
  });
}

async function createHere(dir: string): Promise<void> {
  const { PGlite } = await import('@electric-sql/pglite');
  const pglite = new PGlite(await embeddedPgliteOptions(dir, PGlite.defaultStartParams));
  await pglite.waitReady;
  await pglite.close();
}

// Inside the single executable argv[1] and this module's URL are both the executable: never a script there.
if (!isSea() && process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dir = process.argv[2];
  if (!dir) {
    console.error('usage: embedded-init DIR');
    process.exit(2);
  }
  createHere(dir).then(() => process.exit(0), (error: unknown) => {
    console.error((error as Error).message);
    process.exit(1);
  });
}
