#!/usr/bin/env node
// `npm run bench`: every benchmark, one after another on the same servers, into one JSON file
// (bench/results/<time>.json) with the machine and settings, and one table of every figure beside
// its floor and target (bench/summary.mjs; also printed, and written as <time>.md); the table at
// the top of docs/benchmarks.md is that file. Starts the test servers when the environment names none, like `npm test`.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { machineCpuSeconds } from './proc-cpu.ts';
import { markdownTable, summarise, textTable } from './summary.mjs';

const root = path.resolve(import.meta.dirname, '..');
const env = { ...process.env };
let started = false;
if (!env.NATS_URL) {
  if (spawnSync('bash', ['scripts/servers/up.sh'], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] }).status !== 0) process.exit(1);
  started = true;
  for (const line of readFileSync(path.join(root, '.servers/env'), 'utf8').split('\n')) {
    const match = /^export ([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (match) env[match[1]] = match[2].replace(/^'(.*)'$/, '$1');
  }
}

const minutes = process.env.BENCH_MEMORY_MINUTES ?? '10';
// The NATS bench runs the engine in its own process, so it gets the young-generation cap that
// `auditpipe run` sets (bin/auditpipe.js): the figure is the product's, not a tuned variant's.
const runs = [
  ['http-ingest', ['bench/http-ingest.ts']],
  ['http-chain', ['bench/http-ingest.ts', '--sink', 'chain']],
  ['http-chain-32', ['bench/http-ingest.ts', '--sink', 'chain', '--concurrency', '32']],
  ['nats-victorialogs', ['--max-semi-space-size=4', 'bench/nats-victorialogs.ts']],
  ['postgres-chain', ['bench/postgres-chain.ts']],
  ['small-embedded', ['bench/small-requests.ts', '--store', 'embedded']],
  ['small-postgres', ['bench/small-requests.ts', '--store', 'postgres']],
  ['fanout', ['bench/fanout.ts']],
  ['idle', ['bench/idle.ts', '--runs', '3']],
  ['memory', ['bench/memory.ts', '--minutes', minutes]],
];
const results = {
  time: new Date().toISOString(),
  machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memoryGb: Math.round(os.totalmem() / 2 ** 30), loadAverageAtStart: os.loadavg(), node: process.version },
  results: {},
};
/** CPUs' worth of work the machine did over `ms`, or undefined off Linux. */
function busyCpus(ms) {
  const before = machineCpuSeconds();
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  const after = machineCpuSeconds();
  return before === undefined || after === undefined ? undefined : (after - before) / (ms / 1000);
}

/**
 * Waits (up to a minute) until the machine is quiet: a server still busy with the previous
 * bench's data (VictoriaLogs merging what it was sent, PostgreSQL's autovacuum) takes CPU from
 * the next one on a 2-CPU machine. What was found is recorded, so a reader sees it.
 */
function waitForQuiet() {
  const started = Date.now();
  let busy = busyCpus(2000);
  while (busy !== undefined && busy > 0.25 && Date.now() - started < 60_000) busy = busyCpus(2000);
  return { waited_s: Math.round((Date.now() - started) / 100) / 10, busy_cpus: busy === undefined ? null : Math.round(busy * 100) / 100 };
}

results.quiet_before = {};
for (const [name, args] of runs) {
  results.quiet_before[name] = waitForQuiet();
  process.stderr.write(`# bench ${name} (machine ${JSON.stringify(results.quiet_before[name])})\n`);
  const run = spawnSync(process.execPath, args, { cwd: root, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 * 2 ** 20 });
  const text = run.stdout ?? '';
  const start = text.lastIndexOf('\n{') + 1;
  try {
    results.results[name] = JSON.parse(text.slice(start));
  } catch {
    results.results[name] = { error: `exit ${run.status}`, output: text.slice(-2000) };
  }
}
results.loadAverageAtEnd = os.loadavg();
results.summary = summarise(results);
mkdirSync(path.join(root, 'bench/results'), { recursive: true });
const file = path.join(root, 'bench/results', `${results.time.replace(/[:.]/g, '-')}.json`);
writeFileSync(file, JSON.stringify(results, null, 2));
writeFileSync(file.replace(/\.json$/, '.md'), `${markdownTable(results.summary)}\n`);
console.log(JSON.stringify(results, null, 2));
process.stderr.write(`\n${textTable(results.summary)}\n\n# written to ${file} (and the table to ${path.basename(file, '.json')}.md)\n`);
if (started && existsSync(path.join(root, 'scripts/servers/down.sh'))) spawnSync('bash', ['scripts/servers/down.sh'], { cwd: root, stdio: 'inherit' });
