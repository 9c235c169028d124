/**
 * Memory at a steady rate: an `auditpipe run` child process consumes NATS JetStream into
 * VictoriaLogs (auditstream's job) while this script publishes ~500-byte events at a fixed rate;
 * the child's resident set size (VmRSS from /proc) is sampled every 10 s. Target: at most
 * 200 MB (issue 17), and no growth from the first to the last minute (last within 5% of first).
 *
 * The load is published with core NATS publishes (the stream captures the subject), not
 * JetStream publishes awaiting a PubAck each: on two shared cores the acknowledged publisher
 * could not produce 10,000 events/s beside the consumer. What the child consumed is read back
 * from the stream and reported as `consumedRate`.
 *
 *   set -a; . .servers/env; set +a; npm run bench:memory -- [--minutes 10] [--rate 10000] [--from dist|src]
 *
 * `--from dist` (default) measures the compiled package, what `npm install` users run.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, headers } from '@nats-io/transport-node';
import { stringify } from 'yaml';
import { newAuditEvent, Transfer } from '../src/client/index.ts';
import { cliEntry, requiredEnv } from './env.ts';

const { values } = parseArgs({ options: { minutes: { type: 'string', default: '10' }, rate: { type: 'string', default: '10000' }, from: { type: 'string', default: 'dist' } } });
const minutes = Number(values.minutes);
const rate = Number(values.rate);
for (const name of ['NATS_URL', 'VICTORIA_URL']) requiredEnv(name);

const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-memory-'));
const namespace = `mem${Date.now().toString(36)}`;
const config = path.join(dir, 'auditpipe.yml');
writeFileSync(config, stringify({
  data_dir: path.join(dir, 'data'),
  log_level: 'warn',
  pipelines: [{
    name: 'memory',
    actor_field: 'user_id',
    source: { type: 'nats', servers: [process.env.NATS_URL], token: process.env.NATS_TOKEN ?? '', namespace, stream: 'logs' },
    batch: { max_events: 1000, interval_ms: 200 },
    sinks: [{ type: 'victorialogs', url: process.env.VICTORIA_URL, stream_fields: ['stream'] }],
  }],
}));

const root = path.resolve(import.meta.dirname, '..');
const entry = cliEntry(root, values.from!);
// The same V8 flag as `npm start`, bin/auditpipe.js and the executable.
const child = spawn(process.execPath, [process.env.BENCH_NODE_FLAG ?? '--max-semi-space-size=4', entry, 'run', '--config', config], { stdio: ['ignore', 'ignore', 'inherit'] });
const rssMb = () => {
  const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
};

const nc = await connect({ servers: process.env.NATS_URL!, token: process.env.NATS_TOKEN || undefined });
const transfer = new Transfer(nc, namespace, { maxPendingAsync: 5_000 });
// Wait for the child to create the stream (first publish succeeds only then).
for (let i = 0; ; i += 1) {
  try {
    await transfer.publish('logs', newAuditEvent('logs', 'warm-up'));
    break;
  } catch (error) {
    if (i > 100) throw error;
    await new Promise((r) => setTimeout(r, 200));
  }
}

const template = JSON.stringify({ ...JSON.parse(JSON.stringify(newAuditEvent('logs', 'user 7 updated order 42')
  .withMeta('admin', 'order', 'update', 42, 7)
  .withRequest('/api/orders/42', { status: 'shipped', note: 'x'.repeat(120), items: [1, 2, 3] })
  .withResponse(200, { ok: true })
  .withClient('192.168.10.20', 'Mozilla/5.0 (X11; Linux x86_64) bench'))), id: 'ID' });
const samples: Array<{ second: number; rssMb: number }> = [];
const started = Date.now();
const end = started + minutes * 60_000;
let published = 0;
const sampler = setInterval(() => samples.push({ second: Math.round((Date.now() - started) / 1000), rssMb: Math.round(rssMb()) }), 10_000);
const tickMs = 100;
const perTick = Math.round((rate * tickMs) / 1000);
while (Date.now() < end) {
  const tickStart = Date.now();
  for (let i = 0; i < perTick; i += 1) {
    const n = published++;
    // The payload is built once; only the id differs, so the publisher spends its CPU publishing.
    const h = headers();
    h.set('Nats-Msg-Id', `m-${n}`);
    nc.publish(`${namespace}.logs`, template.replace('"ID"', `"m-${n}"`), { headers: h });
  }
  await nc.flush();
  const wait = tickMs - (Date.now() - tickStart);
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
}
clearInterval(sampler);
const elapsedSeconds = (Date.now() - started) / 1000;
const achievedRate = Math.round(published / elapsedSeconds);
const jsm = await jetstreamManager(nc);
const state = (await jsm.streams.info(`${namespace}_logs`)).state;
const consumedRate = Math.round((state.first_seq - 2) / elapsedSeconds);
child.kill('SIGTERM');
await new Promise((r) => child.on('exit', r));
await nc.close();

const firstMinute = samples.filter((s) => s.second <= 60).map((s) => s.rssMb);
const lastMinute = samples.filter((s) => s.second > minutes * 60 - 60).map((s) => s.rssMb);
const avg = (xs: number[]) => Math.round(xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length));
console.log(JSON.stringify({
  bench: 'memory',
  pipeline: 'nats -> victorialogs',
  cli: values.from === 'src' ? 'src/ (TypeScript, type stripping)' : 'dist/ (the compiled package)',
  minutes,
  targetRate: rate,
  achievedRate,
  consumedRate,
  stillInStream: state.messages,
  published,
  maxRssMb: Math.max(...samples.map((s) => s.rssMb)),
  firstMinuteAvgRssMb: avg(firstMinute),
  lastMinuteAvgRssMb: avg(lastMinute),
  samples,
}, null, 2));
