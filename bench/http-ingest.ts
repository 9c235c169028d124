/**
 * HTTP intake: NDJSON bulk requests through the engine into the ndjson_file sink (fsync per
 * batch), or with `--sink chain` into the Postgres hash-chain store (argus's job; a fresh schema
 * in DATABASE_URL), beside the limit measured in the same run: a bare node:http server that reads
 * each body and answers, with the same client and payloads. auditpipe (`auditpipe run`, the
 * compiled package unless `--from src`) and the bare server each run in a process of their own,
 * so the load generator's CPU is neither's.
 *
 *   npm run bench:http -- [--sink file|chain] [--events 200000] [--per-request 1000] [--concurrency 4] [--from dist|src]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { stringify } from 'yaml';
import { freePort } from '../test/helpers/servers.ts';
import { cliEntry, requiredEnv, startAuditpipe, stopChild, waitForReady } from './env.ts';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '200000' },
    'per-request': { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '4' },
    sink: { type: 'string', default: 'file' },
    from: { type: 'string', default: 'dist' },
  },
});
const total = Number(values.events);
const perRequest = Number(values['per-request']);
const concurrency = Number(values.concurrency);
const requests = Math.ceil(total / perRequest);

function body(request: number): string {
  let text = '';
  for (let i = 0; i < perRequest; i += 1) {
    const n = request * perRequest + i;
    text += JSON.stringify({
      id: `ev-${n}`,
      actorId: `actor-${n % 1000}`,
      action: 'document.update',
      msg: 'user updated a document in the shared workspace',
      target: { type: 'document', id: `doc-${n % 5000}` },
      request: { ip: '10.1.2.3', method: 'PUT', path: `/api/documents/doc-${n % 5000}`, userAgent: 'bench/1.0 (linux; x64)' },
      meta: { tenant: 'acme', region: 'eu-west-1', trace: '0191f3c4-1b2a-7c3d-8e4f-123456789abc' },
    }) + '\n';
  }
  return text;
}

async function drive(url: string): Promise<{ seconds: number; eventsPerSecond: number }> {
  const pool = new Pool(url, { connections: concurrency });
  const bodies = Array.from({ length: Math.min(requests, 16) }, (_, i) => body(i));
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < requests) {
      const request = next++;
      const res = await pool.request({ path: '/v1/events', method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: bodies[request % bodies.length]!.replaceAll('"id":"ev-', `"id":"r${request}-`) });
      await res.body.dump();
      if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  await pool.close();
  return { seconds, eventsPerSecond: Math.round((requests * perRequest) / seconds) };
}

/** The limit: a bare node:http server in its own process that reads each body and answers. */
const BARE_SERVER = `
  const { createServer } = await import('node:http');
  createServer((req, res) => {
    req.on('data', () => {});
    req.on('end', () => res.end('{}'));
  }).listen(Number(process.env.PORT), '127.0.0.1');
`;
const barePort = await freePort();
const bare = spawn(process.execPath, ['--input-type=module', '-e', BARE_SERVER], { env: { ...process.env, PORT: String(barePort) }, stdio: 'inherit' });
await waitForReady(`http://127.0.0.1:${barePort}/`, bare);
const bareResult = await drive(`http://127.0.0.1:${barePort}`);
await stopChild(bare);

const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-bench-http-'));
const port = await freePort();
const configFile = path.join(dir, 'auditpipe.yml');
writeFileSync(configFile, stringify({
  data_dir: path.join(dir, 'data'),
  log_level: 'warn',
  pipelines: [{
    name: 'bench',
    source: { type: 'http', listen: `127.0.0.1:${port}`, max_events_per_request: perRequest },
    batch: { max_events: 1000, interval_ms: 50, max_in_flight: 4 },
    sinks: [values.sink === 'chain'
      ? { type: 'postgres', url: requiredEnv('DATABASE_URL'), schema: `bench_${Date.now().toString(36)}`, checkpoint_key_generate: true, retry: { timeout_ms: 60_000 } }
      : { type: 'ndjson_file', path: path.join(dir, 'bench.ndjson') }],
  }],
}));
const root = path.resolve(import.meta.dirname, '..');
// ndjson_file is the example plugin (examples/), listed by the test fixture's plugins file.
const pluginsFile = path.join(root, 'test/fixtures/plugins-example.json');
const engine = await startAuditpipe(cliEntry(root, values.from!), configFile, `http://127.0.0.1:${port}/readyz`, ['--plugins', pluginsFile]);
const engineResult = await drive(`http://127.0.0.1:${port}`);
await engine.stop();
rmSync(dir, { recursive: true, force: true });

console.log(JSON.stringify({
  bench: 'http-ingest',
  sink: values.sink === 'chain' ? 'postgres hash chain' : 'ndjson_file (fsync per batch)',
  events: requests * perRequest,
  perRequest,
  concurrency,
  from: values.from,
  engine: engineResult,
  bareHttpLimit: bareResult,
  ratio: Number((engineResult.eventsPerSecond / bareResult.eventsPerSecond).toFixed(3)),
}, null, 2));
