import { existsSync } from 'node:fs';
import path from 'node:path';
import { Counter, Gauge, type Registry } from 'prom-client';
import { sharedMetric, type Batch, type ComponentContext, type JsonValue, type Sink, type WriteResult, type EventId } from '../../public/index.ts';
import { chainStoreService } from '../../public/services.ts';
import { checkpointAnchorsService } from '../../public/services.ts';
import type { AnchoredCheckpointPayload, CheckpointAnchor, SignedCheckpoint } from '../../public/security.ts';
import { loadPrivateKeyEnv, loadPrivateKeyFile, writeKeyPair, type CheckpointKey } from '../../public/security.ts';
import { openEmbedded, openPostgres, type ChainDb } from './db.ts';
import { migrate } from './migrations.ts';
import { ChainStore } from './store.ts';

export interface PostgresSinkConfig {
  url: string;
  path: string;
  schema: string;
  pool_size: number;
  statement_timeout_ms: number;
  checkpoint_interval_ms: number;
  checkpoint_origin: string;
  checkpoint_key_file: string;
  checkpoint_key_env: string;
  checkpoint_key_generate: boolean;
}

/** Where the embedded store of a pipeline lives when `path` is not set. */
export function embeddedPath(config: Pick<PostgresSinkConfig, 'path'>, dataDir: string, configDir: string, pipeline: string): string {
  return config.path ? path.resolve(configDir, config.path) : path.join(dataDir, 'chain', pipeline);
}

/** Where a generated checkpoint key of a pipeline lives. */
export function generatedKeyPath(dataDir: string, pipeline: string): string {
  return path.join(dataDir, 'keys', `checkpoint-${pipeline}.key`);
}

function counter(registry: Registry, name: string, help: string): Counter<'pipeline'> {
  return sharedMetric(registry, name, () => new Counter({ name, help, labelNames: ['pipeline'], registers: [registry] }));
}

/**
 * The Postgres hash-chain sink (see README.md): per-actor chains in PostgreSQL or the embedded
 * PGlite store, signed checkpoints on a cadence and at shutdown.
 */
export class PostgresChainSink implements Sink {
  private readonly config: PostgresSinkConfig;
  private readonly ctx: ComponentContext;
  private db: ChainDb | undefined;
  private store: ChainStore | undefined;
  private key: CheckpointKey | undefined;
  private timer: NodeJS.Timeout | undefined;
  private checkpointing: Promise<unknown> = Promise.resolve();
  private readonly metrics;

  constructor(config: PostgresSinkConfig, ctx: ComponentContext) {
    this.config = config;
    this.ctx = ctx;
    const registry = ctx.metrics;
    this.metrics = {
      appended: counter(registry, 'auditpipe_chain_appended_total', 'Events appended to hash chains.'),
      duplicates: counter(registry, 'auditpipe_chain_duplicates_total', 'Redelivered events recognised by id and not appended again.'),
      rehashed: counter(registry, 'auditpipe_chain_rehashed_batches_total', 'Batches hashed again under the head locks because another writer (or a failed batch) had moved the heads they assumed.'),
      rejected: counter(registry, 'auditpipe_chain_rejected_total', 'Events the chain store could not store (dead-lettered).'),
      checkpoints: counter(registry, 'auditpipe_chain_checkpoints_total', 'Signed checkpoints written.'),
      checkpointFailures: counter(registry, 'auditpipe_chain_checkpoint_failures_total', 'Checkpoints that could not be written or anchored.'),
      lastCheckpoint: sharedMetric(registry, 'auditpipe_chain_last_checkpoint_timestamp_seconds',
        () => new Gauge({ name: 'auditpipe_chain_last_checkpoint_timestamp_seconds', help: 'Time of the last signed checkpoint.', labelNames: ['pipeline'], registers: [registry] })),
    };
  }

  private get origin(): string {
    return this.config.checkpoint_origin || `auditpipe/${this.ctx.pipeline}`;
  }

  async start(): Promise<void> {
    this.key = this.loadKey();
    const log = this.ctx.logger;
    this.db = this.config.url
      ? openPostgres({
        url: this.config.url,
        poolSize: this.config.pool_size,
        statementTimeoutMs: this.config.statement_timeout_ms,
        onError: (error) => log.warn({ err: error.message }, 'PostgreSQL connection lost; reconnecting on the next write'),
      })
      : await openEmbedded(embeddedPath(this.config, this.ctx.dataDir, this.ctx.configDir, this.ctx.pipeline), `pipeline ${this.ctx.pipeline}`);
    try {
      const store = new ChainStore(this.db, this.config.schema);
      await store.checkEncoding();
      const applied = await migrate(this.db, this.config.schema);
      this.store = store;
      log.info({ store: this.db.where, schema: this.config.schema, embedded: this.db.embedded, migrationsApplied: applied, checkpointKey: this.key.keyId }, 'chain store ready');
    } catch (error) {
      await this.db.close();
      throw new Error(`chain store ${this.db.where}: ${(error as Error).message}`);
    }
    this.ctx.provide(chainStoreService(this.ctx.pipeline), this.store);
    this.timer = setInterval(() => void this.checkpoint(), this.config.checkpoint_interval_ms);
    this.timer.unref();
  }

