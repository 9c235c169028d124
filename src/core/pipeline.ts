import { v7 as uuidv7 } from 'uuid';
import type { BatchSettings, RetryPolicy, Sink } from './component.ts';
import { PermanentError } from './component.ts';
import type { Logger } from './logger.ts';
import type { CoreMetrics } from './metrics.ts';
import { backoffDelay, sleep } from './retry.ts';
import type {
  AuditEvent, Batch, DeadLetter, Envelope, EventId, JsonObject, JsonValue, Outcome, PipelineName, WriteResult,
} from './types.ts';

/** A sink as a pipeline holds it: the component plus how the pipeline treats it. */
export interface SinkSlot {
  readonly name: string;
  readonly sink: Sink;
  /** A required sink must write an event before it is acked; a best-effort one never holds acks. */
  readonly required: boolean;
  readonly retry: RetryPolicy;
  /** Best-effort sinks only: batches allowed in flight before further ones are dropped (and counted). */
  readonly maxInFlight: number;
}

export interface PipelineOptions {
  readonly name: PipelineName;
  readonly batch: BatchSettings;
  readonly sinks: readonly SinkSlot[];
  readonly deadLetter?: SinkSlot;
  readonly nakDelayMs: number;
  /** How often envelopes of a batch still being written are told so (NATS `working()`). */
  readonly progressIntervalMs: number;
  readonly logger: Logger;
  readonly metrics: CoreMetrics;
}

/**
 * Eager flushing sends a partial batch only while fewer than half the write slots are busy: the
 * rest are kept for full batches, so under load what arrives meanwhile accumulates into the next
 * batch instead of a queue of one-event writes (measured in docs/decisions.md, "Eager flush").
 */
export function eagerSlots(maxInFlight: number): number {
  return Math.ceil(maxInFlight / 2);
}

export class PipelineDrainingError extends Error {
  override readonly name = 'PipelineDrainingError';
  constructor(pipeline: string) {
    super(`pipeline ${pipeline} is shutting down and takes no new events`);
  }
}

/** Envelopes settled per outcome within one batch, for the acked/nacked/termed counters. */
type Tally = Record<Outcome['kind'], number>;

const ACK: Outcome = { kind: 'ack' };

type SinkOutcome =
  | { readonly ok: true; readonly result: WriteResult | undefined }
  | { readonly ok: false; readonly error: Error };

/**
 * The batching stage of one pipeline: buffers envelopes, flushes them as batches on count, bytes
 * or interval, fans each batch out to every sink at once, and settles each envelope with its
 * source once every required sink has answered. Memory is bounded by `maxBufferedBytes` over
 * buffered and in-flight events: `emit` waits while it is reached, which is the backpressure a
 * source feels.
 */
export class Pipeline {
  readonly name: PipelineName;
  private readonly options: PipelineOptions;
  private readonly log: Logger;
  private buffer: Envelope[] = [];
  private bufferedBytes = 0;
  /** Bytes of buffered plus in-flight events; bounded by `maxBufferedBytes`. */
  private heldBytes = 0;
  private inFlight = 0;
  private batchSeq = 0;
  private flushDue = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly capacityWaiters: Array<{ bytes: number; wake: (error?: Error) => void }> = [];
  private readonly idleWaiters: Array<() => void> = [];
  private readonly bestEffort = new Map<string, Set<Promise<void>>>();
  private readonly giveUp = new AbortController();
  private draining = false;
  private readonly failedSinks = new Set<string>();

  constructor(options: PipelineOptions) {
    this.options = options;
    this.name = options.name;
    this.log = options.logger.child({ pipeline: options.name });
    for (const slot of options.sinks) if (!slot.required) this.bestEffort.set(slot.name, new Set());
  }

  get sinks(): readonly SinkSlot[] {
    return this.options.sinks;
  }

  /** Required sinks whose last batch failed beyond their retry policy (for /readyz). */
  failingRequiredSinks(): string[] {
    return [...this.failedSinks];
  }

