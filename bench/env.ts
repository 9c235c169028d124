import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import path from 'node:path';

/** A test-server endpoint from the environment; a benchmark without one exits with how to get it. */
export function requiredEnv(name: string): string {
  const value = process.env[name];
  if (!value) {
    process.stderr.write(`${name} is not set; run "npm run servers:up" and "set -a; . .servers/env; set +a" first (or "npm run bench", which starts them)\n`);
    process.exit(2);
  }
  return value;
}

/**
 * The CLI a memory figure is measured on: by default the compiled package (`dist/`, built here
 * first), which is what `npm install` users run; `src` runs the TypeScript sources as a git checkout
 * does, which costs ~20 MB more (Node's type stripping; docs/decisions.md, "Memory").
 */
export function cliEntry(root: string, from: string): string {
  if (from === 'src') return path.join(root, 'src/cli/main.ts');
  if (from !== 'dist') throw new Error(`--from must be dist or src, not ${JSON.stringify(from)}`);
  execFileSync(process.execPath, [path.join(root, 'scripts/build.mjs')], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  return path.join(root, 'dist/cli/main.js');
}

/** An `auditpipe run` process started by a benchmark, ready once its /readyz answers 200. */
export interface AuditpipeProcess {
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Runs `auditpipe run --config FILE` in a process of its own, as users run it, so the load
 * generator's CPU is not the engine's. `BENCH_NODE_OPTIONS` (e.g. "--cpu-prof
 * --cpu-prof-dir=/tmp/prof") is passed to that process to profile it.
 */
export async function startAuditpipe(entry: string, configFile: string, readyUrl: string, args: readonly string[] = []): Promise<AuditpipeProcess> {
  const profiling = process.env.BENCH_NODE_OPTIONS?.split(' ').filter(Boolean) ?? [];
  const child = spawn(process.execPath, ['--max-semi-space-size=4', ...profiling, entry, 'run', '--config', configFile, ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
  await waitForReady(readyUrl, child);
  return { child, stop: () => stopChild(child) };
}

/** Polls `url` until it answers 200 (60 s at most); fails at once if `child` exits. */
export async function waitForReady(url: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 600; i += 1) {
    if (child.exitCode !== null) throw new Error(`${url}: the server exited with ${child.exitCode}`);
    if ((await fetch(url).then((r) => r.status, () => 0)) === 200) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} not ready after 60 s`);
}

/** SIGTERM, then wait for the exit (a graceful drain). */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}
