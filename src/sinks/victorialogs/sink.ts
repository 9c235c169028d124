import { promisify } from 'node:util';
import { gzip as gzipCallback } from 'node:zlib';
import { Counter, type Registry } from 'prom-client';
import { Pool } from 'undici';
import { sharedMetric, type Batch, type ComponentContext, type Sink } from '../../public/index.ts';
import type { VictoriaLogsSinkConfig } from './schema.ts';

const gzip = promisify(gzipCallback);
/** How much of an error answer is quoted in the error message. */
const MAX_ERROR_BODY_CHARS = 512;

/** A non-2xx answer from VictoriaLogs; `retryable` tells 429/5xx from other statuses. */
export class VictoriaLogsHttpError extends Error {
  override readonly name = 'VictoriaLogsHttpError';
  readonly status: number;
  readonly retryable: boolean;
  constructor(status: number, body: string) {
    super(`VictoriaLogs answered HTTP ${status}${body ? `: ${body}` : ''}`);
    this.status = status;
    this.retryable = status === 429 || status >= 500;
  }
}

/** Builds the ingest path with its query arguments; never concatenates user strings into a URL. */
export function ingestPath(config: VictoriaLogsSinkConfig): string {
  const base = new URL(config.url);
  const prefix = base.pathname.replace(/\/+$/, '');
  const path = `${prefix}/${config.path.replace(/^\/+/, '')}`;
  const query = new URLSearchParams();
  if (config.stream_fields.length > 0) query.set('_stream_fields', config.stream_fields.join(','));
  if (config.msg_field) query.set('_msg_field', config.msg_field);
  if (config.time_field) query.set('_time_field', config.time_field);
  if (config.ignore_fields.length > 0) query.set('ignore_fields', config.ignore_fields.join(','));
  const extra = Object.entries(config.extra_fields).map(([key, value]) => `${key}=${String(value)}`);
  if (extra.length > 0) query.set('extra_fields', extra.join(','));
  const search = query.toString();
  return search ? `${path}?${search}` : path;
}

/** Request headers: content type, tenant, compression, auth. */
export function requestHeaders(config: VictoriaLogsSinkConfig): Record<string, string> {
  const headers: Record<string, string> = { 'content-type': 'application/stream+json' };
  if (config.account_id !== 0 || config.project_id !== 0) {
    headers.AccountID = String(config.account_id);
    headers.ProjectID = String(config.project_id);
  }
  if (config.gzip) headers['content-encoding'] = 'gzip';
  if (config.bearer_token) headers.authorization = `Bearer ${config.bearer_token}`;
  else if (config.username) headers.authorization = `Basic ${Buffer.from(`${config.username}:${config.password}`).toString('base64')}`;
  return headers;
}

/**
 * NDJSON body: each event's `json`, one per line. `json` is `JSON.stringify` output, so it is
 * always one valid line (newlines inside strings are escaped).
 */
export function ndjson(batch: Batch): string {
  let body = '';
  for (const event of batch.events) body += event.json + '\n';
  return body;
}

function requestCounter(registry: Registry): Counter<'pipeline' | 'sink' | 'status'> {
  const name = 'auditpipe_victorialogs_requests_total';
  return sharedMetric(registry, name, () => new Counter({
    name,
    help: 'VictoriaLogs ingest requests by HTTP status ("error" when no answer came).',
    labelNames: ['pipeline', 'sink', 'status'],
    registers: [registry],
  }));
}

/**
 * Writes batches to VictoriaLogs `/insert/jsonline` over a keep-alive undici pool. Only a 2xx
 * answer counts as written; every other answer and every transport error throws, so the
 * pipeline retries with backoff and finally naks. VictoriaLogs cannot deduplicate: an event
 * redelivered after a lost ack is stored twice.
 */
export class VictoriaLogsSink implements Sink {
  private readonly config: VictoriaLogsSinkConfig;
  private readonly context: ComponentContext;
  private readonly pool: Pool;
  private readonly path: string;
  private readonly headers: Record<string, string>;
  private readonly requests: Counter<'pipeline' | 'sink' | 'status'>;
  private lastWriteOk = true;

  constructor(config: VictoriaLogsSinkConfig, context: ComponentContext) {
    this.config = config;
    this.context = context;
    const origin = new URL(config.url).origin;
    this.pool = new Pool(origin, {
      connections: config.connections,
      connectTimeout: config.connect_timeout_ms,
      headersTimeout: config.request_timeout_ms,
      bodyTimeout: config.request_timeout_ms,
      // VictoriaLogs closes idle keep-alive connections after its -http.headerReadTimeout (5 s by
      // default); dropping them first avoids sending a batch into a connection being closed.
      keepAliveTimeout: config.keep_alive_timeout_ms,
      keepAliveMaxTimeout: config.keep_alive_timeout_ms,
    });
    this.path = ingestPath(config);
    this.headers = requestHeaders(config);
    this.requests = requestCounter(context.metrics);
  }

  async start(): Promise<void> {
    // A VictoriaLogs that is down at start is not fatal: batches are retried and naked until it is up.
    // A controller cleared after the answer: a timeout signal left armed would later abort the
    // pooled connection while another request uses it.
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new Error('health check timed out')), this.config.connect_timeout_ms);
    try {
      const response = await this.pool.request({ method: 'GET', path: `${new URL(this.config.url).pathname.replace(/\/+$/, '')}/health`, headers: this.authOnly(), signal: controller.signal });
      await response.body.dump();
      if (response.statusCode >= 300) this.context.logger.warn({ status: response.statusCode }, 'VictoriaLogs health check failed; writes will be retried');
    } catch (error) {
      this.lastWriteOk = false;
      this.context.logger.warn({ err: (error as Error).message, url: new URL(this.config.url).origin }, 'VictoriaLogs is not reachable yet; writes will be retried');
    } finally {
      clearTimeout(timer);
    }
  }

  async write(batch: Batch, signal: AbortSignal): Promise<void> {
    const text = ndjson(batch);
    const body = this.config.gzip ? await gzip(text) : text;
    const labels = { pipeline: this.context.pipeline, sink: this.context.name };
    let response;
    try {
      response = await this.pool.request({ method: 'POST', path: this.path, headers: this.headers, body, signal });
    } catch (error) {
      this.lastWriteOk = false;
      this.requests.inc({ ...labels, status: 'error' });
      throw new Error(`VictoriaLogs request failed: ${(error as Error).message}`);
    }
    this.requests.inc({ ...labels, status: String(response.statusCode) });
    if (response.statusCode >= 200 && response.statusCode < 300) {
      await response.body.dump();
      this.lastWriteOk = true;
      return;
    }
    this.lastWriteOk = false;
    let detail = '';
    try {
      detail = (await response.body.text()).slice(0, MAX_ERROR_BODY_CHARS).trim();
    } catch {
      // The status alone is enough to fail the batch.
    }
    throw new VictoriaLogsHttpError(response.statusCode, detail);
  }

  healthy(): boolean {
    return this.lastWriteOk;
  }

  async close(): Promise<void> {
    await this.pool.close();
  }

  private authOnly(): Record<string, string> {
    return this.headers.authorization ? { authorization: this.headers.authorization } : {};
  }
}
