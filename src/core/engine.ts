import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { DependencyContainer } from 'tsyringe';
import type { ComponentContext, ServiceToken, Sink, Source, SourceContext } from './component.ts';
import type { AppConfig, PipelineConfig, SinkConfig } from './config.ts';
import type { Logger } from './logger.ts';
import { CoreMetrics } from './metrics.ts';
import { OpsEndpoints, type Readiness } from './ops.ts';
import { OPS_SERVICE } from '../public/services.ts';
import { Pipeline, type SinkSlot } from './pipeline.ts';
import type { ComponentRegistry } from './registry.ts';
import { DEFAULT_EVENT_LIMITS } from './event.ts';
import type { Envelope } from './types.ts';

export const LOGGER_TOKEN = 'auditpipe:logger';
export const METRICS_TOKEN = 'auditpipe:metrics';

type EngineState = 'created' | 'starting' | 'running' | 'draining' | 'stopped';

interface RunningPipeline {
  readonly config: PipelineConfig;
  readonly pipeline: Pipeline;
  readonly source: Source;
  readonly sinks: readonly Sink[];
}

/**
 * Builds every configured pipeline from the DI container, starts sinks before sources, and stops
 * in the reverse order: intake first, then the drain, then connections.
 */
export class Engine {
  readonly metrics: CoreMetrics;
  private readonly config: AppConfig;
  private readonly registry: ComponentRegistry;
  private readonly container: DependencyContainer;
  private readonly logger: Logger;
  private readonly running: RunningPipeline[] = [];
  private state: EngineState = 'created';
  private admin: Server | undefined;
  private stopping: Promise<void> | undefined;

  constructor(config: AppConfig, registry: ComponentRegistry, logger: Logger, metrics = new CoreMetrics()) {
    this.config = config;
    this.registry = registry;
    this.container = registry.container;
    this.logger = logger;
    this.metrics = metrics;
    this.container.register(LOGGER_TOKEN, { useValue: logger });
    this.container.register(METRICS_TOKEN, { useValue: metrics });
    this.container.register(OPS_SERVICE, { useValue: new OpsEndpoints(metrics.registry, () => this.readiness()) });
  }

  /** The running source of a pipeline (tests and tools use it to find bound addresses). */
  source(pipeline: string): Source | undefined {
    return this.running.find((r) => r.config.name === pipeline)?.source;
  }

  readiness(): Readiness {
    const problems: string[] = [];
    if (this.state !== 'running') problems.push(`engine is ${this.state}`);
    for (const { pipeline, config, sinks, source } of this.running) {
      if (source.healthy?.() === false) problems.push(`pipeline ${config.name}: source ${config.source.type} is disconnected`);
      for (const sink of pipeline.failingRequiredSinks()) problems.push(`pipeline ${config.name}: required sink ${sink} failed beyond its retry policy`);
      config.sinks.forEach((sinkConfig, i) => {
        if (sinkConfig.required && sinks[i]?.healthy?.() === false) problems.push(`pipeline ${config.name}: required sink ${sinkConfig.name} is down`);
      });
    }
    return { ready: problems.length === 0, state: this.state, problems };
  }

  async start(): Promise<void> {
    this.state = 'starting';
    mkdirSync(this.config.dataDir, { recursive: true });
    try {
      if (this.config.adminListen) this.admin = await this.startAdmin(this.config.adminListen);
      for (const pipelineConfig of this.config.pipelines) this.running.push(await this.startPipeline(pipelineConfig));
    } catch (error) {
      await this.closeAll();
      this.state = 'stopped';
      throw error;
    }
    this.state = 'running';
    this.logger.info({ pipelines: this.config.pipelines.map((p) => p.name) }, 'auditpipe started');
  }