  isDraining(): boolean {
    return this.draining;
  }

  /** Buffers envelopes for the next batch, waiting while the pipeline holds its byte limit. */
  async emit(envelopes: readonly Envelope[]): Promise<void> {
    if (envelopes.length === 0) return;
    if (this.draining) throw new PipelineDrainingError(this.name);
    let bytes = 0;
    for (const envelope of envelopes) bytes += envelope.event.bytes;
    // Always admit into an empty pipeline so one input larger than the limit cannot wait forever.
    if (this.heldBytes > 0 && this.heldBytes + bytes > this.options.batch.maxBufferedBytes) {
      // release() reserves the bytes before waking us, so a burst of wake-ups cannot overshoot.
      await new Promise<void>((resolve, reject) => {
        this.capacityWaiters.push({ bytes, wake: (error) => (error ? reject(error) : resolve()) });
      });
    } else {
      this.heldBytes += bytes;
    }
    for (const envelope of envelopes) this.buffer.push(envelope);
    this.bufferedBytes += bytes;
    this.options.metrics.bufferedBytes.set({ pipeline: this.name }, this.heldBytes);
    this.pump();
  }

  /**
   * Writes entries to the dead-letter destination. Resolves `'none'` when the pipeline has none;
   * throws when it failed beyond its retry policy.
   */
  async deadLetter(entries: readonly Omit<DeadLetter, 'pipeline'>[]): Promise<'stored' | 'none'> {
    const slot = this.options.deadLetter;
    if (!slot) return 'none';
    if (entries.length === 0) return 'stored';
    const events = entries.map((entry) => deadLetterEvent({ ...entry, pipeline: this.name }));
    const batch: Batch = { pipeline: this.name, seq: 0, events, bytes: events.reduce((n, e) => n + e.bytes, 0) };
    const outcome = await this.writeWithRetry(slot, batch);
    if (!outcome.ok) throw new Error(`dead-letter destination ${slot.name} failed: ${outcome.error.message}`);
    if (outcome.result?.rejected?.length) {
      throw new Error(`dead-letter destination ${slot.name} rejected ${outcome.result.rejected.length} entries`);
    }
    this.options.metrics.deadLettered.inc({ pipeline: this.name }, entries.length);
    return 'stored';
  }

  /**
   * Stops intake, flushes everything buffered and waits for in-flight batches, at most
   * `timeoutMs`. What is still unwritten then is nak'ed, never acked.
   */
  async drain(timeoutMs: number): Promise<void> {
    this.draining = true;
    for (const waiter of this.capacityWaiters.splice(0)) waiter.wake(new PipelineDrainingError(this.name));
    this.flushDue = true;
    this.pump();
    const idle = new Promise<void>((resolve) => {
      if (this.isIdle()) resolve();
      else this.idleWaiters.push(resolve);
    });
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<'expired'>((resolve) => {
      timer = setTimeout(() => resolve('expired'), timeoutMs);
    });
    const first = await Promise.race([idle, expired]);
    if (first === 'expired') {
      this.log.warn({ timeoutMs, inFlight: this.inFlight, buffered: this.buffer.length }, 'drain timed out; naking what is unwritten');
      this.giveUp.abort(new Error('shutdown deadline reached'));
      const left = this.buffer.splice(0);
      this.settleAll(left, { kind: 'nak', delayMs: this.options.nakDelayMs, reason: 'shutting down' });
      this.release(left);
      await Promise.race([idle, sleep(1_000)]);
    }
    clearTimeout(timer);
    const pending = [...this.bestEffort.values()].flatMap((set) => [...set]);
    await Promise.race([Promise.allSettled(pending), sleep(Math.max(100, Math.min(timeoutMs, 2_000)))]);
    if (this.timer) clearTimeout(this.timer);
  }

  private isIdle(): boolean {
    return this.buffer.length === 0 && this.inFlight === 0;
  }

