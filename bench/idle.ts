/**
 * Idle cost of `auditpipe run`: time from spawn to /readyz 200, and resident set size (VmRSS) 2 s
 * after ready, for the default pipeline (config/auditpipe.yml: HTTP → embedded chain + console)
 * and a console-only one. `--root DIR` runs another checkout's CLI (paired old/new runs).
 *
 *   npm run bench:idle -- [--root DIR] [--runs 3] [--from dist|src]
 *
 * `--from dist` (default) measures the compiled package (built first), what `npm install` users run.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { freePort } from '../test/helpers/servers.ts';
import { cliEntry } from './env.ts';

const { values } = parseArgs({ options: { root: { type: 'string' }, runs: { type: 'string', default: '1' }, from: { type: 'string', default: 'dist' } } });
const root = path.resolve(values.root ?? path.join(import.meta.dirname, '..'));
const entry = cliEntry(root, values.from!);

async function measure(kind: 'default' | 'console'): Promise<{ readyMs: number; rssMb: number }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-idle-'));
  const port = await freePort();
  let config = path.join(root, 'config/auditpipe.yml');
  if (kind === 'console') {
    config = path.join(dir, 'console.yml');
    writeFileSync(config, `pipelines:\n  - name: plain\n    source: { type: http, listen: "127.0.0.1:${port}" }\n    sinks: [{ type: console }]\n`);
  }
  const started = performance.now();
  const child = spawn(process.execPath, ['--max-semi-space-size=4', entry, 'run', '--config', config], {
    cwd: dir, env: { ...process.env, AUDITPIPE_HTTP_PORT: String(port), AUDITPIPE_DATA_DIR: dir, AUDITPIPE_LOG_LEVEL: 'warn' }, stdio: 'ignore',
  });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  for (;;) {
    if ((await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.status, () => 0)) === 200) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const readyMs = performance.now() - started;
  await new Promise((r) => setTimeout(r, 2000));
  const rssMb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
  child.kill('SIGTERM');
  await exited;
  return { readyMs: Math.round(readyMs), rssMb: Math.round(rssMb * 10) / 10 };
}

const runs: Array<{ kind: 'default' | 'console'; readyMs: number; rssMb: number }> = [];
for (let i = 0; i < Number(values.runs); i += 1) {
  for (const kind of ['default', 'console'] as const) {
    const run = { kind, ...(await measure(kind)) };
    runs.push(run);
    console.log(JSON.stringify({ root, ...run }));
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const of = (kind: string) => {
  const mine = runs.filter((run) => run.kind === kind);
  return { readyMs: median(mine.map((run) => run.readyMs)), rssMb: median(mine.map((run) => run.rssMb)) };
};
// The last object printed is the summary (`npm run bench` reads the last JSON object).
console.log(JSON.stringify({ bench: 'idle', root, cli: values.from, runs: runs.length / 2, median: { default: of('default'), console: of('console') } }, null, 2));
