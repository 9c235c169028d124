import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BatchSettings, RetryPolicy, Sink } from '../../../src/core/component.ts';
import { PermanentError } from '../../../src/core/component.ts';
import { toEvent } from '../../../src/core/event.ts';
import { createLogger } from '../../../src/core/logger.ts';
import { CoreMetrics } from '../../../src/core/metrics.ts';
import { Pipeline, type SinkSlot } from '../../../src/core/pipeline.ts';
import type { Batch, Envelope, Outcome, PipelineName, WriteResult } from '../../../src/core/types.ts';

const FAST_RETRY: RetryPolicy = { maxAttempts: 3, initialBackoffMs: 1, maxBackoffMs: 5, maxElapsedMs: 5_000, attemptTimeoutMs: 1_000 };
const BATCH: BatchSettings = { maxEvents: 10, maxBytes: 1_000_000, intervalMs: 20, maxInFlight: 2, maxBufferedBytes: 10_000_000 };

/** A sink that records batches and fails on demand; it stands in for a sink component, not a server. */
class RecordingSink implements Sink {
  batches: Batch[] = [];
  failures = 0;
  permanent = false;
  reject = new Set<string>();
  delayMs = 0;
  calls = 0;
  async write(batch: Batch, signal: AbortSignal): Promise<WriteResult | void> {
    this.calls += 1;
    if (this.delayMs) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, this.delayMs);
        signal.addEventListener('abort', () => {
          clearTimeout(timer);
          reject(signal.reason);
        });
      });
    }
    if (this.failures > 0) {
      this.failures -= 1;
      throw this.permanent ? new PermanentError('bad credentials') : new Error('backend unavailable');
    }
    this.batches.push(batch);
    const rejected = batch.events.filter((e) => this.reject.has(e.id)).map((e) => ({ id: e.id, reason: 'constraint violated' }));
    return rejected.length ? { rejected } : undefined;
  }
  ids(): string[] {
    return this.batches.flatMap((b) => b.events.map((e) => e.id));
  }
}

function slot(name: string, sink: Sink, required = true, retry = FAST_RETRY): SinkSlot {
  return { name, sink, required, retry, maxInFlight: 2 };
}

function pipeline(sinks: SinkSlot[], options: { batch?: Partial<BatchSettings>; deadLetter?: SinkSlot } = {}) {
  const metrics = new CoreMetrics(undefined, { defaultMetrics: false });
  const p = new Pipeline({
    name: 'p' as PipelineName,
    batch: { ...BATCH, ...options.batch },
    sinks,
    deadLetter: options.deadLetter,
    nakDelayMs: 1_000,
    progressIntervalMs: 5,
    logger: createLogger('silent'),
    metrics,
  });
  return { p, metrics };
}

function envelopes(ids: string[]) {
  const outcomes = new Map<string, Outcome>();
  const settledAll = Promise.withResolvers<void>();
  let progress = 0;
  const list: Envelope[] = ids.map((id) => ({
    event: toEvent({ id, actorId: `actor-${id}`, msg: 'x' }, { actorField: 'actorId' }),
    settle(outcome: Outcome) {
      assert.ok(!outcomes.has(id), `envelope ${id} settled twice`);
      outcomes.set(id, outcome);
      if (outcomes.size === ids.length) settledAll.resolve();
    },
    inProgress() {
      progress += 1;
    },
  }));
  return { list, outcomes, settled: settledAll.promise, progress: () => progress };
}

const range = (n: number, prefix = 'e') => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