  /** Dispatches every batch that is due while in-flight capacity allows; arms the interval timer. */
  private pump(): void {
    const { maxEvents, maxBytes, maxInFlight, intervalMs, eager } = this.options.batch;
    while (this.buffer.length > 0 && this.inFlight < maxInFlight) {
      const full = this.buffer.length >= maxEvents || this.bufferedBytes >= maxBytes;
      if (!full && !this.flushDue && !(eager && this.inFlight < eagerSlots(maxInFlight))) break;
      this.dispatch(this.takeBatch(maxEvents, maxBytes));
    }
    if (this.buffer.length === 0) this.flushDue = this.draining;
    if (this.buffer.length > 0 && !this.flushDue && !this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.flushDue = true;
        this.pump();
      }, intervalMs);
    }
    if (this.buffer.length === 0 && this.timer && !this.draining) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.isIdle()) for (const wake of this.idleWaiters.splice(0)) wake();
  }

  private takeBatch(maxEvents: number, maxBytes: number): Envelope[] {
    let count = 0;
    let bytes = 0;
    // At least one event per batch, even one larger than maxBytes.
    while (count < this.buffer.length && count < maxEvents) {
      const next = this.buffer[count]!.event.bytes;
      if (count > 0 && bytes + next > maxBytes) break;
      bytes += next;
      count += 1;
    }
    this.bufferedBytes -= bytes;
    return this.buffer.splice(0, count);
  }

  private dispatch(envelopes: Envelope[]): void {
    this.inFlight += 1;
    this.options.metrics.inFlightBatches.set({ pipeline: this.name }, this.inFlight);
    const events = envelopes.map((envelope) => envelope.event);
    const batch: Batch = {
      pipeline: this.name,
      seq: ++this.batchSeq,
      events,
      bytes: events.reduce((n, event) => n + event.bytes, 0),
    };
    this.options.metrics.batchEvents.observe({ pipeline: this.name }, events.length);
    this.options.metrics.batchBytes.observe({ pipeline: this.name }, batch.bytes);
    const started = performance.now();
    const progress = setInterval(() => {
      for (const envelope of envelopes) envelope.inProgress?.();
    }, this.options.progressIntervalMs);
    this.deliver(batch, envelopes)
      .catch((error: unknown) => {
        // deliver() settles every envelope itself; this only guards against a bug leaving one open.
        this.log.error({ err: error, batch: batch.seq }, 'batch delivery failed unexpectedly; naking it');
        this.settleAll(envelopes, { kind: 'nak', delayMs: this.options.nakDelayMs, reason: 'internal error' });
      })
      .finally(() => {
        clearInterval(progress);
        this.options.metrics.flushDuration.observe({ pipeline: this.name }, (performance.now() - started) / 1000);
        this.inFlight -= 1;
        this.options.metrics.inFlightBatches.set({ pipeline: this.name }, this.inFlight);
        this.release(envelopes);
        this.pump();
      });
  }

  /** Frees the bytes of settled envelopes and wakes emitters that now fit. */
  private release(envelopes: readonly Envelope[]): void {
    for (const envelope of envelopes) this.heldBytes -= envelope.event.bytes;
    this.options.metrics.bufferedBytes.set({ pipeline: this.name }, this.heldBytes);
    while (this.capacityWaiters.length > 0) {
      const next = this.capacityWaiters[0]!;
      if (this.heldBytes > 0 && this.heldBytes + next.bytes > this.options.batch.maxBufferedBytes) break;
      this.capacityWaiters.shift();
      this.heldBytes += next.bytes;
      next.wake();
    }
  }

  private async deliver(batch: Batch, envelopes: readonly Envelope[]): Promise<void> {
    const required = this.options.sinks.filter((slot) => slot.required);
    for (const slot of this.options.sinks) if (!slot.required) this.startBestEffort(slot, batch);
    const outcomes = await Promise.all(required.map((slot) => this.writeWithRetry(slot, batch)));

    const rejected = new Map<EventId, string>();
    const receipts = new Map<EventId, Record<string, JsonValue>>();
    let failure: Error | undefined;
    outcomes.forEach((outcome, index) => {
      const slot = required[index]!;
      if (!outcome.ok) {
        failure ??= new Error(`sink ${slot.name}: ${outcome.error.message}`);
        return;
      }
      for (const { id, reason } of outcome.result?.rejected ?? []) {
        if (!rejected.has(id)) rejected.set(id, `sink ${slot.name} rejected the event: ${reason}`);
      }
      for (const [id, receipt] of outcome.result?.receipts ?? []) receipts.set(id, { ...receipts.get(id), ...receipt });
    });

    const toDeadLetter = envelopes.filter((envelope) => rejected.has(envelope.event.id));
    let deadLettered = true;
    if (toDeadLetter.length > 0) {
      try {
        await this.deadLetter(toDeadLetter.map((envelope) => ({ reason: rejected.get(envelope.event.id)!, event: envelope.event })));
      } catch (error) {
        deadLettered = false;
        this.log.error({ err: error }, 'dead-letter write failed; naking rejected events instead of terminating them');
      }
    }

    // Counted per batch, not per envelope: a labelled counter update costs more than the settle itself.
    const tally: Tally = { ack: 0, nak: 0, term: 0 };
    const anyRejected = rejected.size > 0;
    const anyReceipt = receipts.size > 0;
    for (const envelope of envelopes) {
      const reason = anyRejected ? rejected.get(envelope.event.id) : undefined;
      if (reason !== undefined) {
        this.settle(envelope, deadLettered
          ? { kind: 'term', reason }
          : { kind: 'nak', delayMs: this.options.nakDelayMs, reason: `${reason}; dead-letter destination unavailable` }, tally);
      } else if (failure) {
        this.settle(envelope, { kind: 'nak', delayMs: this.options.nakDelayMs, reason: failure.message }, tally);
      } else {
        const receipt = anyReceipt ? receipts.get(envelope.event.id) : undefined;
        this.settle(envelope, receipt ? { kind: 'ack', receipt } : ACK, tally);
      }
    }
    this.count(tally);
  }

  private settleAll(envelopes: readonly Envelope[], outcome: Outcome): void {
    const tally: Tally = { ack: 0, nak: 0, term: 0 };
    for (const envelope of envelopes) this.settle(envelope, outcome, tally);
    this.count(tally);
  }

  private settle(envelope: Envelope, outcome: Outcome, tally: Tally): void {
    tally[outcome.kind] += 1;
    try {
      envelope.settle(outcome);
    } catch (error) {
      this.log.error({ err: error, event: envelope.event.id }, 'source failed to settle an envelope');
    }
  }

  private count(tally: Tally): void {
    const labels = { pipeline: this.name };
    if (tally.ack > 0) this.options.metrics.acked.inc(labels, tally.ack);
    if (tally.nak > 0) this.options.metrics.nacked.inc(labels, tally.nak);
    if (tally.term > 0) this.options.metrics.termed.inc(labels, tally.term);
  }

  private startBestEffort(slot: SinkSlot, batch: Batch): void {
    const running = this.bestEffort.get(slot.name)!;
    if (running.size >= slot.maxInFlight) {
      this.options.metrics.sinkDropped.inc({ pipeline: this.name, sink: slot.name });
      this.log.warn({ sink: slot.name, batch: batch.seq, events: batch.events.length }, 'best-effort sink is behind; batch not written to it');
      return;
    }
    const task = this.writeWithRetry(slot, batch).then((outcome) => {
      if (!outcome.ok) {
        this.options.metrics.sinkDropped.inc({ pipeline: this.name, sink: slot.name });
      }
    });
    running.add(task);
    void task.finally(() => running.delete(task));
  }

  /** One sink, one batch: attempts with a timeout each, exponential backoff with full jitter between them. */
  private async writeWithRetry(slot: SinkSlot, batch: Batch): Promise<SinkOutcome> {
    const { retry } = slot;
    const labels = { pipeline: this.name, sink: slot.name };
    const started = Date.now();
    for (let attempt = 1; ; attempt += 1) {
      const attemptStarted = performance.now();
      try {
        const result = await this.attempt(slot.sink, batch, retry.attemptTimeoutMs);
        this.options.metrics.sinkWriteDuration.observe(labels, (performance.now() - attemptStarted) / 1000);
        this.options.metrics.sinkWrites.inc({ ...labels, outcome: 'success' });
        if (this.failedSinks.delete(slot.name)) this.log.info({ sink: slot.name }, 'sink recovered');
        return { ok: true, result: result ?? undefined };
      } catch (caught) {
        const error = caught instanceof Error ? caught : new Error(String(caught));
        this.options.metrics.sinkWriteDuration.observe(labels, (performance.now() - attemptStarted) / 1000);
        this.options.metrics.sinkWrites.inc({ ...labels, outcome: 'error' });
        const elapsed = Date.now() - started;
        const delay = backoffDelay(retry, attempt - 1);
        const final = error instanceof PermanentError
          || attempt >= retry.maxAttempts
          || elapsed + delay > retry.maxElapsedMs
          || this.giveUp.signal.aborted;
        if (final) {
          this.options.metrics.sinkWrites.inc({ ...labels, outcome: 'gave_up' });
          if (slot.required) this.failedSinks.add(slot.name);
          this.log.error({ sink: slot.name, batch: batch.seq, events: batch.events.length, attempts: attempt, elapsedMs: elapsed, err: error.message },
            slot.required ? 'required sink failed; batch will be naked' : 'best-effort sink failed; batch skipped for it');
          return { ok: false, error };
        }
        this.options.metrics.sinkRetries.inc(labels);
        this.log.warn({ sink: slot.name, batch: batch.seq, attempt, retryInMs: delay, err: error.message }, 'sink write failed; retrying');
        try {
          await sleep(delay, this.giveUp.signal);
        } catch {
          return { ok: false, error };
        }
      }
    }
  }

  private async attempt(sink: Sink, batch: Batch, timeoutMs: number): Promise<WriteResult | void> {
    const controller = new AbortController();
    const onGiveUp = () => controller.abort(this.giveUp.signal.reason);
    this.giveUp.signal.addEventListener('abort', onGiveUp, { once: true });
    let timer: NodeJS.Timeout | undefined;
    const aborted = new Promise<never>((_, reject) => {
      timer = setTimeout(() => controller.abort(new Error(`write timed out after ${timeoutMs} ms`)), timeoutMs);
      controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true });
    });
    try {
      // A sink that ignores the signal still cannot hold the batch past its timeout.
      return await Promise.race([sink.write(batch, controller.signal), aborted]);
    } finally {
      clearTimeout(timer);
      this.giveUp.signal.removeEventListener('abort', onGiveUp);
    }
  }
}

