/**
 * Pieces of the soak: the auditpipe child process, the load generators (HTTP and NATS) that record
 * what was acknowledged, server outages, and the counting of what every sink holds.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const CLI = path.join(ROOT, 'src/cli/main.ts');
const SERVER_VARS = ['NATS_URL', 'DATABASE_URL', 'KAFKA_BROKERS', 'S3_ENDPOINT', 'VICTORIA_URL'];

/** The test servers' endpoints: the environment, or this checkout's .servers/env (scripts/servers/up.sh). */
export function loadServerEnv(): void {
  if (SERVER_VARS.every((name) => process.env[name])) return;
  const file = path.join(ROOT, '.servers/env');
  if (!existsSync(file)) throw new Error(`${SERVER_VARS.join(', ')} are not set and ${file} is missing: run "bash scripts/servers/up.sh" first`);
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const match = /^export ([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (match && !process.env[match[1]!]) process.env[match[1]!] = match[2]!.replace(/^'(.*)'$/, '$1').replace(/^"(.*)"$/, '$1');
  }
}

export const random = (min: number, max: number) => min + Math.random() * (max - min);

// A harness that dies on an error must not leave auditpipe processes behind it.
const liveChildren = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

/** One `auditpipe run` child process, its output tail and its resident memory. */
export class Auditpipe {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  readonly signal: Promise<NodeJS.Signals | null>;
  private tail = '';
  maxRssKiB = 0;

  readonly readyUrl: string;

  constructor(configFile: string, readyUrl: string) {
    this.readyUrl = readyUrl;
    this.child = spawn(process.execPath, [CLI, 'run', '--config', configFile, '--plugins', path.join(path.dirname(configFile), 'plugins.json')], {
      cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: process.env,
    });
    const keep = (chunk: Buffer) => { this.tail = (this.tail + chunk.toString()).slice(-20_000); };
    this.child.stdout!.on('data', keep);
    this.child.stderr!.on('data', keep);
    liveChildren.add(this.child);
    const ended = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => this.child.on('exit', (code, signal) => {
      liveChildren.delete(this.child);
      resolve([code, signal]);
    }));
    this.exited = ended.then(([code]) => code);
    this.signal = ended.then(([, signal]) => signal);
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  output(): string {
    return this.tail;
  }

  /** VmRSS of the child in KiB (0 once it is gone). */
  rssKiB(): number {
    try {
      const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.child.pid}/status`, 'utf8'));
      const value = match ? Number(match[1]) : 0;
      this.maxRssKiB = Math.max(this.maxRssKiB, value);
      return value;
    } catch {
      return 0;
    }
  }

  async readyz(): Promise<number> {
    try {
      const res = await fetch(this.readyUrl, { signal: AbortSignal.timeout(2_000) });
      await res.arrayBuffer();
      return res.status;
    } catch {
      return 0;
    }
  }

  /** Waits for /readyz 200; throws with the output when the process exits or never gets there. */
  async waitReady(timeoutMs = 120_000): Promise<number> {
    const started = Date.now();
    while (Date.now() - started < timeoutMs) {
      if (!this.running) throw new Error(`auditpipe exited (${this.child.exitCode ?? this.child.signalCode}) before it was ready:\n${this.tail}`);
      if ((await this.readyz()) === 200) return Date.now() - started;
      await sleep(50);
    }
    throw new Error(`auditpipe not ready after ${timeoutMs} ms:\n${this.tail}`);
  }

  async kill(signal: NodeJS.Signals): Promise<number | null> {
    if (this.running) this.child.kill(signal);
    return this.exited;
  }
}

export interface LoadCounts {
  /** Events generated (ids handed out). */
  generated: number;
  /** Distinct ids the server acknowledged. */
  acknowledged: number;
  /** Requests/publishes that failed (connection refused or reset, timeouts) and were retried. */
  failedAttempts: number;
  /** HTTP 503 answers, and how many of them carried Retry-After. */
  http503: number;
  http503RetryAfter: number;
  /** Other answers than 200/503 (each is a finding). */
  unexpected: Record<string, number>;
}

/** A load generator: hands out ids, retries what was not acknowledged, records what was. */
export abstract class Load {
  readonly acked = new Set<string>();
  readonly counts: LoadCounts = { generated: 0, acknowledged: 0, failedAttempts: 0, http503: 0, http503RetryAfter: 0, unexpected: {} };
  protected next = 0;
  protected generating = true;
  protected stopped = false;
  private workers: Promise<void>[] = [];
  private readonly pending = new Set<string[]>();
  /** Pause after each acknowledged batch, to hold the rate where the final counts stay cheap. */
  paceMs = 0;

  readonly runId: string;
  readonly actors: number;
  readonly batchSize: number;
  readonly concurrency: number;

  constructor(runId: string, actors: number, batchSize: number, concurrency: number) {
    this.runId = runId;
    this.actors = actors;
    this.batchSize = batchSize;
    this.concurrency = concurrency;
  }

  protected newBatch(): string[] {
    const ids = Array.from({ length: this.batchSize }, () => `${this.runId}-${this.next++}`);
    this.counts.generated += ids.length;
    return ids;
  }

  event(id: string): Record<string, unknown> {
    const n = Number(id.slice(id.lastIndexOf('-') + 1));
    return { id, actorId: `actor-${n % this.actors}`, action: 'soak.write', stream: this.runId, msg: `soak event ${n}`, n };
  }

  /** Sends one batch; resolves with a delay before retrying it, or undefined once acknowledged. */
  protected abstract send(ids: string[]): Promise<number | undefined>;

  start(): void {
    this.workers = Array.from({ length: this.concurrency }, () => this.work());
  }

  private async work(): Promise<void> {
    while (!this.stopped) {
      const ids = this.generating ? this.newBatch() : undefined;
      if (!ids) return;
      this.pending.add(ids);
      while (!this.stopped) {
        const retryIn = await this.send(ids);
        if (retryIn === undefined) break;
        await sleep(retryIn);
      }
      this.pending.delete(ids);
      if (this.paceMs > 0) await sleep(this.paceMs);
    }
  }

  protected acknowledge(ids: string[]): void {
    for (const id of ids) this.acked.add(id);
    this.counts.acknowledged = this.acked.size;
  }

  /** Stops handing out new ids and waits until every batch in flight is acknowledged (or the timeout). */
  async drain(timeoutMs: number): Promise<number> {
    this.generating = false;
    const timer = new AbortController();
    const done = Promise.all(this.workers).then(() => 0);
    const left = await Promise.race([done, sleep(timeoutMs, undefined, { signal: timer.signal }).then(() => this.pending.size, () => 0)]);
    timer.abort();
    this.stopped = true;
    await Promise.all(this.workers);
    return left;
  }
}

/** POSTs NDJSON batches to the HTTP source; a 200 acknowledges every id of the batch. */
export class HttpLoad extends Load {
  readonly url: () => string;

  constructor(runId: string, url: () => string, actors: number, batchSize: number, concurrency: number) {
    super(runId, actors, batchSize, concurrency);
    this.url = url;
  }

  protected async send(ids: string[]): Promise<number | undefined> {
    let res: Response;
    let text: string;
    try {
      res = await fetch(this.url(), {
        method: 'POST', headers: { 'content-type': 'application/x-ndjson' },
        body: ids.map((id) => JSON.stringify(this.event(id))).join('\n'), signal: AbortSignal.timeout(30_000),
      });
      text = await res.text();
    } catch {
      this.counts.failedAttempts += 1;
      return 100;
    }
    if (res.status === 200) {
      const answer = JSON.parse(text) as { ids: string[] };
      this.acknowledge(answer.ids);
      return undefined;
    }
    if (res.status === 503) {
      this.counts.http503 += 1;
      const retryAfter = res.headers.get('retry-after');
      if (retryAfter !== null) this.counts.http503RetryAfter += 1;
      // Honour Retry-After, capped so the soak keeps a pace a client with a short deadline would.
      return Math.min(Number(retryAfter ?? 1) * 1000, 1_000);
    }
    this.counts.unexpected[res.status] = (this.counts.unexpected[res.status] ?? 0) + 1;
    return 500;
  }
}

export function natsConnect(): Promise<NatsConnection> {
  return connect({ servers: process.env.NATS_URL!, token: process.env.NATS_TOKEN || undefined, maxReconnectAttempts: -1, reconnectTimeWait: 500 });
}

/** Publishes to JetStream with Nats-Msg-Id = event id; a publish ack from the server acknowledges it. */
export class NatsLoad extends Load {
  readonly nc: NatsConnection;
  readonly subject: string;

  constructor(runId: string, nc: NatsConnection, subject: string, actors: number, batchSize: number, concurrency: number) {
    super(runId, actors, batchSize, concurrency);
    this.nc = nc;
    this.subject = subject;
  }

  protected async send(ids: string[]): Promise<number | undefined> {
    const js = jetstream(this.nc, { timeout: 5_000 });
    const todo = ids.filter((id) => !this.acked.has(id));
    const results = await Promise.allSettled(todo.map((id) => js.publish(this.subject, JSON.stringify(this.event(id)), { msgID: id })));
    const acked = todo.filter((_, i) => results[i]!.status === 'fulfilled');
    this.acknowledge(acked);
    if (acked.length < todo.length) {
      this.counts.failedAttempts += 1;
      return 500;
    }
    return undefined;
  }
}

export async function streamMessages(nc: NatsConnection, stream: string): Promise<number> {
  const jsm = await jetstreamManager(nc);
  return (await jsm.streams.info(stream)).state.messages;
}

export type ServerName = 'nats' | 'postgres' | 'kafka' | 's3' | 'victorialogs';
export const SERVERS: ServerName[] = ['postgres', 'nats', 'kafka', 's3', 'victorialogs'];

/** scripts/servers/ctl.sh stop|start NAME: same port, same data. */
export function serverCtl(action: 'stop' | 'start', name: ServerName): void {
  const result = spawnSync('bash', [path.join(ROOT, 'scripts/servers/ctl.sh'), action, name], { cwd: ROOT, encoding: 'utf8', timeout: 180_000 });
  if (result.status !== 0) throw new Error(`ctl.sh ${action} ${name} failed (${result.status}): ${result.stderr}${result.stdout}`);
}

/** SIGSTOP/SIGCONT on the server's pid: it keeps its sockets open and answers nothing. */
export function serverSignal(name: ServerName, signal: 'SIGSTOP' | 'SIGCONT'): void {
  // The pid file holds "PID STARTTIME" (ctl.sh checks the start time against pid reuse).
  const pid = Number(readFileSync(path.join(ROOT, '.servers/pids', `${name}.pid`), 'utf8').trim().split(/\s+/)[0]);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no pid for ${name} in .servers/pids/${name}.pid`);
  // PostgreSQL serves each connection from a child of the postmaster: stop those too, or open
  // connections would go on answering.
  for (const target of [pid, ...childPids(pid)]) process.kill(target, signal);
}

function childPids(parent: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === parent) children.push(Number(entry));
    } catch {
      // The process ended while the list was read.
    }
  }
  return children;
}

