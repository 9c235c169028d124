import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type Metric } from 'prom-client';

/**
 * The metric called `name` in `registry`, made by `create` the first time: every instance of a
 * component (one per pipeline) shares one metric and tells itself apart by its labels.
 */
export function sharedMetric<T extends Metric>(registry: Registry, name: string, create: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? create();
}

/**
 * The engine's own metrics. Labels are bounded: pipeline and sink names come from the config,
 * reasons are short fixed words chosen by the code, never free text.
 */
export class CoreMetrics {
  readonly registry: Registry;
  readonly received: Counter<'pipeline' | 'source'>;
  readonly acked: Counter<'pipeline'>;
  readonly nacked: Counter<'pipeline'>;
  readonly termed: Counter<'pipeline'>;
  readonly deadLettered: Counter<'pipeline'>;
  readonly rejected: Counter<'pipeline' | 'reason'>;
  readonly batchEvents: Histogram<'pipeline'>;
  readonly batchBytes: Histogram<'pipeline'>;
  readonly flushDuration: Histogram<'pipeline'>;
  readonly sinkWriteDuration: Histogram<'pipeline' | 'sink'>;
  readonly sinkWrites: Counter<'pipeline' | 'sink' | 'outcome'>;
  readonly sinkRetries: Counter<'pipeline' | 'sink'>;
  readonly sinkDropped: Counter<'pipeline' | 'sink'>;
  readonly inFlightBatches: Gauge<'pipeline'>;
  readonly bufferedBytes: Gauge<'pipeline'>;

  constructor(registry = new Registry(), options: { defaultMetrics?: boolean } = {}) {
    this.registry = registry;
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'auditpipe_' });
    const registers = [registry];
    this.received = new Counter({ name: 'auditpipe_events_received_total', help: 'Events handed to a pipeline by its source.', labelNames: ['pipeline', 'source'], registers });
    this.acked = new Counter({ name: 'auditpipe_events_acked_total', help: 'Events acknowledged after every required sink wrote them.', labelNames: ['pipeline'], registers });
    this.nacked = new Counter({ name: 'auditpipe_events_nacked_total', help: 'Events negatively acknowledged (to be redelivered or retried by the client).', labelNames: ['pipeline'], registers });
    this.termed = new Counter({ name: 'auditpipe_events_termed_total', help: 'Events that can never succeed, terminated with a reason.', labelNames: ['pipeline'], registers });
    this.deadLettered = new Counter({ name: 'auditpipe_events_dead_lettered_total', help: 'Inputs written to the dead-letter destination.', labelNames: ['pipeline'], registers });
    this.rejected = new Counter({ name: 'auditpipe_inputs_rejected_total', help: 'Inputs rejected before or while becoming events, by reason.', labelNames: ['pipeline', 'reason'], registers });
    this.batchEvents = new Histogram({ name: 'auditpipe_batch_events', help: 'Events per flushed batch.', labelNames: ['pipeline'], buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000], registers });
    this.batchBytes = new Histogram({ name: 'auditpipe_batch_bytes', help: 'Bytes per flushed batch.', labelNames: ['pipeline'], buckets: [1e3, 1e4, 1e5, 5e5, 1e6, 5e6, 1e7], registers });
    this.flushDuration = new Histogram({ name: 'auditpipe_flush_duration_seconds', help: 'From dispatch of a batch until its events were settled.', labelNames: ['pipeline'], buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers });
    this.sinkWriteDuration = new Histogram({ name: 'auditpipe_sink_write_duration_seconds', help: 'Duration of one write attempt of a sink.', labelNames: ['pipeline', 'sink'], buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers });
    this.sinkWrites = new Counter({ name: 'auditpipe_sink_writes_total', help: 'Sink write attempts by outcome (success, error, gave_up).', labelNames: ['pipeline', 'sink', 'outcome'], registers });
    this.sinkRetries = new Counter({ name: 'auditpipe_sink_retries_total', help: 'Retries scheduled after a failed sink write.', labelNames: ['pipeline', 'sink'], registers });
    this.sinkDropped = new Counter({ name: 'auditpipe_sink_batches_dropped_total', help: 'Batches a best-effort sink did not write (failed or over its in-flight bound).', labelNames: ['pipeline', 'sink'], registers });
    this.inFlightBatches = new Gauge({ name: 'auditpipe_in_flight_batches', help: 'Batches being written.', labelNames: ['pipeline'], registers });
    this.bufferedBytes = new Gauge({ name: 'auditpipe_buffered_bytes', help: 'Bytes of events held (buffered or in flight) by a pipeline.', labelNames: ['pipeline'], registers });
  }
}
