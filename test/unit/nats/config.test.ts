import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadBuiltinApp } from '../../../src/builtins.ts';
import { ConfigError, validateSection } from '../../../src/core/config.ts';
import { natsSource, type NatsSourceConfig } from '../../../src/sources/nats/index.ts';
import { isAuditstreamValues, parseGoDuration, translateAuditstreamValues } from '../../../src/sources/nats/auditstream/values.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');

function source(overrides: Record<string, unknown> = {}): NatsSourceConfig {
  const result = validateSection<NatsSourceConfig>(natsSource.schema, { namespace: 'alpha', stream: 'logs', ...overrides }, 'source');
  assert.deepEqual(result.problems, []);
  return result.config!;
}

const pipeline = (intervalMs: number, maxSinkTimeoutMs: number, maxEvents: number) => ({
  batch: { maxEvents, maxBytes: 1e6, intervalMs, maxInFlight: 4, maxBufferedBytes: 1e7 },
  maxSinkTimeoutMs,
  nakDelayMs: 5000,
});

describe('nats source settings', () => {
  it('accepts the defaults with the default pipeline', () => {
    assert.deepEqual(natsSource.check!(source(), pipeline(200, 10_000, 500)), []);
  });

  it('rejects a flush interval plus sink timeout that reaches the ack wait', () => {
    const problems = natsSource.check!(source({ ack_wait_ms: 10_000 }), pipeline(5_000, 5_000, 100));
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /ack_wait_ms.*10000.*batch.interval_ms \(5000\).*5000/);
  });

  it('rejects a batch larger than max ack pending, and a pull larger than it', () => {
    const problems = natsSource.check!(source({ max_ack_pending: 100, pull_batch: 200 }), pipeline(200, 1000, 500));
    assert.ok(problems.some((p) => /max_ack_pending.*100.*batch.max_events \(500\)/.test(p)));
    assert.ok(problems.some((p) => /pull_batch.*200/.test(p)));
  });

  it('rejects conflicting auth, half TLS and invalid names', () => {
    assert.ok(natsSource.check!(source({ token: 't', user: 'u', password: 'p' }), pipeline(200, 1000, 10)).some((p) => /only one/.test(p)));
    assert.ok(natsSource.check!(source({ user: 'u' }), pipeline(200, 1000, 10)).some((p) => /together/.test(p)));
    assert.ok(natsSource.check!(source({ tls: { cert_file: 'c.pem' } }), pipeline(200, 1000, 10)).some((p) => /tls.key_file/.test(p)));
    assert.ok(natsSource.check!(source({ max_deliver: 0 }), pipeline(200, 1000, 10)).some((p) => /max_deliver/.test(p)));
    const bad = validateSection(natsSource.schema, { namespace: 'a.b', stream: 'x y' }, 'source').problems.join('\n');
    assert.match(bad, /namespace/);
    assert.match(bad, /stream/);
  });

  it('raises the nak delay along the configured backoff by delivery count', async () => {
    const { NatsSource } = await import('../../../src/sources/nats/source.ts');
    const fake = Object.create(NatsSource.prototype) as InstanceType<typeof NatsSource>;
    (fake as any).config = source({ nak_backoff_ms: [1_000, 10_000, 60_000] });
    assert.equal(fake.nakDelay(5_000, 1), 5_000);
    assert.equal(fake.nakDelay(5_000, 2), 10_000);
    assert.equal(fake.nakDelay(5_000, 3), 60_000);
    assert.equal(fake.nakDelay(5_000, 9), 60_000);
  });
});