  /** Graceful stop, bounded by `shutdown_timeout_ms`. Safe to call more than once. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const deadline = Date.now() + this.config.shutdownTimeoutMs;
    this.state = 'draining';
    this.logger.info({ timeoutMs: this.config.shutdownTimeoutMs }, 'shutting down: stopping intake and draining');
    await Promise.allSettled(this.running.map(({ source }) => source.stop()));
    await Promise.allSettled(this.running.map(({ pipeline }) => pipeline.drain(Math.max(0, deadline - Date.now()))));
    await this.closeAll();
    this.state = 'stopped';
    this.logger.info('auditpipe stopped');
  }

  private async closeAll(): Promise<void> {
    await Promise.allSettled(this.running.map(({ source }) => source.close()));
    await Promise.allSettled(this.running.flatMap(({ sinks }) => sinks.map((sink) => sink.close?.())));
    if (this.admin) await new Promise<void>((resolve) => this.admin!.close(() => resolve()));
    this.admin?.closeAllConnections();
  }

  private context(pipeline: PipelineConfig, name: string): ComponentContext {
    return {
      events: {
        actorField: pipeline.actorField,
        requireActor: pipeline.requireActor,
        limits: { ...DEFAULT_EVENT_LIMITS, maxEventBytes: pipeline.maxEventBytes },
      },
      pipeline: pipeline.name,
      name,
      logger: this.logger.child({ pipeline: pipeline.name, component: name }),
      metrics: this.metrics.registry,
      dataDir: this.config.dataDir,
      configDir: this.config.dir,
      resolve: <T>(token: ServiceToken<T>) => this.container.resolve<T>(token),
      has: (token: ServiceToken<unknown>) => this.container.isRegistered(token, true),
      provide: <T>(token: ServiceToken<T>, value: T) => {
        this.container.register(token, { useValue: value });
      },
    };
  }

  private async createSink(pipeline: PipelineConfig, config: SinkConfig): Promise<Sink> {
    const definition = this.registry.findSink(config.type);
    if (!definition) throw new Error(`pipeline ${pipeline.name}: unknown sink type ${config.type}`);
    return await definition.create(config.options, this.context(pipeline, config.name));
  }

  private async startPipeline(config: PipelineConfig): Promise<RunningPipeline> {
    const sinks: Sink[] = [];
    for (const sinkConfig of config.sinks) sinks.push(await this.createSink(config, sinkConfig));
    const deadLetterSink = config.deadLetter ? await this.createSink(config, config.deadLetter) : undefined;
    const all = deadLetterSink ? [...sinks, deadLetterSink] : sinks;
    const started = await Promise.allSettled(all.map((sink) => sink.start?.()));
    const failures = started.flatMap((result, i) => {
      if (result.status === 'fulfilled') return [];
      const name = i < sinks.length ? config.sinks[i]!.name : 'dead_letter';
      return [`pipeline ${config.name}: sink ${name} failed to start: ${(result.reason as Error)?.message ?? result.reason}`];
    });
    if (failures.length > 0) {
      await Promise.allSettled(all.map((sink) => sink.close?.()));
      throw new Error(failures.join('\n'));
    }

    const slot = (sink: Sink, sinkConfig: SinkConfig): SinkSlot => ({
      name: sinkConfig.name,
      sink,
      required: sinkConfig.required,
      retry: sinkConfig.retry,
      maxInFlight: sinkConfig.maxInFlight,
    });
    const pipeline = new Pipeline({
      name: config.name,
      batch: config.batch,
      sinks: sinks.map((sink, i) => slot(sink, config.sinks[i]!)),
      deadLetter: deadLetterSink && config.deadLetter ? slot(deadLetterSink, config.deadLetter) : undefined,
      nakDelayMs: config.nakDelayMs,
      progressIntervalMs: config.progressIntervalMs,
      logger: this.logger,
      metrics: this.metrics,
    });

    const definition = this.registry.findSource(config.source.type);
    if (!definition) throw new Error(`pipeline ${config.name}: unknown source type ${config.source.type}`);
    const source = await definition.create(config.source.options, this.context(config, 'source'));
    const received = this.metrics.received.labels({ pipeline: config.name, source: config.source.type });
    const sourceContext: SourceContext = {
      emit: (envelopes: readonly Envelope[]) => {
        received.inc(envelopes.length);
        return pipeline.emit(envelopes);
      },
      deadLetter: (entry) => pipeline.deadLetter([entry]),
      hasDeadLetter: () => config.deadLetter !== undefined,
      countRejected: (reason: string) => this.metrics.rejected.inc({ pipeline: config.name, reason }),
      ready: () => this.state === 'running' && !pipeline.isDraining(),
    };
    try {
      await source.start(sourceContext);
    } catch (error) {
      await Promise.allSettled(all.map((sink) => sink.close?.()));
      throw new Error(`pipeline ${config.name}: source ${config.source.type} failed to start: ${(error as Error).message}`);
    }
    return { config, pipeline, source, sinks: all };
  }

  private async startAdmin(listen: string): Promise<Server> {
    const ops = this.container.resolve<OpsEndpoints>(OPS_SERVICE);
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0]!;
      ops.handle(req, res, path).then((handled) => {
        if (!handled) {
          res.writeHead(404, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: 'not found', details: `no route ${path}` }));
        }
      }, (error: unknown) => {
        this.logger.error({ err: error }, 'admin endpoint failed');
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
    });
    const index = listen.lastIndexOf(':');
    const host = listen.slice(0, index).replace(/^\[|\]$/g, '');
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(Number(listen.slice(index + 1)), host, () => resolve());
    });
    this.logger.info({ listen }, 'admin endpoints listening (/metrics, /healthz, /readyz)');
    return server;
  }
}
