/**
 * auditpipe as a child process (HTTP source -> PostgreSQL chain in a database of its own) for the
 * hostile-input tests, with what every case asserts afterwards: still healthy, a normal event
 * stored, the child's RSS bounded.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { stringify } from 'yaml';
import { writeKeyPair } from '../../../src/security/keys.ts';
import { freePort } from '../../helpers/servers.ts';
import { createDatabase, databaseUrl, dropDatabase, startCli, waitReadyOrExit, type RunningCli } from '../postgres/helpers.ts';

/** A behaviour bound (memory does not grow with what a client sends), not a timing. */
export const RSS_BOUND_BYTES = 400 * 1024 * 1024;

export interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
  json(): any;
}

export interface Hostile {
  readonly port: number;
  readonly url: string;
  readonly child: RunningCli;
  /** A request over its own connection; `body` may be a Buffer, or chunks written one by one. */
  send(route: string, body: string | Buffer | Buffer[], headers?: Record<string, string>, method?: string): Promise<Answer>;
  /** The stored events (the `event` of each chain record), by id. */
  stored(ids: readonly string[]): Promise<Map<string, { actor: string; event: any }>>;
  /** /healthz and /readyz 200, a normal event stored, RSS under the bound. */
  assertHealthy(tag: string): Promise<void>;
  rssBytes(): number;
  stop(): Promise<void>;
}

export async function startHostile(prefix: string, source: Record<string, unknown> = {}): Promise<Hostile> {
  const dir = mkdtempSync(path.join(tmpdir(), `auditpipe-${prefix}-`));
  const database = await createDatabase(prefix);
  const keyFile = writeKeyPair(path.join(dir, 'checkpoint.key')).privateFile;
  const port = await freePort();
  const config = path.join(dir, 'auditpipe.yml');
  writeFileSync(config, stringify({
    data_dir: path.join(dir, 'data'),
    log_level: 'warn',
    pipelines: [{
      name: 'hostile',
      source: { type: 'http', listen: `127.0.0.1:${port}`, ...source },
      batch: { max_events: 500, interval_ms: 20 },
      sinks: [{ type: 'postgres', url: databaseUrl(database), checkpoint_key_file: keyFile, checkpoint_interval_ms: 60_000 }],
    }],
  }));
  const child = startCli(['run', '--config', config]);
  await waitReadyOrExit(port, child);
  const url = `http://127.0.0.1:${port}`;
  const db = new pg.Client({ connectionString: databaseUrl(database) });
  await db.connect();

  const send: Hostile['send'] = (route, body, headers = {}, method = 'POST') => new Promise((resolve, reject) => {
    const chunks = Array.isArray(body) ? body : [Buffer.from(body)];
    const length = Array.isArray(body) ? undefined : chunks[0]!.length;
    const req = request(url + route, {
      method, agent: false,
      headers: { 'content-type': 'application/json', ...(length === undefined ? {} : { 'content-length': String(length) }), ...headers },
    }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (part: Buffer) => parts.push(part));
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        resolve({ status: res.statusCode!, headers: res.headers, text, json: () => JSON.parse(text) });
      });
      res.on('error', reject);
    });
    let answered = false;
    req.on('response', () => (answered = true));
    // The server may answer (413) and close while the body is still being written.
    req.on('error', (error) => { if (!answered) reject(new Error(`${method} ${route}: ${error.message} before an answer`, { cause: error })); });
    (async () => {
      for (const chunk of chunks) {
        if (answered || req.destroyed) return;
        if (!req.write(chunk)) await new Promise((r) => { req.once('drain', r); req.once('close', r); });
      }
      req.end();
    })().catch(() => {});
  });

  const stored: Hostile['stored'] = async (ids) => {
    const rows = await db.query('SELECT event_id, actor, canonical FROM auditpipe.chain_events WHERE event_id = ANY($1)', [ids]);
    return new Map(rows.rows.map((row) => [row.event_id as string, { actor: row.actor as string, event: JSON.parse(row.canonical).event }]));
  };

  const rssBytes = () => {
    const status = readFileSync(`/proc/${child.child.pid}/status`, 'utf8');
    const kb = /VmRSS:\s+(\d+) kB/.exec(status);
    assert.ok(kb, 'VmRSS in /proc/<pid>/status');
    return Number(kb[1]) * 1024;
  };

  let normal = 0;
  const assertHealthy: Hostile['assertHealthy'] = async (tag) => {
    assert.equal(child.child.exitCode, null, `auditpipe exited: ${child.stderr()}`);
    assert.equal((await fetch(`${url}/healthz`)).status, 200, `${tag}: /healthz`);
    assert.equal((await fetch(`${url}/readyz`)).status, 200, `${tag}: /readyz`);
    const id = `${tag}-healthy-${(normal += 1)}`;
    const answer = await send('/v1/events', JSON.stringify({ id, actorId: 'healthy', action: 'check' }));
    assert.equal(answer.status, 200, `${tag}: a normal request after: ${answer.text}`);
    assert.ok((await stored([id])).has(id), `${tag}: the normal event is stored`);
    const rss = rssBytes();
    assert.ok(rss < RSS_BOUND_BYTES, `${tag}: RSS ${Math.round(rss / 1048576)} MB is over ${RSS_BOUND_BYTES / 1048576} MB`);
  };

  return {
    port, url, child, send, stored, assertHealthy, rssBytes,
    async stop() {
      await db.end();
      if (child.child.exitCode === null) child.child.kill('SIGTERM');
      const code = await child.exited;
      await dropDatabase(database);
      assert.equal(code, 0, `auditpipe exit code ${code}: ${child.stderr().slice(-2000)}`);
    },
  };
}

/** NDJSON lines from values or raw strings (a raw string goes in as it is). */
export const ndjson = (...lines: Array<string | object>) => lines.map((line) => (typeof line === 'string' ? line : JSON.stringify(line))).join('\n') + '\n';
export const NDJSON = { 'content-type': 'application/x-ndjson' };

/** An argus create request with the required fields. */
export const argusItem = (over: Record<string, unknown> = {}) => ({
  timestamp: '2026-03-04T05:06:07Z', status: 'SUCCESS', action: 'CREATE', actorType: 'SERVICE', actorId: 'svc-a', targetType: 'RESOURCE', ...over,
});
