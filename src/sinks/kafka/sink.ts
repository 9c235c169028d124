import kafkajs from 'kafkajs';
import type { Kafka as KafkaClient, KafkaConfig, Message, Producer, SASLOptions } from 'kafkajs';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { ConnectionOptions } from 'node:tls';
import { PermanentError, type AuditEvent, type Batch, type ComponentContext, type EventId, type Logger, type Sink, type WriteResult } from '../../public/index.ts';

const { Kafka, Partitioners, CompressionTypes, logLevel } = kafkajs;

/** The sink's settings after validation (index.ts turns the config keys into this). */
export interface KafkaSinkSettings {
  readonly brokers: readonly string[];
  readonly topic: string;
  readonly clientId: string;
  readonly compression: 'none' | 'gzip';
  readonly autoCreate: boolean;
  readonly partitions: number;
  readonly replicationFactor: number;
  readonly tls: { readonly enabled: boolean; readonly caFile: string; readonly certFile: string; readonly keyFile: string; readonly rejectUnauthorized: boolean };
  readonly sasl: { readonly mechanism: 'none' | 'plain' | 'scram-sha-256' | 'scram-sha-512'; readonly username: string; readonly password: string };
  readonly connectionTimeoutMs: number;
  readonly requestTimeoutMs: number;
  /** How long the broker may wait for all in-sync replicas before answering a produce request. */
  readonly ackTimeoutMs: number;
  /** kafkajs's own retries of one produce call (same sequence numbers, so the broker deduplicates them). */
  readonly sendRetries: number;
  /** Largest chunk of a batch sent in one produce call; keeps each record batch under the topic's max.message.bytes. */
  readonly maxRequestBytes: number;
  /** Event ids the broker acknowledged that this process remembers, so a redelivered event is not produced twice. */
  readonly dedupWindowEvents: number;
}

/** The most recent `capacity` ids, oldest forgotten first. */
export class RecentIds {
  private readonly ids = new Set<string>();
  private readonly capacity: number;
  constructor(capacity: number) {
    this.capacity = capacity;
  }
  has(id: string): boolean {
    return this.ids.has(id);
  }
  add(id: string): void {
    if (this.capacity === 0 || this.ids.has(id)) return;
    this.ids.add(id);
    if (this.ids.size > this.capacity) this.ids.delete(this.ids.values().next().value!);
  }
}

/** How long close() waits for a send still in progress before disconnecting. */
const CLOSE_WAIT_MS = 5_000;

/** Per-record bytes beyond the value: key, headers, record framing. */
const RECORD_OVERHEAD_BYTES = 128;

/** Where one batch stands across the pipeline's attempts to write it. */
interface BatchProgress {
  /** Split further when the broker finds a chunk too large. */
  readonly chunks: (readonly AuditEvent[])[];
  /** Chunks before this index are acknowledged by the broker. */
  next: number;
  readonly rejected: Array<{ id: EventId; reason: string }>;
  /** The send still running for this batch, which a retried attempt joins instead of sending twice. */
  running: Promise<void> | undefined;
  /** Abort signal of the newest attempt; the running send stops before its next chunk when it fires. */
  signal: AbortSignal;
}

