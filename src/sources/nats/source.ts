import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  AckPolicy, DeliverPolicy, jetstream, jetstreamManager, JetStreamApiError, RetentionPolicy, StorageType, StoreCompression,
  type Consumer, type ConsumerConfig, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg, type StreamConfig,
} from '@nats-io/jetstream';
import {
  connect, credsAuthenticator, headers as natsHeaders, nanos, type ConnectionOptions, type NatsConnection, type Subscription,
} from '@nats-io/transport-node';
import { Counter, Gauge, type Registry } from 'prom-client';
import type {
  AuditEvent, ComponentContext, Envelope, JsonObject, Outcome, Source, SourceContext,
} from '../../public/index.ts';
import { InvalidEventError, sharedMetric, toEvent } from '../../public/index.ts';
import { SignaturePolicy } from '../../public/security.ts';
import { integerActorEvent } from './auditstream/actor.ts';
import {
  deadLetterStream, deadLetterSubject, streamName, subjectName, type NatsSourceConfig,
} from './schema.ts';

/** Envelopes handed to the pipeline in one `emit` call at most. */
const EMIT_CHUNK = 256;
/** NATS header values must be one line; reasons are cut to this length. */
const MAX_HEADER_CHARS = 1024;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

interface NatsMetrics {
  pending: Gauge<'pipeline' | 'stream' | 'consumer'>;
  ackPending: Gauge<'pipeline' | 'stream' | 'consumer'>;
  redelivered: Gauge<'pipeline' | 'stream' | 'consumer'>;
  redeliveries: Counter<'pipeline' | 'stream'>;
  deadLettered: Counter<'pipeline' | 'destination' | 'reason'>;
  pullErrors: Counter<'pipeline'>;
}

function natsMetrics(registry: Registry): NatsMetrics {
  const registers = [registry];
  const consumerLabels = ['pipeline', 'stream', 'consumer'] as const;
  return {
    pending: sharedMetric(registry, 'auditpipe_nats_consumer_pending', () => new Gauge({ name: 'auditpipe_nats_consumer_pending', help: 'Messages in the stream not yet delivered to the consumer.', labelNames: consumerLabels, registers })),
    ackPending: sharedMetric(registry, 'auditpipe_nats_consumer_ack_pending', () => new Gauge({ name: 'auditpipe_nats_consumer_ack_pending', help: 'Messages delivered and awaiting an ack.', labelNames: consumerLabels, registers })),
    redelivered: sharedMetric(registry, 'auditpipe_nats_consumer_redelivered', () => new Gauge({ name: 'auditpipe_nats_consumer_redelivered', help: 'Messages the server is redelivering (consumer info num_redelivered).', labelNames: consumerLabels, registers })),
    redeliveries: sharedMetric(registry, 'auditpipe_nats_redeliveries_total', () => new Counter({ name: 'auditpipe_nats_redeliveries_total', help: 'Messages this process received with a delivery count above 1.', labelNames: ['pipeline', 'stream'], registers })),
    deadLettered: sharedMetric(registry, 'auditpipe_nats_dead_lettered_total', () => new Counter({ name: 'auditpipe_nats_dead_lettered_total', help: 'Messages copied to a dead-letter destination (pipeline sink or NATS subject) and terminated, by reason.', labelNames: ['pipeline', 'destination', 'reason'], registers })),
    pullErrors: sharedMetric(registry, 'auditpipe_nats_pull_errors_total', () => new Counter({ name: 'auditpipe_nats_pull_errors_total', help: 'Pulls that failed (disconnects, missing consumer); pulling resumes with backoff.', labelNames: ['pipeline'], registers })),
  };
}

function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ').slice(0, MAX_HEADER_CHARS);
}

function isApiError(error: unknown, code: number): boolean {
  return error instanceof JetStreamApiError && error.code === code;
}

const STREAM_NOT_FOUND = 10059;
const CONSUMER_NOT_FOUND = 10014;

