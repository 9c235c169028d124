import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');

export type ServerName = 'nats' | 'postgres' | 'kafka' | 's3' | 'victorialogs';

/**
 * The endpoint of a real test server, from the environment `npm test` prepared
 * (`.servers/env`, or the user's own servers). Missing means the suite was started wrongly:
 * fail loudly, never skip.
 */
export function serverEnv(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the suite with "npm test" (it starts the test servers) or export it`);
  return value;
}

/** Stops, starts or restarts one test server (same port, same data) through scripts/servers/ctl.sh. */
export async function serverCtl(action: 'stop' | 'start' | 'restart', name: ServerName): Promise<void> {
  // The ctl.sh of the up.sh that started the servers in the environment, not this checkout's.
  const ctl = process.env.AUDITPIPE_SERVERS_CTL ?? path.join(ROOT, 'scripts/servers/ctl.sh');
  await run('bash', [ctl, action, name], { cwd: ROOT, timeout: 180_000 });
}

/** A name unique to this test run, for streams, tables, topics and buckets. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
}

/** A port free on 127.0.0.1 right now, for a child process to listen on. */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Polls /readyz until it answers 200, failing with `describe()` (e.g. the child's stderr) otherwise. */
export async function waitReady(baseUrl: string, describe: () => string, attempts = 300): Promise<void> {
  for (let i = 0; i < attempts; i += 1) {
    if ((await fetch(`${baseUrl}/readyz`).then((r) => r.status, () => 0)) === 200) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`not ready: ${describe()}`);
}
