import { after, before } from 'node:test';
/**
 * Helpers for the NATS → VictoriaLogs tests: real servers only. The one stand-in is
 * `FailingForwarder`, a loopback HTTP relay to the real VictoriaLogs that can answer 500/400 or
 * hold requests on demand, because VictoriaLogs cannot be told to fail.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { stringify } from 'yaml';
import { serverEnv } from '../../helpers/servers.ts';

export const ROOT = path.resolve(import.meta.dirname, '../../..');

export function natsConnect(): Promise<NatsConnection> {
  return connect({ servers: serverEnv('NATS_URL'), token: process.env.NATS_TOKEN || undefined });
}

/** Polls until `check` returns a truthy value; fails naming `what` (and its last value) after `timeoutMs`. */
type Falsy = undefined | null | false | 0 | '';
export async function waitFor<T>(what: string, check: () => Promise<T | Falsy> | T | Falsy, timeoutMs = 60_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as T;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** Rows VictoriaLogs returns for a LogsQL query, after forcing a flush so recent lines are visible. */
export async function vlQuery(query: string, headers: Record<string, string> = {}): Promise<Array<Record<string, string>>> {
  const base = serverEnv('VICTORIA_URL');
  const flush = await fetch(`${base}/internal/force_flush`, { method: 'POST' });
  await flush.arrayBuffer();
  const response = await fetch(`${base}/select/logsql/query`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams({ query, limit: '1000000' }),
  });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`VictoriaLogs query failed: ${response.status} ${text}`);
  return text.split('\n').filter(Boolean).map((line) => JSON.parse(line));
}

/** Event ids stored in VictoriaLogs for a stream-field value, with how often each is there. */
export async function storedIds(streamValue: string, headers: Record<string, string> = {}): Promise<Map<string, number>> {
  const rows = await vlQuery(`stream:${JSON.stringify(streamValue)} | fields id`, headers);
  const counts = new Map<string, number>();
  for (const row of rows) counts.set(row.id!, (counts.get(row.id!) ?? 0) + 1);
  return counts;
}

export async function streamMessages(nc: NatsConnection, stream: string): Promise<number> {
  const jsm = await jetstreamManager(nc);
  return (await jsm.streams.info(stream)).state.messages;
}

/**
 * A NATS connection for one describe block: connected before its tests, closed after them, and
 * the streams the tests push onto the returned list are deleted then.
 */
export function withNats(onConnect: (nc: NatsConnection) => void): string[] {
  const streams: string[] = [];
  let nc: NatsConnection | undefined;
  before(async () => {
    nc = await natsConnect();
    onConnect(nc);
  });
  after(async () => {
    if (!nc) return;
    await deleteStreams(nc, ...streams);
    await nc.close();
  });
  return streams;
}

export async function deleteStreams(nc: NatsConnection, ...names: string[]): Promise<void> {
  const jsm = await jetstreamManager(nc);
  for (const name of names) await jsm.streams.delete(name).catch(() => false);
}

export type ForwarderMode = 'pass' | 'fail500' | 'fail400' | 'hold';

/** Loopback HTTP relay to the real VictoriaLogs that fails or holds requests on demand. */
export class FailingForwarder {
  mode: ForwarderMode = 'pass';
  readonly statuses: number[] = [];
  private server: Server | undefined;
  private readonly held: Array<() => void> = [];

  async start(): Promise<string> {
    const target = serverEnv('VICTORIA_URL');
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const answer = (status: number, body: string) => {
          this.statuses.push(status);
          res.writeHead(status, { 'content-type': 'text/plain' });
          res.end(body);
        };
        if (this.mode === 'fail500') return answer(500, 'injected failure');
        if (this.mode === 'fail400') return answer(400, 'injected bad request');
        const relay = () => {
          fetch(`${target}${req.url}`, {
            method: req.method,
            headers: Object.fromEntries(Object.entries(req.headers).filter(([k]) => !['host', 'connection', 'content-length', 'transfer-encoding'].includes(k)).map(([k, v]) => [k, String(v)])),
            body: req.method === 'POST' ? Buffer.concat(chunks) : undefined,
          }).then(async (upstream) => answer(upstream.status, await upstream.text()), () => answer(502, 'upstream unreachable'));
        };
        if (this.mode === 'hold') this.held.push(relay);
        else relay();
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Relays every held request and stops holding. */
  release(): void {
    this.mode = 'pass';
    for (const relay of this.held.splice(0)) relay();
  }

  /** Closes every held request without relaying it (the writer sees a failed request). */
  dropHeld(): void {
    this.mode = 'pass';
    this.held.splice(0);
    this.server?.closeAllConnections();
  }

  heldCount(): number {
    return this.held.length;
  }

  async stop(): Promise<void> {
    this.release();
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server ? this.server.close(() => resolve()) : resolve());
  }
}

export interface PipelineOptions {
  readonly namespace: string;
  readonly stream: string;
  readonly victoriaUrl: string;
  readonly source?: Record<string, unknown>;
  readonly sink?: Record<string, unknown>;
  readonly pipeline?: Record<string, unknown>;
}

/** An auditpipe config: NATS source → VictoriaLogs sink (lines tagged by their `stream` field). */
export function natsToVictoria(options: PipelineOptions): Record<string, unknown> {
  return {
    pipelines: [{
      name: 'test',
      actor_field: 'user_id',
      ...options.pipeline,
      source: {
        type: 'nats',
        servers: [serverEnv('NATS_URL')],
        token: process.env.NATS_TOKEN ?? '',
        namespace: options.namespace,
        stream: options.stream,
        ...options.source,
      },
      sinks: [{
        type: 'victorialogs',
        url: options.victoriaUrl,
        stream_fields: ['stream'],
        ...options.sink,
      }],
    }],
  };
}

export interface Child {
  readonly process: ChildProcess;
  readonly exited: Promise<number | null>;
  output(): string;
}

/** Runs `auditpipe run --config FILE` as a child process, the way it is deployed. */
export function runCli(config: Record<string, unknown>): Child {
  const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-cli-'));
  const file = path.join(dir, 'auditpipe.yml');
  const plugins = path.join(dir, 'plugins.json');
  writeFileSync(plugins, '{"plugins": []}');
  writeFileSync(file, stringify({ data_dir: path.join(dir, 'data'), log_level: 'info', ...config }));
  return runCliFile(file, plugins);
}

export function runCliFile(file: string, pluginsFile?: string): Child {
  const args = [path.join(ROOT, 'src/cli/main.ts'), 'run', '--config', file, ...(pluginsFile ? ['--plugins', pluginsFile] : [])];
  const child = spawn(process.execPath, args, { cwd: path.dirname(file), stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => { output += chunk.toString(); });
  child.stderr!.on('data', (chunk: Buffer) => { output += chunk.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { process: child, exited, output: () => output };
}

/** Current value of a counter/gauge in a prom-client registry (sum over matching label sets). */
export async function metricValue(registry: import('prom-client').Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return 0;
  const { values } = await metric.get();
  return values
    .filter((v) => Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want))
    .reduce((sum, v) => sum + v.value, 0);
}