/** One JetStream message in the pipeline; a redelivery of the same sequence joins it instead of being written twice. */
class NatsEnvelope implements Envelope {
  readonly event: AuditEvent;
  readonly messages: JsMsg[];
  private settled = false;
  private readonly onSettle: (envelope: NatsEnvelope, outcome: Outcome) => void;

  constructor(event: AuditEvent, message: JsMsg, onSettle: (envelope: NatsEnvelope, outcome: Outcome) => void) {
    this.event = event;
    this.messages = [message];
    this.onSettle = onSettle;
  }

  get seq(): number {
    return this.messages[0]!.seq;
  }

  settle(outcome: Outcome): void {
    if (this.settled) return;
    this.settled = true;
    this.onSettle(this, outcome);
  }

  inProgress(): void {
    if (this.settled) return;
    for (const message of this.messages) message.working();
  }
}

/**
 * JetStream source: a durable pull consumer with explicit acks on the WorkQueue stream
 * `{namespace}_{stream}`. Pulls only as much as the pipeline accepts, acks after every required
 * sink wrote, naks with a delay otherwise, and terminates poison messages after copying them to the
 * dead-letter destination.
 */
export class NatsSource implements Source {
  private readonly config: NatsSourceConfig;
  private readonly context: ComponentContext;
  private readonly stream: string;
  private readonly subject: string;
  private readonly dlqSubject: string;
  private readonly metrics: NatsMetrics;
  private readonly signatures: SignaturePolicy;
  private nc: NatsConnection | undefined;
  private connected = true;
  private jsm: JetStreamManager | undefined;
  private js: JetStreamClient | undefined;
  private consumer: Consumer | undefined;
  private pipeline: SourceContext | undefined;
  private running = false;
  private pull: ConsumerMessages | undefined;
  private loop: Promise<void> | undefined;
  /** Ends the backoff sleep of the pull loop early when stopping. */
  private wakeLoop: (() => void) | undefined;
  private advisories: Subscription | undefined;
  private metricsTimer: NodeJS.Timeout | undefined;
  /** Envelopes handed to the pipeline and not yet settled, by stream sequence. */
  private readonly inFlight = new Map<number, NatsEnvelope>();
  /** Dead-letter work still running (poison, max deliveries); awaited before closing. */
  private readonly tasks = new Set<Promise<void>>();

  constructor(config: NatsSourceConfig, context: ComponentContext) {
    this.config = config;
    this.context = context;
    this.stream = streamName(config);
    this.subject = subjectName(config);
    this.dlqSubject = deadLetterSubject(config);
    this.metrics = natsMetrics(context.metrics);
    this.signatures = SignaturePolicy.fromConfig(config, context);
  }

  /** The connection, for tests and tools. */
  connection(): NatsConnection | undefined {
    return this.nc;
  }

  async start(pipeline: SourceContext): Promise<void> {
    this.pipeline = pipeline;
    try {
      this.nc = await connect(this.connectOptions());
    } catch (error) {
      // The servers are named; credentials never are.
      throw new Error(`cannot connect to NATS at ${this.config.servers.join(', ')}: ${(error as Error).message}`);
    }
    try {
      this.jsm = await jetstreamManager(this.nc);
      this.js = jetstream(this.nc);
      await this.ensureStream(this.stream, this.subject, RetentionPolicy.Workqueue);
      await this.ensureDeadLetterStream();
      await this.ensureConsumer();
      this.consumer = await this.js.consumers.get(this.stream, this.config.consumer);
    } catch (error) {
      await this.nc.close().catch(() => undefined);
      throw error;
    }
    this.watchConnection(this.nc);
    this.advisories = this.nc.subscribe(`$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${this.stream}.${this.config.consumer}`, {
      callback: (error, msg) => {
        if (error) return;
        this.track(this.onMaxDeliveriesAdvisory(msg.data));
      },
    });
    this.metricsTimer = setInterval(() => void this.refreshMetrics(), this.config.metrics_interval_ms);
    this.metricsTimer.unref();
    this.running = true;
    this.loop = this.pullLoop();
    this.context.logger.info({ stream: this.stream, subject: this.subject, consumer: this.config.consumer }, 'nats source consuming');
  }

