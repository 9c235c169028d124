import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toEvent } from '../../../src/public/index.ts';
import { validateSection } from '../../../src/core/config.ts';
import { chunkEvents, RecentIds, toMessage } from '../../../src/sinks/kafka/sink.ts';
import { kafkaSettings, kafkaSinkSchema, type KafkaSinkConfig } from '../../../src/sinks/kafka/index.ts';

const event = (id: string, actorId?: string, size = 10) =>
  toEvent({ id, ...(actorId ? { actorId } : {}), pad: 'x'.repeat(size) }, { actorField: 'actorId' });

describe('kafka records', () => {
  it('keys a record by the actor id and carries the event id and content type in headers', () => {
    const e = event('e1', 'alice');
    assert.deepEqual(toMessage(e), {
      key: 'alice',
      value: e.json,
      headers: { 'event-id': 'e1', 'content-type': 'application/json' },
    });
  });

  it('sends an event without actor with a null key', () => {
    assert.equal(toMessage(event('e2')).key, null);
  });
});

describe('kafka chunking', () => {
  it('keeps every event, in order, in chunks under the byte limit', () => {
    const events = Array.from({ length: 50 }, (_, i) => event(`e${i}`, `a${i % 3}`, 1000));
    const chunks = chunkEvents(events, 10_000);
    assert.ok(chunks.length > 1);
    assert.deepEqual(chunks.flat().map((e) => e.id), events.map((e) => e.id));
    for (const chunk of chunks) {
      const bytes = chunk.reduce((n, e) => n + e.bytes + 128 + e.id.length + (e.actorId?.length ?? 0), 0);
      assert.ok(bytes <= 10_000, `chunk of ${bytes} bytes`);
    }
  });

  it('puts an event larger than the limit in a chunk of its own', () => {
    const chunks = chunkEvents([event('small'), event('big', 'a', 50_000), event('small2')], 10_000);
    assert.deepEqual(chunks.map((c) => c.map((e) => e.id)), [['small'], ['big'], ['small2']]);
  });
});

describe('kafka config', () => {
  const validate = (value: Record<string, unknown>) => validateSection<KafkaSinkConfig>(kafkaSinkSchema, value, 'sinks[0] (kafka)');

  it('accepts brokers as a list or a comma-separated string and applies defaults', () => {
    const { config, problems } = validate({ brokers: '127.0.0.1:9092, 127.0.0.2:9092', topic: 'audit.events' });
    assert.deepEqual(problems, []);
    const settings = kafkaSettings(config!);
    assert.deepEqual(settings.brokers, ['127.0.0.1:9092', '127.0.0.2:9092']);
    assert.equal(settings.compression, 'none');
    assert.equal(settings.autoCreate, false);
    assert.equal(settings.sasl.mechanism, 'none');
  });

  it('names each bad key and what is expected', () => {
    const { problems } = validate({ brokers: ['localhost'], topic: 'bad topic!', compression: 'snappy', sasl: { mechanism: 'kerberos' } });
    const text = problems.join('\n');
    assert.match(text, /brokers.*host:port/);
    assert.match(text, /topic.*Kafka topic name/);
    assert.match(text, /compression/);
    assert.match(text, /sasl\.mechanism/);
  });

  it('requires brokers and a topic', () => {
    const text = validate({}).problems.join('\n');
    assert.match(text, /brokers/);
    assert.match(text, /topic/);
  });

  it('needs a user and password for SASL, without echoing the password', () => {
    const { config } = validate({ brokers: ['127.0.0.1:9092'], topic: 't', sasl: { mechanism: 'scram-sha-512', password: 'p4ssw0rd-secret' } });
    assert.throws(() => kafkaSettings(config!), (error: Error) => /sasl\.username/.test(error.message) && !error.message.includes('p4ssw0rd'));
  });
});

it('RecentIds remembers the newest ids up to its capacity', async () => {
  const ids = new RecentIds(2);
  ids.add('a');
  ids.add('b');
  ids.add('a');
  ids.add('c');
  assert.equal(ids.has('a'), false);
  assert.equal(ids.has('b'), true);
  assert.equal(ids.has('c'), true);
  const off = new RecentIds(0);
  off.add('x');
  assert.equal(off.has('x'), false);
});