describe('batching stage', () => {
  it('flushes when max_events is reached without waiting for the interval', async () => {
    const sink = new RecordingSink();
    const { p } = pipeline([slot('s', sink)], { batch: { maxEvents: 5, intervalMs: 60_000 } });
    const e = envelopes(range(10));
    await p.emit(e.list);
    await e.settled;
    assert.deepEqual(sink.batches.map((b) => b.events.length), [5, 5]);
    await p.drain(1_000);
  });

  it('flushes when max_bytes is reached', async () => {
    const sink = new RecordingSink();
    const e = envelopes(range(6));
    const oneEvent = e.list[0]!.event.bytes;
    const { p } = pipeline([slot('s', sink)], { batch: { maxEvents: 1_000, maxBytes: oneEvent * 2, intervalMs: 60_000 } });
    await p.emit(e.list);
    await e.settled;
    assert.ok(sink.batches.length >= 3, `expected byte-bounded batches, got ${sink.batches.map((b) => b.events.length)}`);
    for (const batch of sink.batches) assert.ok(batch.events.length <= 2);
    await p.drain(1_000);
  });

  it('flushes a partial batch when the interval passes', async () => {
    const sink = new RecordingSink();
    const { p } = pipeline([slot('s', sink)], { batch: { maxEvents: 1_000, intervalMs: 10 } });
    const e = envelopes(range(3));
    await p.emit(e.list);
    await e.settled;
    assert.deepEqual(sink.batches.map((b) => b.events.length), [3]);
    assert.ok([...e.outcomes.values()].every((o) => o.kind === 'ack'));
    await p.drain(1_000);
  });

  it('eager: writes a partial batch at once while a write slot of the eager half is free', async () => {
    const sink = new RecordingSink();
    const { p } = pipeline([slot('s', sink)], { batch: { maxEvents: 1_000, intervalMs: 60_000, eager: true } });
    const e = envelopes(range(3));
    await p.emit(e.list);
    await e.settled;
    assert.deepEqual(sink.batches.map((b) => b.events.length), [3]);
    await p.drain(1_000);
  });

  it('eager: what arrives while the eager slots are busy forms the next batch, not one write per emit', async () => {
    const sink = new RecordingSink();
    sink.delayMs = 30;
    const { p } = pipeline([slot('s', sink)], { batch: { maxEvents: 1_000, intervalMs: 60_000, maxInFlight: 4, eager: true } });
    const all = envelopes(range(12));
    for (const one of all.list) await p.emit([one]);
    await all.settled;
    // ceil(4 / 2) = 2 eager slots: e0 and e1 go alone, e2..e11 wait and leave as one batch.
    assert.deepEqual(sink.batches.map((b) => b.events.length), [1, 1, 10]);
    await p.drain(1_000);
  });

  it('interval (not eager): a partial batch waits for interval_ms (or the drain)', async () => {
    const sink = new RecordingSink();
    const { p } = pipeline([slot('s', sink)], { batch: { maxEvents: 1_000, intervalMs: 60_000 } });
    const e = envelopes(range(3));
    await p.emit(e.list);
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(sink.batches.length, 0, 'nothing is written before the interval');
    await p.drain(1_000);
    await e.settled;
    assert.deepEqual(sink.batches.map((b) => b.events.length), [3]);
  });

  it('makes emit wait while the byte limit is held (backpressure) and bounds in-flight batches', async () => {
    const sink = new RecordingSink();
    sink.delayMs = 30;
    const first = envelopes(range(4, 'a'));
    const bytes = first.list.reduce((n, e) => n + e.event.bytes, 0);
    const { p } = pipeline([slot('s', sink)], { batch: { maxEvents: 1, maxInFlight: 1, maxBufferedBytes: bytes, maxBytes: bytes } });
    await p.emit(first.list);
    const second = envelopes(range(2, 'b'));
    let admitted = false;
    const pending = p.emit(second.list).then(() => {
      admitted = true;
    });
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(admitted, false, 'emit must wait while the pipeline holds its byte limit');
    await first.settled;
    await pending;
    await second.settled;
    assert.equal(sink.ids().length, 6);
    await p.drain(1_000);
  });

  it('tells envelopes a slow write is still in progress', async () => {
    const sink = new RecordingSink();
    sink.delayMs = 40;
    const { p } = pipeline([slot('s', sink)], { batch: { maxEvents: 1 } });
    const e = envelopes(['x']);
    await p.emit(e.list);
    await e.settled;
    assert.ok(e.progress() > 0);
    await p.drain(1_000);
  });
});

