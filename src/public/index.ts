/**
 * auditpipe's public plugin API. Built-in sources and sinks use exactly this; so does a
 * third-party plugin, which receives it as the argument of its `register(api)` function.
 * Everything else under src/ is internal and may change without notice.
 *
 * Three files, so that src/security (which uses this file's types) is no import cycle away:
 *   - index.ts: the component contract (events, batches, sinks/sources, errors, metrics, logger);
 *   - security.ts: canonical JSON, the hash chain, checkpoints, keys, verification, signatures, tokens;
 *   - services.ts: typed tokens of the services components share through ctx.resolve/provide.
 */
import type { SinkDefinition, SourceDefinition } from '../core/component.ts';
import { PermanentError } from '../core/component.ts';
import { InvalidEventError, toEvent } from '../core/event.ts';
import { isRfc3339 } from '../core/time.ts';

export type {
  ActorId, AuditEvent, Batch, DeadLetter, Envelope, EventId, JsonObject, JsonValue, Outcome, PipelineName, WriteResult,
} from '../core/types.ts';
export type {
  BatchSettings, ComponentContext, ConfigSchema, PipelineSettings, RetryPolicy, Sink, SinkDefinition, Source,
  SourceContext, SourceDefinition,
} from '../core/component.ts';
export type { EventOptions, EventLimits } from '../core/event.ts';
export type { Logger } from '../core/logger.ts';
export { PermanentError, InvalidEventError, toEvent, isRfc3339 };
import { sharedMetric } from '../core/metrics.ts';
export { sharedMetric };

export const API_VERSION = 1;

/** What `register(api)` receives. */
export interface PluginApi {
  readonly apiVersion: number;
  registerSink(definition: SinkDefinition): void;
  registerSource(definition: SourceDefinition): void;
  /** Errors a sink throws for failures that retrying cannot fix. */
  readonly PermanentError: typeof PermanentError;
  /** Turns parsed JSON into an event the way built-in sources do (for plugin sources). */
  readonly toEvent: typeof toEvent;
  readonly InvalidEventError: typeof InvalidEventError;
  /** The typed helpers and the metrics registry built-ins use, for a plugin that cannot import auditpipe (the single binary). */
  readonly defineSink: typeof defineSink;
  readonly defineSource: typeof defineSource;
  readonly sharedMetric: typeof sharedMetric;
}

/** Typed identity helpers, so a definition's config type is checked against its `create`. */
export function defineSink<C>(definition: SinkDefinition<C>): SinkDefinition<C> {
  return definition;
}

export function defineSource<C>(definition: SourceDefinition<C>): SourceDefinition<C> {
  return definition;
}