  private loadKey(): CheckpointKey {
    if (this.config.checkpoint_key_file) return loadPrivateKeyFile(path.resolve(this.ctx.configDir, this.config.checkpoint_key_file));
    const fromEnv = this.config.checkpoint_key_env ? loadPrivateKeyEnv(this.config.checkpoint_key_env) : undefined;
    if (fromEnv) return fromEnv;
    if (!this.config.checkpoint_key_generate) {
      throw new Error(`no checkpoint key: set "checkpoint_key_file" (create one with "auditpipe keygen --out FILE") or the environment variable ${this.config.checkpoint_key_env || '(checkpoint_key_env)'}`);
    }
    const file = generatedKeyPath(this.ctx.dataDir, this.ctx.pipeline);
    if (!existsSync(file)) {
      const written = writeKeyPair(file);
      this.ctx.logger.warn({ keyFile: written.privateFile, publicKeyFile: written.publicFile, keyId: written.keyId },
        'generated a checkpoint signing key under the data directory; production deployments must configure checkpoint_key_file or an environment variable instead');
    }
    return loadPrivateKeyFile(file);
  }

  async write(batch: Batch, signal?: AbortSignal): Promise<WriteResult> {
    const store = this.store;
    if (!store) throw new Error('chain store is not started');
    const labels = { pipeline: this.ctx.pipeline };
    // Batches run one transaction at a time per store (the next one hashed while the current
    // one is written); a batch whose attempt was given up before its turn never starts.
    const result = await store.append(batch.events, signal);
    this.metrics.appended.inc(labels, result.appended);
    if (result.duplicates > 0) this.metrics.duplicates.inc(labels, result.duplicates);
    if (result.rehashed > 0) this.metrics.rehashed.inc(labels, result.rehashed);
    if (result.rejected.length > 0) {
      this.metrics.rejected.inc(labels, result.rejected.length);
      this.ctx.logger.warn({ rejected: result.rejected.length, ids: result.rejected.slice(0, 10).map((r) => r.id) }, 'chain store rejected events; they go to the dead-letter destination');
    }
    const receipts = new Map<EventId, Record<string, JsonValue>>();
    for (const [id, position] of result.positions) {
      receipts.set(id, { sequence: position.sequence, previousHash: position.previousHash, hash: position.hash });
    }
    return { rejected: result.rejected, receipts };
  }

  healthy(): boolean {
    return this.db?.healthy() ?? false;
  }

  /** Writes one checkpoint now (one at a time), then hands it to every registered anchor. */
  checkpoint(): Promise<SignedCheckpoint | undefined> {
    const run = this.checkpointing.then(() => this.writeCheckpoint());
    this.checkpointing = run.catch(() => undefined);
    return run;
  }

  private async writeCheckpoint(): Promise<SignedCheckpoint | undefined> {
    if (!this.store || !this.key) return undefined;
    const labels = { pipeline: this.ctx.pipeline };
    let signed: AnchoredCheckpointPayload;
    try {
      signed = await this.store.writeCheckpoint(this.key, this.origin);
    } catch (error) {
      this.metrics.checkpointFailures.inc(labels);
      this.ctx.logger.error({ err: (error as Error).message }, 'checkpoint could not be written; retrying at the next interval');
      return undefined;
    }
    this.metrics.checkpoints.inc(labels);
    this.metrics.lastCheckpoint.set(labels, Date.parse(signed.time) / 1000);
    this.ctx.logger.debug({ number: signed.number, events: signed.events, actors: signed.actors }, 'checkpoint written');
    const token = checkpointAnchorsService(this.ctx.pipeline);
    const anchors = this.ctx.has(token) ? this.ctx.resolve(token) : [];
    for (const anchor of anchors) {
      try {
        await anchor.anchor(signed);
      } catch (error) {
        this.metrics.checkpointFailures.inc(labels);
        this.ctx.logger.error({ anchor: anchor.name, number: signed.number, err: (error as Error).message }, 'checkpoint anchor failed');
      }
    }
    return signed;
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.store) await this.checkpoint();
    this.store = undefined;
    await this.db?.close();
    this.db = undefined;
  }
}