/** How often each id occurs in a list of stored ids, against the acknowledged set. */
export interface SinkCount {
  stored: number;
  distinct: number;
  missing: number;
  duplicated: number;
  missingSample: string[];
}

export function countAgainst(acked: Set<string>, storedIds: Iterable<string>): SinkCount {
  const seen = new Map<string, number>();
  let stored = 0;
  for (const id of storedIds) {
    stored += 1;
    seen.set(id, (seen.get(id) ?? 0) + 1);
  }
  const missing = [...acked].filter((id) => !seen.has(id));
  return {
    stored, distinct: seen.size, missing: missing.length,
    duplicated: [...seen.values()].reduce((n, c) => n + (c > 1 ? c - 1 : 0), 0), missingSample: missing.slice(0, 10),
  };
}

export interface VerifyOutcome {
  code: number | null;
  ok?: boolean;
  events?: number;
  actors?: number;
  checkpoints?: number;
  uncoveredEvents?: number;
  findings?: unknown[];
  stderr?: string;
}

/** `auditpipe verify --json --config FILE`: exit code and the report's figures. */
export function verify(configFile: string): VerifyOutcome {
  const result = spawnSync(process.execPath, [CLI, 'verify', '--json', '--config', configFile], { cwd: ROOT, encoding: 'utf8', timeout: 600_000, env: process.env });
  try {
    const report = JSON.parse(result.stdout) as Record<string, unknown>;
    return {
      code: result.status, ok: report.ok as boolean, events: report.events as number, actors: report.actors as number,
      checkpoints: report.checkpoints as number, uncoveredEvents: report.uncoveredEvents as number,
      findings: (report.findings as unknown[]).slice(0, 10),
    };
  } catch {
    return { code: result.status, stderr: (result.stderr + result.stdout).slice(-4000) };
  }
}