describe('auditstream values.yml drop-in', () => {
  const seed = () => ({
    mode: 'debug', namespace: 'alpha', stream: 'logs', nats_hosts: ['nats://127.0.0.1:4222'], nats_token: 'your-token',
    victoria: 'http://localhost:9428', victoria_path: '/insert/jsonline?_stream_fields=stream&_msg_field=msg&_time_field=time',
    batch_size: 100, flush_interval: '5s',
  });

  it('parses Go durations', () => {
    assert.equal(parseGoDuration('5s'), 5_000);
    assert.equal(parseGoDuration('1m30s'), 90_000);
    assert.equal(parseGoDuration('250ms'), 250);
    assert.equal(parseGoDuration('1.5h'), 5_400_000);
    assert.equal(parseGoDuration('5'), undefined);
    assert.equal(parseGoDuration('5 s'), undefined);
    assert.equal(parseGoDuration(''), undefined);
  });

  it('recognises the seed file and not an auditpipe config', () => {
    assert.equal(isAuditstreamValues(seed()), true);
    assert.equal(isAuditstreamValues({ pipelines: [] }), false);
    assert.equal(isAuditstreamValues({ ...seed(), pipelines: [] }), false);
  });

  it('translates the README example into a NATS → VictoriaLogs pipeline', () => {
    const { config, problems } = translateAuditstreamValues(seed(), 'values.yml');
    assert.deepEqual(problems, []);
    const p = (config!.pipelines as any[])[0];
    assert.equal(p.name, 'alpha_logs');
    assert.equal(p.actor_field, 'user_id');
    assert.deepEqual(p.batch, { max_events: 100, interval_ms: 5_000, max_in_flight: 4 });
    assert.equal(p.source.type, 'nats');
    assert.deepEqual(p.source.servers, ['nats://127.0.0.1:4222']);
    assert.equal(p.source.token, 'your-token');
    assert.equal(p.source.namespace, 'alpha');
    assert.equal(p.source.stream, 'logs');
    assert.deepEqual(p.sinks, [{
      type: 'victorialogs', name: 'victorialogs', required: true, url: 'http://localhost:9428', path: '/insert/jsonline',
      stream_fields: ['stream'], msg_field: 'msg', time_field: 'time',
    }]);
    assert.equal(config!.log_level, 'debug');
  });

  it('reports what the seed would have panicked on, clearly', () => {
    const { config, problems } = translateAuditstreamValues({ ...seed(), flush_interval: '0', batch_size: -1, namespace: '', victoria_path: '/insert/jsonline?debug=1', extra: 1 }, 'values.yml');
    assert.equal(config, undefined);
    const text = problems.join('\n');
    assert.match(text, /flush_interval/);
    assert.match(text, /batch_size/);
    assert.match(text, /"namespace": is required/);
    assert.match(text, /"debug" is not supported/);
    assert.match(text, /unknown key "extra"/);
  });

  it('config/values.yml is the README example and loads as a valid pipeline', async () => {
    const text = readFileSync(path.join(ROOT, 'config/values.yml'), 'utf8');
    assert.match(text, /^mode: debug\nnamespace: alpha\nstream: logs\n/);
    const { config } = await loadBuiltinApp({ configFile: path.join(ROOT, 'config/values.yml'), pluginsFile: emptyPlugins() });
    assert.equal(config.pipelines[0]!.name, 'alpha_logs');
    assert.equal(config.pipelines[0]!.source.type, 'nats');
    assert.equal(config.pipelines[0]!.sinks[0]!.type, 'victorialogs');
  });

  it('a broken values file is a ConfigError naming the key', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'values-'));
    const file = path.join(dir, 'values.yml');
    writeFileSync(file, 'namespace: alpha\nstream: logs\nnats_hosts: []\nvictoria: http://localhost:9428\nflush_interval: 5\n');
    await assert.rejects(loadBuiltinApp({ configFile: file, pluginsFile: emptyPlugins() }), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /nats_hosts/);
      assert.match(error.message, /flush_interval/);
      return true;
    });
  });
});

function emptyPlugins(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'plugins-'));
  const file = path.join(dir, 'plugins.json');
  writeFileSync(file, '{"plugins": []}');
  return file;
}

describe('subject matching for existing streams', () => {
  it('matches literal subjects and wildcards the way NATS does', async () => {
    const { subjectMatches } = await import('../../../src/sources/nats/source.ts');
    assert.equal(subjectMatches('alpha.logs', 'alpha.logs'), true);
    assert.equal(subjectMatches('alpha.*', 'alpha.logs'), true);
    assert.equal(subjectMatches('alpha.>', 'alpha.logs'), true);
    assert.equal(subjectMatches('alpha.>', 'alpha.logs.dlq'), true);
    assert.equal(subjectMatches('alpha.*', 'alpha.logs.dlq'), false);
    assert.equal(subjectMatches('alpha.>', 'alpha'), false);
    assert.equal(subjectMatches('alpha.logs', 'alpha.logs.dlq'), false);
    assert.equal(subjectMatches('beta.logs', 'alpha.logs'), false);
  });
});
