/**
 * argus's real traffic shape: single-event `POST /api/audit-logs` from many connections, and bulk
 * requests of 50 events (the argus SDK's default batch size) from fewer, into the hash-chain store
 * (embedded PGlite, or PostgreSQL with `--store postgres`). Beside each, the limit measured in the
 * same run: a bare node:http server reading the same requests and answering 201. Both servers run
 * in processes of their own, as `auditpipe run` does, so the load generator's CPU is not theirs.
 *
 *   npm run bench:small -- [--store embedded|postgres] [--seconds 15] [--single-connections 64]
 *                          [--bulk-connections 16] [--bulk-size 50]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { stringify } from 'yaml';
import { freePort } from '../test/helpers/servers.ts';
import { requiredEnv, startAuditpipe, stopChild, waitForReady } from './env.ts';

const { values } = parseArgs({
  options: {
    store: { type: 'string', default: 'embedded' },
    seconds: { type: 'string', default: '15' },
    'single-connections': { type: 'string', default: '64' },
    'bulk-connections': { type: 'string', default: '16' },
    'bulk-size': { type: 'string', default: '50' },
    'max-in-flight': { type: 'string', default: '4' },
    only: { type: 'string', default: '' },
    flush: { type: 'string', default: 'auto' },
  },
});
const seconds = Number(values.seconds);
const bulkSize = Number(values['bulk-size']);

interface Load {
  readonly name: string;
  readonly path: string;
  readonly connections: number;
  readonly eventsPerRequest: number;
  body(request: number): string;
}

/** An argus create request as its Go SDK sends one; 1,000 actors so heads do not serialise. */
function argusItem(n: number): Record<string, unknown> {
  return {
    id: `sr-${process.pid}-${n}`,
    timestamp: new Date().toISOString(),
    status: 'SUCCESS',
    eventType: 'USER_MANAGEMENT',
    action: 'UPDATE',
    actorType: 'SERVICE',
    actorId: `svc-${n % 1000}`,
    targetType: 'RESOURCE',
    targetId: `doc-${n % 5000}`,
    message: Buffer.from(JSON.stringify({ field: 'title', before: 'draft', after: 'final' })).toString('base64'),
    metadata: { ip: '10.1.2.3', userAgent: 'argus-go-sdk/1.4' },
  };
}

let sequence = 0;
const loads: Load[] = [
  {
    name: 'single', path: '/api/audit-logs', connections: Number(values['single-connections']), eventsPerRequest: 1,
    body: () => JSON.stringify(argusItem(sequence++)),
  },
  {
    name: 'bulk', path: '/api/audit-logs/bulk', connections: Number(values['bulk-connections']), eventsPerRequest: bulkSize,
    body: () => JSON.stringify(Array.from({ length: bulkSize }, () => argusItem(sequence++))),
  },
];

interface Measured {
  requests: number;
  requestsPerSecond: number;
  eventsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
}

function percentile(sorted: Float64Array, p: number): number {
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]! * 100) / 100;
}

/** Each connection sends one request after the other for `seconds`, after a 2 s warm-up. */
async function drive(url: string, load: Load): Promise<Measured> {
  const pool = new Pool(url, { connections: load.connections, pipelining: 1 });
  const latencies: number[] = [];
  let measuring = false;
  let stop = false;
  let requests = 0;
  const worker = async () => {
    while (!stop) {
      const body = load.body(0);
      const sent = performance.now();
      const res = await pool.request({ path: load.path, method: 'POST', headers: { 'content-type': 'application/json' }, body });
      await res.body.dump();
      if (res.statusCode !== 201) throw new Error(`${load.path}: status ${res.statusCode}`);
      if (measuring) {
        latencies.push(performance.now() - sent);
        requests += 1;
      }
    }
  };
  const workers = Array.from({ length: load.connections }, worker);
  await new Promise((r) => setTimeout(r, 2000));
  measuring = true;
  const started = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  measuring = false;
  const elapsed = (performance.now() - started) / 1000;
  stop = true;
  await Promise.all(workers);
  await pool.close();
  const sorted = Float64Array.from(latencies).sort();
  return {
    requests,
    requestsPerSecond: Math.round(requests / elapsed),
    eventsPerSecond: Math.round((requests * load.eventsPerRequest) / elapsed),
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
  };
}