describe('retries and ack propagation', () => {
  it('retries a failing required sink and acks once it succeeds', async () => {
    const sink = new RecordingSink();
    sink.failures = 2;
    const { p, metrics } = pipeline([slot('s', sink)]);
    const e = envelopes(range(3));
    await p.emit(e.list);
    await e.settled;
    assert.equal(sink.calls, 3);
    assert.ok([...e.outcomes.values()].every((o) => o.kind === 'ack'));
    const retries = (await metrics.sinkRetries.get()).values.find((v) => v.labels.sink === 's')?.value;
    assert.equal(retries, 2);
    await p.drain(1_000);
  });

  it('naks with the configured delay when a required sink fails beyond its retry policy', async () => {
    const sink = new RecordingSink();
    sink.failures = 10;
    const { p } = pipeline([slot('s', sink)]);
    const e = envelopes(range(2));
    await p.emit(e.list);
    await e.settled;
    assert.equal(sink.calls, FAST_RETRY.maxAttempts);
    for (const outcome of e.outcomes.values()) {
      assert.equal(outcome.kind, 'nak');
      assert.equal(outcome.kind === 'nak' && outcome.delayMs, 1_000);
    }
    assert.deepEqual(p.failingRequiredSinks(), ['s']);
    await p.drain(1_000);
  });

  it('does not retry a PermanentError', async () => {
    const sink = new RecordingSink();
    sink.failures = 1;
    sink.permanent = true;
    const { p } = pipeline([slot('s', sink)]);
    const e = envelopes(['x']);
    await p.emit(e.list);
    await e.settled;
    assert.equal(sink.calls, 1);
    assert.equal(e.outcomes.get('x')!.kind, 'nak');
    await p.drain(1_000);
  });

  it('gives up an attempt at its timeout', async () => {
    const sink = new RecordingSink();
    sink.delayMs = 5_000;
    const { p } = pipeline([slot('s', sink, true, { ...FAST_RETRY, maxAttempts: 1, attemptTimeoutMs: 20 })]);
    const e = envelopes(['x']);
    await p.emit(e.list);
    await e.settled;
    const outcome = e.outcomes.get('x')!;
    assert.equal(outcome.kind, 'nak');
    assert.match(outcome.kind === 'nak' ? outcome.reason : '', /timed out/);
    await p.drain(1_000);
  });

  it('acks when only a best-effort sink fails, and naks when a required one fails', async () => {
    const required = new RecordingSink();
    const bestEffort = new RecordingSink();
    bestEffort.failures = 100;
    const { p, metrics } = pipeline([slot('db', required), slot('siem', bestEffort, false)]);
    const e = envelopes(range(4));
    await p.emit(e.list);
    await e.settled;
    assert.ok([...e.outcomes.values()].every((o) => o.kind === 'ack'));
    assert.equal(required.ids().length, 4);
    await p.drain(2_000);
    const dropped = (await metrics.sinkDropped.get()).values.find((v) => v.labels.sink === 'siem')?.value;
    assert.equal(dropped, 1);

    const required2 = new RecordingSink();
    required2.failures = 100;
    const { p: p2 } = pipeline([slot('db', required2), slot('siem', new RecordingSink(), false)]);
    const e2 = envelopes(range(2));
    await p2.emit(e2.list);
    await e2.settled;
    assert.ok([...e2.outcomes.values()].every((o) => o.kind === 'nak'));
    await p2.drain(1_000);
  });

  it('terms and dead-letters an event a sink rejects, acking the rest of its batch', async () => {
    const sink = new RecordingSink();
    sink.reject.add('e1');
    const dlq = new RecordingSink();
    const { p, metrics } = pipeline([slot('db', sink)], { deadLetter: slot('dead_letter', dlq) });
    const e = envelopes(range(3));
    await p.emit(e.list);
    await e.settled;
    assert.equal(e.outcomes.get('e0')!.kind, 'ack');
    assert.equal(e.outcomes.get('e2')!.kind, 'ack');
    const termed = e.outcomes.get('e1')!;
    assert.equal(termed.kind, 'term');
    assert.match(termed.kind === 'term' ? termed.reason : '', /constraint violated/);
    const letter = dlq.batches[0]!.events[0]!;
    assert.equal(letter.id, 'dlq:e1');
    assert.equal((letter.data.event as { id: string }).id, 'e1');
    assert.match(String(letter.data.reason), /constraint violated/);
    assert.equal((await metrics.deadLettered.get()).values[0]?.value, 1);
    await p.drain(1_000);
  });

  it('naks a rejected event instead of terming it when the dead-letter destination fails', async () => {
    const sink = new RecordingSink();
    sink.reject.add('e0');
    const dlq = new RecordingSink();
    dlq.failures = 100;
    const { p } = pipeline([slot('db', sink)], { deadLetter: slot('dead_letter', dlq) });
    const e = envelopes(['e0', 'e1']);
    await p.emit(e.list);
    await e.settled;
    assert.equal(e.outcomes.get('e0')!.kind, 'nak');
    assert.equal(e.outcomes.get('e1')!.kind, 'ack');
    await p.drain(1_000);
  });
});

describe('drain', () => {
  it('flushes buffered events on drain and refuses new ones', async () => {
    const sink = new RecordingSink();
    const { p } = pipeline([slot('s', sink)], { batch: { maxEvents: 1_000, intervalMs: 60_000 } });
    const e = envelopes(range(5));
    await p.emit(e.list);
    await p.drain(1_000);
    await e.settled;
    assert.equal(sink.ids().length, 5);
    assert.ok([...e.outcomes.values()].every((o) => o.kind === 'ack'));
    await assert.rejects(p.emit(envelopes(['late']).list), /shutting down/);
  });

  it('naks what is unwritten when the drain deadline passes; never acks it', async () => {
    const sink = new RecordingSink();
    sink.delayMs = 10_000;
    const { p } = pipeline([slot('s', sink, true, { ...FAST_RETRY, attemptTimeoutMs: 60_000 })], { batch: { maxEvents: 2, maxInFlight: 1 } });
    const e = envelopes(range(6));
    await p.emit(e.list);
    await p.drain(50);
    await e.settled;
    assert.equal(sink.ids().length, 0);
    assert.ok([...e.outcomes.values()].every((o) => o.kind === 'nak'));
  });
});