  /** Stops pulling; messages already received are still handed to the pipeline and settled. */
  async stop(): Promise<void> {
    this.running = false;
    this.pull?.stop();
    this.wakeLoop?.();
    await this.loop;
  }

  async close(): Promise<void> {
    this.running = false;
    if (this.metricsTimer) clearInterval(this.metricsTimer);
    await Promise.race([Promise.allSettled([...this.tasks]), new Promise((resolve) => setTimeout(resolve, 5_000).unref())]);
    this.advisories?.unsubscribe();
    const nc = this.nc;
    if (!nc || nc.isClosed()) return;
    // drain() flushes the acks still buffered before closing the connection.
    await Promise.race([nc.drain(), new Promise((resolve) => setTimeout(resolve, 5_000).unref())]).catch(() => undefined);
    if (!nc.isClosed()) await nc.close().catch(() => undefined);
  }

  healthy(): boolean {
    return this.connected && !(this.nc?.isClosed() ?? false);
  }

  private connectOptions(): ConnectionOptions {
    const config = this.config;
    const options: ConnectionOptions = {
      servers: config.servers,
      name: `auditpipe:${this.context.pipeline}`,
      timeout: config.connect_timeout_ms,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 1_000,
      waitOnFirstConnect: false,
      // Async stack traces for every request cost more CPU than the pull loop itself at high rates.
      noAsyncTraces: true,
      // A server that stops answering (hung, not closed) is found by missed pings: after 10-15 s,
      // where the client's default (2 min x 2) kept /readyz green for minutes
      // (docs/reliability.md, outages). A pong late by 10 s means an event loop or a network too
      // slow to trust anyway; the client then reconnects, and unacked messages are redelivered.
      pingInterval: 5_000,
      maxPingOut: 2,
    };
    if (config.token) options.token = config.token;
    if (config.user) {
      options.user = config.user;
      options.pass = config.password;
    }
    if (config.creds_file) {
      const file = path.resolve(this.context.configDir, config.creds_file);
      let creds: Uint8Array;
      try {
        creds = readFileSync(file);
      } catch (error) {
        throw new Error(`cannot read NATS creds_file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
      }
      options.authenticator = credsAuthenticator(creds);
    }
    const tls = config.tls;
    if (tls.ca_file || tls.cert_file || tls.handshake_first) {
      options.tls = {
        ...(tls.ca_file ? { caFile: path.resolve(this.context.configDir, tls.ca_file) } : {}),
        ...(tls.cert_file ? { certFile: path.resolve(this.context.configDir, tls.cert_file), keyFile: path.resolve(this.context.configDir, tls.key_file) } : {}),
        ...(tls.handshake_first ? { handshakeFirst: true } : {}),
      };
    }
    return options;
  }

  private watchConnection(nc: NatsConnection): void {
    void (async () => {
      for await (const status of nc.status()) {
        if (status.type === 'disconnect') {
          this.connected = false;
          this.context.logger.warn({ server: status.server }, 'nats disconnected; reconnecting');
        } else if (status.type === 'reconnect') {
          this.connected = true;
          this.context.logger.info({ server: status.server }, 'nats reconnected');
        }
      }
    })().catch(() => undefined);
  }

  /**
   * Creates the stream when missing. An existing stream is never changed: limits, replicas and
   * retention an operator set stay as they are; only a subject that cannot work is an error.
   */
  private async ensureStream(name: string, subject: string, retention: typeof RetentionPolicy[keyof typeof RetentionPolicy]): Promise<void> {
    const jsm = this.jsm!;
    try {
      const info = await jsm.streams.info(name);
      if (!(info.config.subjects ?? []).some((pattern) => subjectMatches(pattern, subject))) {
        throw new Error(`stream ${name} exists but does not capture subject ${subject} (its subjects: ${(info.config.subjects ?? []).join(', ') || 'none'}); add the subject or change namespace/stream`);
      }
      if (info.config.retention !== retention) {
        this.context.logger.warn({ stream: name, retention: info.config.retention, expected: retention }, 'existing stream has another retention policy; left unchanged');
      }
      return;
    } catch (error) {
      if (!isApiError(error, STREAM_NOT_FOUND)) throw error;
    }
    const defaults = this.config.stream_defaults;
    const config: Partial<StreamConfig> & { name: string } = {
      name,
      subjects: [subject],
      retention,
      storage: StorageType.File,
      compression: StoreCompression.S2,
      num_replicas: defaults.replicas,
      max_age: nanos(defaults.max_age_ms),
      max_bytes: defaults.max_bytes,
      duplicate_window: nanos(defaults.duplicate_window_ms),
    };
    try {
      await jsm.streams.add(config);
      this.context.logger.info({ stream: name, subject, retention }, 'stream created');
    } catch (error) {
      // Another process may have created it at the same moment.
      const info = await jsm.streams.info(name).catch(() => undefined);
      if (!info) throw error;
    }
  }

  /** The dead-letter subject needs some stream; one an operator already set up to capture it is fine too. */
  private async ensureDeadLetterStream(): Promise<void> {
    const owner = await this.jsm!.streams.find(this.dlqSubject).catch(() => undefined);
    if (owner) {
      this.context.logger.info({ stream: owner, subject: this.dlqSubject }, 'dead-letter subject captured by an existing stream');
      return;
    }
    await this.ensureStream(deadLetterStream(this.config), this.dlqSubject, RetentionPolicy.Limits);
  }

  /** Creates the durable consumer, or brings the settings auditpipe owns (ack wait, deliveries) in line. */
  private async ensureConsumer(): Promise<void> {
    const jsm = this.jsm!;
    const config = this.config;
    const desired: Partial<ConsumerConfig> = {
      durable_name: config.consumer,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: this.subject,
      ack_wait: nanos(config.ack_wait_ms),
      max_deliver: config.max_deliver,
      max_ack_pending: config.max_ack_pending,
    };
    let existing;
    try {
      existing = await jsm.consumers.info(this.stream, config.consumer);
    } catch (error) {
      if (!isApiError(error, CONSUMER_NOT_FOUND)) throw error;
    }
    if (!existing) {
      try {
        await jsm.consumers.add(this.stream, desired);
        this.context.logger.info({ stream: this.stream, consumer: config.consumer }, 'durable consumer created');
        return;
      } catch (error) {
        existing = await jsm.consumers.info(this.stream, config.consumer).catch(() => undefined);
        if (!existing) throw new Error(`cannot create consumer ${config.consumer} on stream ${this.stream}: ${(error as Error).message}`);
      }
    }
    const current = existing.config;
    if (current.ack_policy !== AckPolicy.Explicit) {
      throw new Error(`consumer ${config.consumer} on stream ${this.stream} has ack policy "${current.ack_policy}"; auditpipe needs "explicit" (use another consumer name)`);
    }
    if (current.filter_subject && current.filter_subject !== this.subject) {
      throw new Error(`consumer ${config.consumer} on stream ${this.stream} filters ${current.filter_subject}, not ${this.subject}`);
    }
    const changed = current.ack_wait !== desired.ack_wait || current.max_deliver !== desired.max_deliver || current.max_ack_pending !== desired.max_ack_pending;
    if (changed) {
      await jsm.consumers.update(this.stream, config.consumer, {
        ack_wait: desired.ack_wait,
        max_deliver: desired.max_deliver,
        max_ack_pending: desired.max_ack_pending,
      });
      this.context.logger.info({ consumer: config.consumer, ack_wait_ms: config.ack_wait_ms, max_deliver: config.max_deliver, max_ack_pending: config.max_ack_pending }, 'consumer settings updated');
    }
  }

  /** Pulls one batch at a time and hands it over, awaiting the pipeline: that is the backpressure. */
  private async pullLoop(): Promise<void> {
    let failures = 0;
    while (this.running) {
      let chunk: NatsEnvelope[] = [];
      try {
        const pull = await this.consumer!.fetch({ max_messages: this.config.pull_batch, expires: this.config.pull_expires_ms });
        this.pull = pull;
        if (!this.running) pull.stop();
        for await (const message of pull) {
          const envelope = this.receive(message);
          if (envelope) chunk.push(envelope);
          if (chunk.length >= EMIT_CHUNK || (chunk.length > 0 && pull.getPending() === 0)) {
            const handed = chunk;
            chunk = [];
            await this.hand(handed);
          }
        }
        if (chunk.length > 0) await this.hand(chunk);
        failures = 0;
      } catch (error) {
        // Received but not handed over: give them back at once rather than after the ack wait.
        for (const envelope of chunk.splice(0)) envelope.settle({ kind: 'nak', delayMs: 0, reason: 'pull interrupted' });
        if (!this.running) break;
        failures += 1;
        this.metrics.pullErrors.inc({ pipeline: this.context.pipeline });
        const delay = Math.min(5_000, 100 * 2 ** Math.min(failures, 6));
        this.context.logger.warn({ err: (error as Error).message, retryInMs: delay }, 'nats pull failed; retrying');
        if (isApiError(error, CONSUMER_NOT_FOUND) || isApiError(error, STREAM_NOT_FOUND) || /not found/i.test((error as Error).message)) {
          await this.recreate().catch((e: unknown) => this.context.logger.error({ err: (e as Error).message }, 'cannot recreate stream/consumer'));
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay);
          this.wakeLoop = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wakeLoop = undefined;
      } finally {
        this.pull = undefined;
      }
    }
  }

  private async recreate(): Promise<void> {
    await this.ensureStream(this.stream, this.subject, RetentionPolicy.Workqueue);
    await this.ensureConsumer();
    this.consumer = await this.js!.consumers.get(this.stream, this.config.consumer);
  }

  /** Gives envelopes to the pipeline; if it no longer takes any, they are naked for another process. */
  private async hand(envelopes: NatsEnvelope[]): Promise<void> {
    for (const envelope of envelopes) this.inFlight.set(envelope.seq, envelope);
    try {
      await this.pipeline!.emit(envelopes);
    } catch (error) {
      for (const envelope of envelopes) envelope.settle({ kind: 'nak', delayMs: 0, reason: (error as Error).message });
      if (this.running) throw error;
    }
  }

  /** Turns one message into an envelope; poison goes to the dead-letter path, redeliveries join their twin. */
  private receive(message: JsMsg): NatsEnvelope | undefined {
    const info = message.info;
    if (info.deliveryCount > 1) this.metrics.redeliveries.inc({ pipeline: this.context.pipeline, stream: this.stream });
    const twin = this.inFlight.get(message.seq);
    if (twin) {
      // Ack wait passed while the first delivery is still being written: settle both together.
      twin.messages.push(message);
      message.working();
      return undefined;
    }
    let value: unknown;
    try {
      value = JSON.parse(strictUtf8.decode(message.data));
    } catch (error) {
      this.poison(message, 'malformed_json', `payload is not valid UTF-8 JSON: ${(error as Error).message}`);
      return undefined;
    }
    let event: AuditEvent;
    try {
      event = this.toEvent(value, message);
    } catch (error) {
      if (!(error instanceof InvalidEventError)) throw error;
      this.poison(message, 'invalid_event', error.message);
      return undefined;
    }
    const verdict = this.signatures.check(value as JsonObject, event.actorId, event.receivedAt);
    if (!verdict.ok) {
      this.poison(message, 'signature', verdict.message);
      return undefined;
    }
    return new NatsEnvelope(this.signatures.withVerifiedFormat(event, verdict), message, this.settleEnvelope);
  }

  private toEvent(value: unknown, message: JsMsg): AuditEvent {
    // Decoding the headers costs per message; they are read only when the event brings no id.
    const hasId = value !== null && typeof value === 'object' && (value as JsonObject).id !== undefined;
    const fallbackId = hasId ? undefined : message.headers?.get('Nats-Msg-Id') || `${this.stream}:${message.seq}`;
    const { actorField, limits, requireActor } = this.context.events;
    const options = { actorField, fallbackId, limits, requireActor };
    return integerActorEvent(value, options) ?? toEvent(value, options);
  }

  private readonly settleEnvelope = (envelope: NatsEnvelope, outcome: Outcome): void => this.settle(envelope, outcome);

  private settle(envelope: NatsEnvelope, outcome: Outcome): void {
    if (this.inFlight.get(envelope.seq) === envelope) this.inFlight.delete(envelope.seq);
    const messages = envelope.messages;
    if (outcome.kind === 'ack') {
      for (const message of messages) message.ack();
      return;
    }
    if (outcome.kind === 'term') {
      // The pipeline terms only after its dead_letter sink stored the event; without one, keep a copy on the subject.
      if (this.pipeline!.hasDeadLetter()) {
        for (const message of messages) message.term(oneLine(outcome.reason));
      } else {
        this.track(this.copyToSubjectThenTerm(messages, outcome.reason, 'rejected'));
      }
      return;
    }
    const last = messages[messages.length - 1]!;
    const deliveries = last.info.deliveryCount;
    if (this.config.max_deliver > 0 && deliveries >= this.config.max_deliver) {
      const reason = `max deliveries (${this.config.max_deliver}) reached; last failure: ${outcome.reason}`;
      this.track(this.deadLetterThenTerm(messages, reason, 'max_deliver', envelope.event));
      return;
    }
    const delay = this.nakDelay(outcome.delayMs, deliveries);
    for (const message of messages) message.nak(delay);
  }

  /** The pipeline's delay, raised to the configured backoff step for this delivery count. */
  nakDelay(pipelineDelayMs: number, deliveryCount: number): number {
    const steps = this.config.nak_backoff_ms;
    if (steps.length === 0) return pipelineDelayMs;
    return Math.max(pipelineDelayMs, steps[Math.min(deliveryCount, steps.length) - 1]!);
  }

  private poison(message: JsMsg, kind: string, reason: string): void {
    this.pipeline!.countRejected(kind);
    this.track(this.deadLetterThenTerm([message], reason, kind, undefined));
  }

  /**
   * Copies a message to the dead-letter destination, then terminates it. The pipeline's dead_letter
   * sink is used when it has one, else the NATS dead-letter subject. If the copy fails the message is
   * naked instead, so it is never dropped without a trace.
   */
  private async deadLetterThenTerm(messages: JsMsg[], reason: string, kind: string, event: AuditEvent | undefined): Promise<void> {
    const first = messages[0]!;
    const origin = `nats:${this.stream}#${first.seq}`;
    try {
      const stored = await this.pipeline!.deadLetter(event ? { reason, event, origin } : { reason, raw: first.data, origin });
      if (stored === 'none') await this.publishDeadLetter(first.data, first.headers?.get('Nats-Msg-Id'), first.seq, first.info.deliveryCount, reason, first.subject);
      this.metrics.deadLettered.inc({ pipeline: this.context.pipeline, destination: stored === 'stored' ? 'pipeline' : 'subject', reason: kind });
      for (const message of messages) message.term(oneLine(reason));
    } catch (error) {
      this.context.logger.error({ err: (error as Error).message, seq: first.seq }, 'dead-letter copy failed; naking instead of terminating');
      for (const message of messages) message.nak(this.nakDelay(5_000, message.info.deliveryCount));
    }
  }

  private async copyToSubjectThenTerm(messages: JsMsg[], reason: string, kind: string): Promise<void> {
    const first = messages[0]!;
    try {
      await this.publishDeadLetter(first.data, first.headers?.get('Nats-Msg-Id'), first.seq, first.info.deliveryCount, reason, first.subject);
      this.metrics.deadLettered.inc({ pipeline: this.context.pipeline, destination: 'subject', reason: kind });
      for (const message of messages) message.term(oneLine(reason));
    } catch (error) {
      this.context.logger.error({ err: (error as Error).message, seq: first.seq }, 'dead-letter copy failed; naking instead of terminating');
      for (const message of messages) message.nak(this.nakDelay(5_000, message.info.deliveryCount));
    }
  }

  /** JetStream-acked publish of the original payload to the dead-letter subject, the reason in headers. */
  private async publishDeadLetter(data: Uint8Array, msgId: string | undefined, seq: number, deliveries: number, reason: string, subject: string): Promise<void> {
    const hdrs = natsHeaders();
    hdrs.set('Auditpipe-Reason', oneLine(reason));
    hdrs.set('Auditpipe-Pipeline', this.context.pipeline);
    hdrs.set('Auditpipe-Stream', this.stream);
    hdrs.set('Auditpipe-Stream-Seq', String(seq));
    hdrs.set('Auditpipe-Subject', subject);
    hdrs.set('Auditpipe-Deliveries', String(deliveries));
    if (msgId) hdrs.set('Auditpipe-Msg-Id', oneLine(msgId));
    // The id makes copies from several processes (or a retried copy) one message.
    await this.js!.publish(this.dlqSubject, data, { headers: hdrs, msgID: `dlq:${this.stream}:${seq}`, timeout: 10_000 });
  }

  /**
   * The server gave up on a message (max deliveries passed without an ack, e.g. a process died
   * holding it): copy it to the dead-letter destination and remove it from the work queue.
   */
  private async onMaxDeliveriesAdvisory(data: Uint8Array): Promise<void> {
    let advisory: { stream_seq?: number; deliveries?: number };
    try {
      advisory = JSON.parse(new TextDecoder().decode(data));
    } catch {
      return;
    }
    const seq = advisory.stream_seq;
    if (!Number.isSafeInteger(seq) || !this.jsm) return;
    const stored = await this.jsm.streams.getMessage(this.stream, { seq: seq! }).catch(() => null);
    if (!stored) return;
    const reason = `max deliveries (${advisory.deliveries ?? this.config.max_deliver}) reached without an ack`;
    try {
      const result = await this.pipeline!.deadLetter({ reason, raw: stored.data, origin: `nats:${this.stream}#${seq}` });
      if (result === 'none') await this.publishDeadLetter(stored.data, stored.header?.get('Nats-Msg-Id'), seq!, advisory.deliveries ?? 0, reason, stored.subject);
      this.metrics.deadLettered.inc({ pipeline: this.context.pipeline, destination: result === 'stored' ? 'pipeline' : 'subject', reason: 'max_deliver' });
      await this.jsm.streams.deleteMessage(this.stream, seq!, false).catch(() => false);
    } catch (error) {
      this.context.logger.error({ err: (error as Error).message, seq }, 'cannot dead-letter a message past max deliveries; it stays in the stream');
    }
  }

  private async refreshMetrics(): Promise<void> {
    try {
      const info = await this.jsm!.consumers.info(this.stream, this.config.consumer);
      const labels = { pipeline: this.context.pipeline, stream: this.stream, consumer: this.config.consumer };
      this.metrics.pending.set(labels, info.num_pending);
      this.metrics.ackPending.set(labels, info.num_ack_pending);
      this.metrics.redelivered.set(labels, info.num_redelivered);
    } catch {
      // Disconnected: the gauges keep their last value until the next refresh works.
    }
  }

  private track(task: Promise<void>): void {
    const guarded = task.catch((error: unknown) => this.context.logger.error({ err: (error as Error).message }, 'nats background task failed'));
    this.tasks.add(guarded);
    void guarded.finally(() => this.tasks.delete(guarded));
  }
}

/** NATS subject matching: `*` is one token, `>` the rest (at least one token). */
export function subjectMatches(pattern: string, subject: string): boolean {
  const want = pattern.split('.');
  const got = subject.split('.');
  for (let i = 0; i < want.length; i += 1) {
    if (want[i] === '>') return got.length > i;
    if (i >= got.length || (want[i] !== '*' && want[i] !== got[i])) return false;
  }
  return want.length === got.length;
}