/** The limit: a bare node:http server in its own process, reading and parsing each body, answering 201. */
const BARE_SERVER = `
  const { createServer } = await import('node:http');
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      if (req.method === 'POST') JSON.parse(Buffer.concat(chunks).toString('utf8'));
      res.writeHead(req.method === 'POST' ? 201 : 200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  server.listen(Number(process.env.PORT), '127.0.0.1');
`;

const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-bench-small-'));
const barePort = await freePort();
const bareChild = spawn(process.execPath, ['--input-type=module', '-e', BARE_SERVER], { env: { ...process.env, PORT: String(barePort) }, stdio: 'inherit' });
// The bare server answers 201 on any path, /readyz included, once it listens.
await waitForReady(`http://127.0.0.1:${barePort}/readyz`, bareChild);

const store = values.store === 'postgres'
  ? { type: 'postgres', url: requiredEnv('DATABASE_URL'), schema: `bench_small_${Date.now().toString(36)}`, checkpoint_key_generate: true }
  : { type: 'postgres', checkpoint_key_generate: true };
const enginePort = await freePort();
const configFile = path.join(dir, 'auditpipe.yml');
writeFileSync(configFile, stringify({
  data_dir: path.join(dir, 'data'),
  log_level: 'warn',
  pipelines: [{
    name: 'bench',
    source: { type: 'http', listen: `127.0.0.1:${enginePort}` },
    // The argus preset's batching (src/sources/http/argus/preset.ts).
    batch: { max_events: 1000, interval_ms: 20, max_in_flight: Number(values['max-in-flight']), flush: values.flush },
    sinks: [{ ...store, retry: { timeout_ms: 60_000 } }],
  }],
}));
writeFileSync(path.join(dir, 'plugins.json'), '{"plugins": []}');
const engine = await startAuditpipe(path.resolve(import.meta.dirname, '../src/cli/main.ts'), configFile, `http://127.0.0.1:${enginePort}/readyz`, ['--plugins', path.join(dir, 'plugins.json')]);

/** Sum and count of the engine's histograms, to tell batch size and write time apart from HTTP. */
async function engineHistograms(): Promise<Record<string, { sum: number; count: number }>> {
  const text = await (await fetch(`http://127.0.0.1:${enginePort}/metrics`)).text();
  const out: Record<string, { sum: number; count: number }> = {};
  for (const name of ['auditpipe_batch_events', 'auditpipe_flush_duration_seconds', 'auditpipe_sink_write_duration_seconds']) {
    const value = (suffix: string) => [...text.matchAll(new RegExp(`^${name}_${suffix}\\{[^}]*\\} (\\S+)$`, 'gm'))].reduce((n, m) => n + Number(m[1]), 0);
    out[name] = { sum: value('sum'), count: value('count') };
  }
  return out;
}

function perBatch(before: Awaited<ReturnType<typeof engineHistograms>>, after: typeof before) {
  const mean = (name: string, scale: number) => {
    const count = after[name]!.count - before[name]!.count;
    return count === 0 ? null : Math.round(((after[name]!.sum - before[name]!.sum) / count) * scale * 100) / 100;
  };
  return {
    batches: after.auditpipe_batch_events!.count - before.auditpipe_batch_events!.count,
    meanEventsPerBatch: mean('auditpipe_batch_events', 1),
    meanFlushMs: mean('auditpipe_flush_duration_seconds', 1000),
    meanSinkWriteMs: mean('auditpipe_sink_write_duration_seconds', 1000),
  };
}

const results: Record<string, unknown> = {};
for (const load of loads.filter((l) => !values.only || l.name === values.only)) {
  const bareResult = await drive(`http://127.0.0.1:${barePort}`, load);
  const before = await engineHistograms();
  const engineResult = await drive(`http://127.0.0.1:${enginePort}`, load);
  const batching = perBatch(before, await engineHistograms());
  results[load.name] = {
    route: `POST ${load.path}`,
    connections: load.connections,
    eventsPerRequest: load.eventsPerRequest,
    engine: { ...engineResult, ...batching },
    bareHttpLimit: bareResult,
    ratio: Number((engineResult.requestsPerSecond / bareResult.requestsPerSecond).toFixed(3)),
  };
}
await engine.stop();
await stopChild(bareChild);
rmSync(dir, { recursive: true, force: true });

console.log(JSON.stringify({
  bench: 'small-requests',
  store: values.store === 'postgres' ? 'postgres hash chain (server)' : 'embedded hash chain (PGlite)',
  seconds,
  ...results,
}, null, 2));
