import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import pg from 'pg';
import { serverEnv, uniqueName } from '../../helpers/servers.ts';

export const ROOT = path.resolve(import.meta.dirname, '../../..');
export const CLI = path.join(ROOT, 'src/cli/main.ts');

/** The test server URL pointed at another database. */
export function databaseUrl(database: string): string {
  const url = new URL(serverEnv('DATABASE_URL'));
  url.pathname = `/${database}`;
  return url.toString();
}

export async function adminQuery(text: string, values: unknown[] = [], database?: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: database ? databaseUrl(database) : serverEnv('DATABASE_URL') });
  await client.connect();
  try {
    return await client.query(text, values);
  } finally {
    await client.end();
  }
}

/** A fresh database of its own for a test file; returns its name. */
export async function createDatabase(prefix: string, template?: string): Promise<string> {
  const name = uniqueName(prefix).toLowerCase();
  await adminQuery(`CREATE DATABASE "${name}"${template ? ` TEMPLATE "${template}"` : ''}`);
  return name;
}

export async function dropDatabase(name: string): Promise<void> {
  // Without FORCE first: that also ends an autovacuum worker busy on the freshly written
  // database, which FORCE refuses to terminate for a role that is not superuser (SQLSTATE 42501,
  // seen once in a dozen runs); FORCE then only for connections a test left open.
  try {
    await adminQuery(`DROP DATABASE IF EXISTS "${name}"`);
  } catch (error) {
    if ((error as { code?: unknown }).code !== '55006') throw error;
    await adminQuery(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  }
}

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI to completion (verify, keygen). */
export function runCliSync(args: string[], env: Record<string, string> = {}): CliResult {
  const result = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 300_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

export interface RunningCli {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  readonly exited: Promise<number | null>;
}

/** Starts `auditpipe run` as a child process. */
export function startCli(args: string[], env: Record<string, string> = {}): RunningCli {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (chunk) => (out += chunk));
  child.stderr!.on('data', (chunk) => (err += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exited };
}

export async function waitReadyOrExit(port: number, running: RunningCli, attempts = 1200): Promise<void> {
  for (let i = 0; i < attempts; i += 1) {
    if (running.child.exitCode !== null) throw new Error(`auditpipe exited early (${running.child.exitCode}): ${running.stderr()}${running.stdout().slice(-2000)}`);
    if ((await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.status, () => 0)) === 200) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`auditpipe on port ${port} never became ready: ${running.stderr()}`);
}

export interface VerifyJson {
  ok: boolean;
  actors: number;
  events: number;
  checkpoints: number;
  uncoveredEvents: number;
  findingsTotal: number;
  findings: Array<{ kind: string; actor: string | null; sequence: number | null; checkpoint?: number; detail: string }>;
}

export function verifyJson(args: string[], env: Record<string, string> = {}): { code: number | null; report: VerifyJson; stderr: string } {
  const result = runCliSync(['verify', '--json', ...args], env);
  let report: VerifyJson;
  try {
    report = JSON.parse(result.stdout) as VerifyJson;
  } catch {
    throw new Error(`verify printed no JSON (exit ${result.code}): ${result.stdout}\n${result.stderr}`);
  }
  return { code: result.code, report, stderr: result.stderr };
}