/** The event a dead-letter destination stores: the reason, where it came from, and the input. */
export function deadLetterEvent(entry: DeadLetter): AuditEvent {
  const now = new Date().toISOString();
  const data: Record<string, JsonValue> = {
    id: entry.event ? `dlq:${entry.event.id}` : `dlq:${uuidv7()}`,
    time: now,
    pipeline: entry.pipeline,
    reason: entry.reason,
  };
  if (entry.origin) data.origin = entry.origin;
  if (entry.event) data.event = entry.event.data;
  if (entry.raw !== undefined) {
    const text = typeof entry.raw === 'string' ? entry.raw : Buffer.from(entry.raw).toString('utf8');
    const lossless = typeof entry.raw === 'string' || Buffer.from(text, 'utf8').equals(Buffer.from(entry.raw));
    data.raw = lossless ? text : Buffer.from(entry.raw).toString('base64');
    data.raw_encoding = lossless ? 'utf8' : 'base64';
  }
  const frozen = Object.freeze(data) as JsonObject;
  const json = JSON.stringify(frozen);
  return Object.freeze({
    id: data.id as EventId,
    actorId: entry.event?.actorId,
    time: now,
    receivedAt: now,
    data: frozen,
    json,
    bytes: Buffer.byteLength(json),
  });
}
