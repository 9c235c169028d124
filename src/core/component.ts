/**
 * The contract between the engine and its components. Built-in sources and sinks are written
 * against exactly this, the same way a third-party plugin is.
 */
import type { Registry } from 'prom-client';
import type { EventLimits } from './event.ts';
import type { Logger } from './logger.ts';
import type { Batch, DeadLetter, Envelope, PipelineName, WriteResult } from './types.ts';

/** A convict schema object: `{ key: { doc, format, default, env?, sensitive? } }`. */
export type ConfigSchema = Record<string, unknown>;

/** What every component is given when it is created. */
export interface ComponentContext {
  readonly pipeline: PipelineName;
  /** `sinks[2]`, `source`, `dead_letter`, or the name the config gave it. */
  readonly name: string;
  readonly logger: Logger;
  readonly metrics: Registry;
  /** Where components keep files (AUDITPIPE_DATA_DIR). */
  readonly dataDir: string;
  /** Directory of the config file, for resolving relative paths in it. */
  readonly configDir: string;
  /** How the pipeline turns inputs into events; sources pass these to `toEvent`. */
  readonly events: { readonly actorField: string; readonly limits: EventLimits; readonly requireActor?: boolean };
  /** Shared services registered in the DI container (e.g. a chain store a read API queries). */
  resolve<T>(token: ServiceToken<T>): T;
  /** True when the container has the token. */
  has(token: ServiceToken<unknown>): boolean;
  /** Registers a shared service so that later components (e.g. a source's read API) can resolve it. */
  provide<T>(token: ServiceToken<T>, value: T): void;
}

declare const serviceType: unique symbol;

/**
 * The key of a shared service in the DI container, typed by what is stored under it, so a
 * provider and its users agree through an import rather than a repeated string. At run time it is
 * the string tsyringe keys by.
 */
export type ServiceToken<T> = string & { readonly [serviceType]: T };

export function serviceToken<T>(key: string): ServiceToken<T> {
  return key as ServiceToken<T>;
}

export interface Sink {
  /** Connect, migrate, self-check. A throw stops start-up with the message. */
  start?(): Promise<void>;
  /**
   * Durably write the batch, or throw. A throw is retried under the sink's retry policy unless it
   * is a `PermanentError`. Events that can never be written are returned in `rejected`.
   * `signal` aborts when the attempt times out or shutdown gives up.
   */
  write(batch: Batch, signal: AbortSignal): Promise<WriteResult | void>;
  /** Cheap liveness of the sink's backend, for /readyz. */
  healthy?(): boolean;
  close?(): Promise<void>;
}

export interface SourceContext {
  /**
   * Hands events to the pipeline. Resolves once they are buffered; waits while the buffer is
   * full, so a source that awaits it gets backpressure. Rejects when the pipeline is draining.
   */
  emit(envelopes: readonly Envelope[]): Promise<void>;
  /**
   * Writes an unusable input to the pipeline's dead-letter destination. Resolves `'stored'` once
   * durably written, `'none'` when the pipeline has no dead-letter destination; throws when the
   * destination failed (the source must then not term the input).
   */
  deadLetter(entry: Omit<DeadLetter, 'pipeline'>): Promise<'stored' | 'none'>;
  /** True when the pipeline has a dead-letter destination (so a source need not keep its own copy). */
  hasDeadLetter(): boolean;
  /** Counts an input rejected before it became an event. */
  countRejected(reason: string): void;
  /** True once every sink started and until draining begins. */
  ready(): boolean;
}

export interface Source {
  /** Begin intake. Resolves once the source accepts input (e.g. the port is bound). */
  start(ctx: SourceContext): Promise<void>;
  /** Stop taking new input; in-flight envelopes are still settled afterwards. */
  stop(): Promise<void>;
  /** Release connections after the pipeline drained. */
  close(): Promise<void>;
  /** False while the source cannot take input (e.g. its broker is unreachable), for /readyz. */
  healthy?(): boolean;
}

export interface SinkDefinition<C = any> {
  readonly type: string;
  readonly description: string;
  readonly schema: ConfigSchema;
  /** A tamper-evident chain store: its pipelines reject events without an actor unless `require_actor: false`. */
  readonly chainStore?: boolean;
  /** May load its implementation first (a dynamic import), so that unused components cost no memory. */
  create(config: C, ctx: ComponentContext): Sink | Promise<Sink>;
}

export interface SourceDefinition<C = any> {
  readonly type: string;
  readonly description: string;
  readonly schema: ConfigSchema;
  /**
   * Optional cross-check against the pipeline's batch settings (e.g. ack wait vs flush interval);
   * returns problems as messages.
   */
  check?(config: C, pipeline: PipelineSettings): string[];
  /**
   * The pipeline's flush policy when its config says `batch.flush: auto`. `eager` suits sources
   * whose senders wait for each input's outcome (HTTP): their requests cannot fill a batch while
   * they wait, so waiting for `max_events` or `interval_ms` only adds latency. Default `interval`.
   */
  readonly flush?: 'eager' | 'interval';
  create(config: C, ctx: ComponentContext): Source | Promise<Source>;
}

/** The parts of a pipeline's settings a source may check itself against. */
export interface PipelineSettings {
  readonly batch: BatchSettings;
  readonly maxSinkTimeoutMs: number;
  readonly nakDelayMs: number;
}

export interface BatchSettings {
  readonly maxEvents: number;
  readonly maxBytes: number;
  readonly intervalMs: number;
  readonly maxInFlight: number;
  readonly maxBufferedBytes: number;
  /** Dispatch a batch as soon as a write slot is free rather than when full or due. */
  readonly eager?: boolean;
}

export interface RetryPolicy {
  readonly maxAttempts: number;
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
  readonly maxElapsedMs: number;
  readonly attemptTimeoutMs: number;
}

/** Thrown by a sink for a failure that retrying cannot fix (bad credentials, 400 on the whole batch). */
export class PermanentError extends Error {
  override readonly name = 'PermanentError';
}