/** Splits events into chunks of at most `maxBytes` (a single larger event is a chunk of its own). */
export function chunkEvents(events: readonly AuditEvent[], maxBytes: number): AuditEvent[][] {
  const chunks: AuditEvent[][] = [];
  let current: AuditEvent[] = [];
  let bytes = 0;
  for (const event of events) {
    const size = event.bytes + (event.actorId?.length ?? 0) + event.id.length + RECORD_OVERHEAD_BYTES;
    if (current.length > 0 && bytes + size > maxBytes) {
      chunks.push(current);
      current = [];
      bytes = 0;
    }
    current.push(event);
    bytes += size;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

/** One event as one Kafka record: key = actor id (per-actor order), value = the stored event. */
export function toMessage(event: AuditEvent): Message {
  return {
    key: event.actorId ?? null,
    value: event.json,
    headers: { 'event-id': event.id, 'content-type': 'application/json' },
  };
}

/** Resolves `promise`, or rejects with the signal's reason once it fires (the promise keeps running). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => { signal.removeEventListener('abort', onAbort); resolve(value); },
      (error: unknown) => { signal.removeEventListener('abort', onAbort); reject(error); },
    );
  });
}

function kafkaLogCreator(log: Logger) {
  return () => ({ level, log: entry }: { level: number; log: { message: string; [key: string]: unknown } }) => {
    const { message, timestamp: _timestamp, logger: _logger, ...fields } = entry;
    // Bounded retries are deliberate here: the sink replaces the producer after a failed send (see write()).
    if (message.startsWith('Limiting retries for the idempotent producer')) return;
    if (message.includes('KafkaJS v2.0.0 switched default partitioner')) return;
    const target = level === logLevel.ERROR ? 'error' : level === logLevel.WARN ? 'warn' : level === logLevel.INFO ? 'info' : 'debug';
    // kafkajs logs every failed attempt at error level; the pipeline reports the outcome, so keep these quieter.
    log[target === 'error' || target === 'info' ? 'debug' : target]({ kafkajs: fields }, `kafkajs: ${message}`);
  };
}

/**
 * Produces each event as one record with an idempotent producer and acks=all (see README.md).
 * Batches are sent one at a time, in pipeline order, so records of one actor keep their order.
 */
export class KafkaSink implements Sink {
  private readonly settings: KafkaSinkSettings;
  private readonly context: ComponentContext;
  private readonly log: Logger;
  private readonly kafka: KafkaClient;
  private producer: Producer | undefined;
  private connecting: Promise<Producer> | undefined;
  /** The send queue: each batch's send starts after the previous one settled. */
  private queue: Promise<void> = Promise.resolve();
  private readonly progress = new WeakMap<Batch, BatchProgress>();
  private lastSendFailed = false;
  private closed = false;
  /**
   * A send the pipeline gave up on (timeout) may still complete, and the batch is then redelivered;
   * remembering acknowledged ids keeps that redelivery from producing the records again.
   */
  private readonly acknowledged: RecentIds;

  constructor(settings: KafkaSinkSettings, context: ComponentContext) {
    this.settings = settings;
    this.context = context;
    this.log = context.logger;
    this.kafka = new Kafka(kafkaConfig(settings, context.configDir, this.log));
    this.acknowledged = new RecentIds(settings.dedupWindowEvents);
  }

  /** Checks the topic exists (or creates it when configured to) and connects the producer. */
  async start(): Promise<void> {
    const { topic, brokers } = this.settings;
    const admin = this.kafka.admin();
    try {
      await admin.connect();
    } catch (error) {
      throw new Error(`cannot connect to Kafka at ${brokers.join(',')}: ${(error as Error).message}`);
    }
    try {
      const topics = await admin.listTopics();
      if (!topics.includes(topic)) {
        if (!this.settings.autoCreate) {
          throw new Error(`topic "${topic}" does not exist on ${brokers.join(',')}: create it (kafka-topics.sh --create --topic ${topic} --partitions N --replication-factor N) or set auto_create: true with partitions and replication_factor`);
        }
        await admin.createTopics({
          topics: [{ topic, numPartitions: this.settings.partitions, replicationFactor: this.settings.replicationFactor }],
          waitForLeaders: true,
        });
        this.log.info({ topic, partitions: this.settings.partitions, replicationFactor: this.settings.replicationFactor }, 'kafka topic created');
      }
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
    await this.connectedProducer();
    this.log.info({ topic, brokers }, 'kafka sink ready');
  }

  /**
   * Written once the broker acknowledged every record (acks=all). A retry of the same batch
   * joins a send that is still running and skips chunks already acknowledged, so pipeline
   * retries do not produce records twice.
   */
  async write(batch: Batch, signal: AbortSignal): Promise<WriteResult | void> {
    let progress = this.progress.get(batch);
    if (!progress) {
      const fresh = batch.events.filter((event) => !this.acknowledged.has(event.id));
      progress = { chunks: chunkEvents(fresh, this.settings.maxRequestBytes), next: 0, rejected: [], running: undefined, signal };
      this.progress.set(batch, progress);
    }
    progress.signal = signal;
    let run = progress.running;
    if (!run) {
      const state = progress;
      const started = this.queue.then(() => this.sendRemaining(state));
      run = started;
      state.running = started;
      this.queue = started.then(() => undefined, () => undefined);
      void this.queue.finally(() => {
        if (state.running === started) state.running = undefined;
      });
    }
    await abortable(run, signal);
    if (progress.next < progress.chunks.length) throw new Error('kafka send ended before every chunk was acknowledged; retrying');
    return progress.rejected.length > 0 ? { rejected: progress.rejected } : undefined;
  }

  healthy(): boolean {
    return !this.lastSendFailed;
  }

  async close(): Promise<void> {
    this.closed = true;
    // A send still retrying against an unreachable broker was already given up by the pipeline
    // (its batch is naked); waiting a little lets a nearly done one finish, not more.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.queue, new Promise((resolve) => { timer = setTimeout(resolve, CLOSE_WAIT_MS); })]);
    clearTimeout(timer);
    const producer = this.producer;
    this.producer = undefined;
    await producer?.disconnect().catch(() => undefined);
  }

  private async sendRemaining(progress: BatchProgress): Promise<void> {
    while (progress.next < progress.chunks.length) {
      if (progress.signal.aborted) throw progress.signal.reason;
      const chunk = progress.chunks[progress.next]!;
      const producer = await this.connectedProducer();
      try {
        await producer.send({
          topic: this.settings.topic,
          messages: chunk.map(toMessage),
          acks: -1,
          timeout: this.settings.ackTimeoutMs,
          compression: this.settings.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None,
        });
        this.lastSendFailed = false;
        for (const event of chunk) this.acknowledged.add(event.id);
      } catch (error) {
        this.lastSendFailed = true;
        // kafkajs rolls its sequence numbers back when a send fails, even when the broker may have
        // stored the records; a later send of other records would then reuse those numbers and be
        // answered as a duplicate without being stored. A fresh producer id rules that out.
        await this.replaceProducer();
        if (isTooLarge(error)) {
          if (chunk.length === 1) {
            progress.rejected.push({ id: chunk[0]!.id, reason: `the event is larger than topic "${this.settings.topic}" accepts (max.message.bytes)` });
            progress.next += 1;
          } else {
            // Halve until each part fits or is a single event the topic can never take.
            const half = Math.ceil(chunk.length / 2);
            progress.chunks.splice(progress.next, 1, chunk.slice(0, half), chunk.slice(half));
          }
          continue;
        }
        throw classify(error, this.settings.topic);
      }
      progress.next += 1;
    }
  }

  private connectedProducer(): Promise<Producer> {
    if (this.producer) return Promise.resolve(this.producer);
    if (this.closed) return Promise.reject(new Error('kafka sink is closed'));
    this.connecting ??= (async () => {
      const producer = this.kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
        createPartitioner: Partitioners.DefaultPartitioner,
        retry: { retries: this.settings.sendRetries, initialRetryTime: 100, maxRetryTime: 2_000 },
      });
      try {
        await producer.connect();
      } catch (error) {
        await producer.disconnect().catch(() => undefined);
        throw new Error(`cannot connect the Kafka producer to ${this.settings.brokers.join(',')}: ${(error as Error).message}`);
      }
      this.producer = producer;
      return producer;
    })().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async replaceProducer(): Promise<void> {
    const producer = this.producer;
    this.producer = undefined;
    await producer?.disconnect().catch(() => undefined);
  }
}

/** The protocol error behind a kafkajs error (retries wrap it). */
function rootError(error: unknown): { name?: string; type?: string; retriable?: boolean; message?: string } {
  let current = error as { name?: string; type?: string; retriable?: boolean; cause?: unknown; originalError?: unknown };
  for (let depth = 0; depth < 5 && current; depth += 1) {
    if (current.name === 'KafkaJSProtocolError') return current;
    const next = (current.cause ?? current.originalError) as typeof current | undefined;
    if (!next) break;
    current = next;
  }
  return current ?? {};
}

function isTooLarge(error: unknown): boolean {
  const root = rootError(error);
  return root.type === 'MESSAGE_TOO_LARGE' || root.type === 'RECORD_LIST_TOO_LARGE';
}

/** Broker answers a retry cannot change (authorization, a too-large batch) become `PermanentError`. */
function classify(error: unknown, topic: string): Error {
  const root = rootError(error);
  const message = `kafka produce to "${topic}" failed: ${(error as Error)?.message ?? String(error)}`;
  if (root.name === 'KafkaJSProtocolError' && root.retriable === false) return new PermanentError(message);
  return new Error(message);
}

export function kafkaConfig(settings: KafkaSinkSettings, configDir: string, log: Logger): KafkaConfig {
  const read = (file: string) => readFileSync(path.resolve(configDir, file));
  let ssl: ConnectionOptions | boolean = false;
  if (settings.tls.enabled) {
    ssl = {
      rejectUnauthorized: settings.tls.rejectUnauthorized,
      ...(settings.tls.caFile ? { ca: [read(settings.tls.caFile)] } : {}),
      ...(settings.tls.certFile ? { cert: read(settings.tls.certFile) } : {}),
      ...(settings.tls.keyFile ? { key: read(settings.tls.keyFile) } : {}),
    };
  }
  const { mechanism, username, password } = settings.sasl;
  const sasl: SASLOptions | undefined = mechanism === 'none' ? undefined : { mechanism, username, password } as SASLOptions;
  return {
    clientId: settings.clientId,
    brokers: [...settings.brokers],
    ssl,
    ...(sasl ? { sasl } : {}),
    connectionTimeout: settings.connectionTimeoutMs,
    requestTimeout: settings.requestTimeoutMs,
    retry: { retries: settings.sendRetries, initialRetryTime: 100, maxRetryTime: 2_000 },
    logLevel: logLevel.INFO,
    logCreator: kafkaLogCreator(log) as KafkaConfig['logCreator'],
  };
}
