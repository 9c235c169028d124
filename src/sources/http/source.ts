import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as promClient from 'prom-client';
import type {
  AuditEvent, ComponentContext, Envelope, JsonObject, JsonValue, Outcome, Source, SourceContext,
} from '../../public/index.ts';
import { InvalidEventError, toEvent } from '../../public/index.ts';
import { chainStoreService, OPS_SERVICE } from '../../public/services.ts';
import { SignaturePolicy } from '../../public/security.ts';
import { type Scope, TokenAuthenticator } from '../../public/security.ts';
import { BodyError, discardBody, limitServer, ndjsonLines, parseJsonBody, readBody, serverOptions } from './body.ts';
import { ArgusValidationError, argusRecord, argusToNative, loadArgusEnums, type ArgusEnums } from './argus/records.ts';
import { CorsPolicy } from './cors.ts';
import { auditSummary, listAuditLogs, parseListQuery, ReadApiError, recordWithPosition, type ArgusReadStore } from './argus/read-api.ts';
import type { HttpSourceConfig } from './schema.ts';

class HttpError extends Error {
  readonly status: number;
  readonly details: string;
  readonly headers: Record<string, string>;
  constructor(status: number, error: string, details: string, headers: Record<string, string> = {}) {
    super(error);
    this.status = status;
    this.details = details;
    this.headers = headers;
  }
}

type ItemFailure = { index: number; error: string };
type Parsed = { events: Array<{ index: number; event: AuditEvent }>; failed: ItemFailure[] };

const JSON_TYPES = new Set(['application/json', 'text/json']);
const NDJSON_TYPES = new Set(['application/x-ndjson', 'application/ndjson', 'application/jsonl', 'application/jsonlines', 'application/x-jsonlines']);

interface Handler {
  readonly scope: Scope;
  handle(req: IncomingMessage, res: ServerResponse, params: RouteParams): Promise<void>;
}

interface RouteParams {
  readonly query: URLSearchParams;
  /** The `{id}` of `/api/audit-logs/{id}`. */
  readonly id?: string;
}

/** One path (or path template) and a handler per method; the scope depends on the method. */
interface Route {
  readonly template: string;
  readonly methods: ReadonlyMap<string, Handler>;
}

const MAX_ID_PARAM_CHARS = 256;

/**
 * HTTP intake: native NDJSON/JSON on `POST /v1/events` and argus's write API. A request is
 * answered only once the pipeline settled every event it carried, so a 2xx means written.
 */
export class HttpSource implements Source {
  private readonly config: HttpSourceConfig;
  private readonly context: ComponentContext;
  private readonly auth: TokenAuthenticator;
  private readonly enums: ArgusEnums;
  private readonly routes: ReadonlyMap<string, Route>;
  private readonly byIdRoute: Route;
  private readonly cors: CorsPolicy;
  private readonly signatures: SignaturePolicy;
  private readonly metrics: HttpMetrics;
  private readonly argusMetrics: ArgusMetrics | undefined;
  private server: Server | undefined;
  private pipeline: SourceContext | undefined;
  private accepting = false;

  constructor(config: HttpSourceConfig, context: ComponentContext, signatures?: SignaturePolicy) {
    this.config = config;
    this.context = context;
    this.signatures = signatures ?? SignaturePolicy.fromConfig(config, context);
    this.auth = new TokenAuthenticator(config.tokens, config.auth_required);
    this.enums = loadArgusEnums(config.argus.enums_file || undefined);
    this.cors = new CorsPolicy(config.cors);
    const route = (template: string, handlers: Record<string, Handler>): [string, Route] => [template, { template, methods: new Map(Object.entries(handlers)) }];
    this.routes = new Map<string, Route>([
      route('/v1/events', { POST: { scope: 'ingest', handle: (req, res) => this.ingestNative(req, res) } }),
      route('/api/audit-logs', {
        POST: { scope: 'ingest', handle: (req, res) => this.ingestArgus(req, res, false) },
        GET: { scope: 'read', handle: (_req, res, params) => this.listLogs(res, params) },
      }),
      route('/api/audit-logs/bulk', { POST: { scope: 'ingest', handle: (req, res) => this.ingestArgus(req, res, true) } }),
      route('/api/audit-summary', { GET: { scope: 'read', handle: (_req, res) => this.summary(res) } }),
    ]);
    this.byIdRoute = route('/api/audit-logs/{id}', { GET: { scope: 'read', handle: (_req, res, params) => this.getLog(res, params) } })[1];
    this.metrics = httpMetrics(context);
    this.argusMetrics = config.argus.metrics ? argusMetrics(context) : undefined;
  }

  /** The bound address, e.g. for tests that listen on port 0. */
  address(): AddressInfo | undefined {
    return this.server?.address() as AddressInfo | undefined;
  }

  async start(pipeline: SourceContext): Promise<void> {
    this.pipeline = pipeline;
    const server = createServer(serverOptions(this.config), (req, res) => {
      void this.dispatch(req, res);
    });
    limitServer(server, this.config);
    const index = this.config.listen.lastIndexOf(':');
    const host = this.config.listen.slice(0, index).replace(/^\[|\]$/g, '');
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(Number(this.config.listen.slice(index + 1)), host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    this.accepting = true;
    const address = server.address() as AddressInfo;
    this.context.logger.info({ address: `${address.address}:${address.port}`, auth: this.auth.required }, 'http source listening');
  }

  async stop(): Promise<void> {
    this.accepting = false;
    // Stop accepting connections; requests already in progress still get their answer.
    this.server?.close();
    this.server?.closeIdleConnections();
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        server.closeAllConnections();
        resolve();
      }, 2_000);
      server.close(() => {
        clearTimeout(timer);
        resolve();
      });
      server.closeIdleConnections();
    });
  }

  /** The route for a path, with the `{id}` of `/api/audit-logs/{id}` when it is that one. */
  private match(path: string): { route: Route; id?: string } | undefined {
    const route = this.routes.get(path);
    if (route) return { route };
    const prefix = '/api/audit-logs/';
    if (path.startsWith(prefix) && path.length > prefix.length && !path.slice(prefix.length).includes('/')) {
      return { route: this.byIdRoute, id: path.slice(prefix.length) };
    }
    return undefined;
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const [path, search] = splitUrl(req.url ?? '/');
    const ops = this.context.has(OPS_SERVICE) ? this.context.resolve(OPS_SERVICE) : undefined;
    const matched = this.match(path);
    const template = matched ? matched.route.template : ops?.route(path) ?? (path === '/health' || path === '/version' ? path : 'unmatched');
    res.on('finish', () => {
      const seconds = (performance.now() - started) / 1000;
      this.metrics.requests.inc({ pipeline: this.context.pipeline, route: template, status: String(res.statusCode) });
      this.metrics.duration.observe({ pipeline: this.context.pipeline, route: template }, seconds);
      // argus labelled by raw path (unbounded); the route template keeps the label set bounded.
      this.argusMetrics?.requests.inc({ path: template, method: methodLabel(req.method), status: String(res.statusCode) });
      this.argusMetrics?.duration.observe({ path: template, method: methodLabel(req.method) }, seconds);
    });
    try {
      this.cors.apply(req, res);
      // Browsers send preflights without credentials: answer them before authentication.
      if (this.cors.enabled && this.cors.isPreflight(req)) return this.cors.answerPreflight(req, res);
      if (ops && (await ops.handle(req, res, path))) return;
      if (path === '/health') return sendJson(res, 200, { service: this.config.service_name, status: 'healthy' });
      if (path === '/version') {
        return sendJson(res, 200, { version: this.config.version, buildTime: this.config.build_time, gitCommit: this.config.git_commit, service: this.config.service_name });
      }
      if (!matched) throw new HttpError(404, 'not found', `no route for ${path}`);
      const handler = matched.route.methods.get(req.method ?? '');
      if (!handler) {
        const allowed = [...matched.route.methods.keys()].join(', ');
        throw new HttpError(405, 'method not allowed', `${matched.route.template} answers ${allowed}`, { allow: allowed });
      }
      const auth = this.auth.check(req.headers.authorization, handler.scope);
      if (!auth.ok) throw new HttpError(auth.status, auth.status === 401 ? 'unauthorized' : 'forbidden', auth.reason, auth.status === 401 ? { 'www-authenticate': 'Bearer' } : {});
      if (!this.accepting || (handler.scope === 'ingest' && !this.pipeline?.ready())) {
        throw new HttpError(503, 'unavailable', 'auditpipe is starting or shutting down', { 'retry-after': '1' });
      }
      await handler.handle(req, res, { query: new URLSearchParams(search), id: matched.id });
    } catch (error) {
      if (error instanceof ReadApiError) {
        sendJson(res, error.status, { error: error.status === 404 ? 'not found' : 'invalid query', details: error.message });
        return;
      }
      if (error instanceof HttpError || error instanceof BodyError) {
        if (error.status === 413) await discardBody(req, Math.min(this.config.request_timeout_ms, 5_000));
        sendJson(res, error.status, { error: error.message, details: error.details }, error.headers);
        return;
      }
      this.context.logger.error({ err: error, route: template }, 'request failed');
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error', details: 'see the server log' });
      else res.end();
    }
  }

  private readBody(req: IncomingMessage): Promise<Buffer> {
    return readBody(req, this.config.max_body_bytes);
  }

  private mediaType(req: IncomingMessage): string {
    const header = req.headers['content-type'];
    return header ? header.split(';')[0]!.trim().toLowerCase() : 'application/json';
  }

  private toEvent(value: unknown): AuditEvent {
    return toEvent(value, this.context.events);
  }

  /** The body's JSON value; `itemErrors` fails items of a top-level array alone (body.ts). */
  private parseJson(body: Buffer): { value: unknown; itemErrors: ReadonlyMap<number, string> } {
    try {
      return parseJsonBody(body, this.config.max_json_depth);
    } catch (error) {
      this.pipeline?.countRejected('malformed_json');
      throw error;
    }
  }

  private checkCount(count: number): void {
    if (count > this.config.max_events_per_request) {
      this.pipeline?.countRejected('too_many_events');
      throw new HttpError(413, 'too many events', `request holds ${count} events; the limit is ${this.config.max_events_per_request}`);
    }
  }

  /** `POST /v1/events`: one object, an array, or NDJSON. Invalid items fail alone (207). */
  private async ingestNative(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const type = this.mediaType(req);
    const ndjson = NDJSON_TYPES.has(type);
    if (!ndjson && !JSON_TYPES.has(type)) {
      throw new HttpError(415, 'unsupported media type', `send application/json or application/x-ndjson, not ${type}`);
    }
    const body = await this.readBody(req);
    const items: Array<{ index: number; value?: unknown; error?: string }> = [];
    if (ndjson) {
      for (const line of ndjsonLines(body, this.config.max_json_depth)) items.push(line);
    } else {
      const { value, itemErrors } = this.parseJson(body);
      (Array.isArray(value) ? value : [value]).forEach((item, index) => items.push({ index, value: item, error: itemErrors.get(index) }));
    }
    if (items.length === 0) throw new HttpError(400, 'no events', 'the request holds no event');
    this.checkCount(items.length);

    const parsed: Parsed = { events: [], failed: [] };
    for (const item of items) {
      if (item.error !== undefined) {
        this.pipeline?.countRejected('malformed_json');
        parsed.failed.push({ index: item.index, error: item.error });
        continue;
      }
      let event: AuditEvent;
      try {
        event = this.toEvent(item.value);
      } catch (error) {
        if (!(error instanceof InvalidEventError)) throw error;
        this.pipeline?.countRejected('invalid_event');
        parsed.failed.push({ index: item.index, error: error.message });
        continue;
      }
      const checked = this.checkSignature(item.value as JsonObject, event);
      if (checked.error) parsed.failed.push({ index: item.index, error: checked.error });
      else parsed.events.push({ index: item.index, event: checked.event });
    }
    if (parsed.events.length === 0) {
      return sendJson(res, 400, { error: 'no valid event', details: parsed.failed[0]?.error ?? 'invalid', failed: parsed.failed });
    }
    const outcomes = await this.submit(parsed.events.map((e) => e.event));
    const ids: string[] = [];
    let unavailable: string | undefined;
    const retryAfter = { value: 1 };
    outcomes.forEach((outcome, i) => {
      const { index, event } = parsed.events[i]!;
      if (outcome.kind === 'ack') ids.push(event.id);
      else if (outcome.kind === 'term') parsed.failed.push({ index, error: outcome.reason });
      else {
        unavailable ??= outcome.reason;
        retryAfter.value = Math.max(retryAfter.value, Math.ceil(outcome.delayMs / 1000));
      }
    });
    if (unavailable !== undefined) {
      return sendJson(res, 503, { error: 'not written', details: unavailable, written: ids }, { 'retry-after': String(retryAfter.value) });
    }
    parsed.failed.sort((a, b) => a.index - b.index);
    if (ids.length === 0) return sendJson(res, 400, { error: 'no event written', details: parsed.failed[0]?.error ?? '', failed: parsed.failed });
    if (parsed.failed.length > 0) return sendJson(res, 207, { written: ids.length, ids, failed: parsed.failed });
    sendJson(res, 200, { written: ids.length, ids });
  }

  /** argus's `POST /api/audit-logs` and `POST /api/audit-logs/bulk`, same codes and shapes. */
  private async ingestArgus(req: IncomingMessage, res: ServerResponse, bulk: boolean): Promise<void> {
    // argus never looked at Content-Type and its clients rely on that, so neither do we here.
    const { value, itemErrors } = this.parseJson(await this.readBody(req));
    if (!bulk) {
      let event: AuditEvent;
      let native: JsonObject;
      try {
        native = argusToNative(value, this.enums);
        event = this.toEvent(native);
      } catch (error) {
        if (!(error instanceof ArgusValidationError || error instanceof InvalidEventError)) throw error;
        this.pipeline?.countRejected('invalid_event');
        throw new HttpError(400, 'validation failed', error.message);
      }
      const checked = this.checkSignature(native, event);
      if (checked.error) throw new HttpError(400, 'Invalid request payload', checked.error);
      event = checked.event;
      const [outcome] = await this.submit([event]);
      if (outcome!.kind === 'nak') {
        return sendJson(res, 503, { error: 'not written', details: outcome!.reason }, { 'retry-after': String(Math.ceil(outcome!.delayMs / 1000)) });
      }
      if (outcome!.kind === 'term') return sendJson(res, 400, { error: 'rejected', details: outcome!.reason });
      this.argusMetrics?.ingested.inc();
      return sendJson(res, 201, argusRecord(event, outcome!.receipt));
    }

    if (value === null) return sendJson(res, 201, { succeeded: [] });
    if (!Array.isArray(value)) throw new HttpError(400, 'Invalid request body', 'bulk body must be a JSON array of audit log requests');
    if (value.length === 0) return sendJson(res, 201, { succeeded: [] });
    this.checkCount(value.length);
    const failed: Array<ItemFailure & { action: string }> = [];
    const accepted: Array<{ index: number; event: AuditEvent }> = [];
    value.forEach((item: unknown, index: number) => {
      let native: JsonObject;
      let event: AuditEvent;
      try {
        const itemError = itemErrors.get(index);
        if (itemError !== undefined) throw new ArgusValidationError(itemError);
        native = argusToNative(item, this.enums);
        event = this.toEvent(native);
      } catch (error) {
        if (!(error instanceof ArgusValidationError || error instanceof InvalidEventError)) throw error;
        this.pipeline?.countRejected('invalid_event');
        failed.push({ index, error: error.message, action: actionOf(item) });
        return;
      }
      const checked = this.checkSignature(native, event);
      if (checked.error) failed.push({ index, error: checked.error, action: actionOf(item) });
      else accepted.push({ index, event: checked.event });
    });
    const succeeded: Array<Record<string, JsonValue>> = [];
    if (accepted.length > 0) {
      const outcomes = await this.submit(accepted.map((a) => a.event));
      const nak = outcomes.find((o): o is Extract<Outcome, { kind: 'nak' }> => o.kind === 'nak');
      if (nak) {
        return sendJson(res, 503, { error: 'not written', details: nak.reason }, { 'retry-after': String(Math.ceil(nak.delayMs / 1000)) });
      }
      outcomes.forEach((outcome, i) => {
        const { index, event } = accepted[i]!;
        if (outcome.kind === 'ack') succeeded.push(argusRecord(event, outcome.receipt));
        else if (outcome.kind === 'term') failed.push({ index, error: outcome.reason, action: actionOf(value[index]) });
      });
    }
    failed.sort((a, b) => a.index - b.index);
    if (succeeded.length > 0) this.argusMetrics?.ingested.inc(succeeded.length);
    const result = failed.length > 0 ? { succeeded, failed } : { succeeded };
    sendJson(res, failed.length === 0 ? 201 : succeeded.length === 0 ? 400 : 207, result);
  }

  /**
   * Verifies the client signature of one event under the configured mode; returns the error to
   * give back, or undefined when the event may go on. `raw` is the event as the client sent it
   * (native form), so a server-filled id or time can never make a signature pass or fail. The
   * event to store carries the verified form (`withVerifiedFormat`).
   */
  private checkSignature(raw: JsonObject, event: AuditEvent): { error?: string; event: AuditEvent } {
    const verdict = this.signatures.check(raw, event.actorId, event.receivedAt);
    if (verdict.ok) return { event: this.signatures.withVerifiedFormat(event, verdict) };
    this.pipeline?.countRejected('signature');
    this.argusMetrics?.signatureErrors.inc();
    return { error: verdict.message, event };
  }

  private store(): ArgusReadStore {
    const token = chainStoreService(this.context.pipeline);
    if (!this.context.has(token)) {
      throw new HttpError(501, 'not implemented', `pipeline ${this.context.pipeline} has no chain store to read from (add a postgres sink)`);
    }
    return this.context.resolve<ArgusReadStore>(token);
  }

  /** `GET /api/audit-logs`: argus's list, newest first, with its filters and the ones it lacked. */
  private async listLogs(res: ServerResponse, params: RouteParams): Promise<void> {
    const request = parseListQuery(params.query);
    const answer = await this.readStore(() => listAuditLogs(this.store(), request));
    sendJson(res, 200, answer);
  }

  /** `GET /api/audit-logs/{id}`: one record with its chain position. */
  private async getLog(res: ServerResponse, params: RouteParams): Promise<void> {
    let id: string;
    try {
      id = decodeURIComponent(params.id ?? '');
    } catch {
      throw new ReadApiError(400, 'the id in the path is not valid percent-encoding');
    }
    if (!id || id.length > MAX_ID_PARAM_CHARS) throw new ReadApiError(400, `id must be 1 to ${MAX_ID_PARAM_CHARS} characters`);
    const record = await this.readStore(() => this.store().get(id));
    if (!record) throw new ReadApiError(404, `no audit log with id ${JSON.stringify(id)}`);
    sendJson(res, 200, recordWithPosition(record));
  }

  /** `GET /api/audit-summary`: today's activity (UTC), as argus answered it. */
  private async summary(res: ServerResponse): Promise<void> {
    sendJson(res, 200, await this.readStore(() => auditSummary(this.store())));
  }

  /** A store failure is a 503 (retry later); a bad cursor the store refused is the client's 400. */
  private async readStore<T>(read: () => Promise<T>): Promise<T> {
    try {
      return await read();
    } catch (error) {
      if (error instanceof HttpError || error instanceof ReadApiError) throw error;
      if (error instanceof RangeError) throw new ReadApiError(400, error.message);
      this.context.logger.error({ err: error }, 'chain store read failed');
      throw new HttpError(503, 'unavailable', 'the audit store cannot be read right now', { 'retry-after': '1' });
    }
  }

  /** Emits the events and waits until the pipeline settled each of them. */
  private async submit(events: readonly AuditEvent[]): Promise<Outcome[]> {
    const pipeline = this.pipeline!;
    const settled: Array<Promise<Outcome>> = [];
    const envelopes: Envelope[] = events.map((event) => {
      let settle!: (outcome: Outcome) => void;
      settled.push(new Promise<Outcome>((resolve) => (settle = resolve)));
      return { event, settle: (outcome: Outcome) => settle(outcome) };
    });
    try {
      await pipeline.emit(envelopes);
    } catch (error) {
      throw new HttpError(503, 'unavailable', (error as Error).message, { 'retry-after': '1' });
    }
    return Promise.all(settled);
  }
}

function actionOf(item: unknown): string {
  const action = (item as JsonObject | null)?.action;
  return typeof action === 'string' ? action : '';
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function splitUrl(url: string): [string, string] {
  const index = url.indexOf('?');
  return index < 0 ? [url, ''] : [url.slice(0, index), url.slice(index + 1)];
}

interface HttpMetrics {
  readonly requests: promClient.Counter<'pipeline' | 'route' | 'status'>;
  readonly duration: promClient.Histogram<'pipeline' | 'route'>;
}

const METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD']);
const methodLabel = (method: string | undefined) => (method && METHODS.has(method) ? method : 'other');

interface ArgusMetrics {
  readonly ingested: promClient.Counter;
  readonly signatureErrors: promClient.Counter;
  readonly requests: promClient.Counter<'path' | 'method' | 'status'>;
  readonly duration: promClient.Histogram<'path' | 'method'>;
}

const ARGUS_METRICS = Symbol.for('auditpipe.http.argus-metrics');
/** argus's four metric names, so its dashboards and alerts keep working (argus.metrics: true). */
function argusMetrics(context: ComponentContext): ArgusMetrics {
  const registry = context.metrics as typeof context.metrics & { [ARGUS_METRICS]?: ArgusMetrics };
  if (!registry[ARGUS_METRICS]) {
    const { Counter, Histogram } = promClient;
    const registers = [registry];
    registry[ARGUS_METRICS] = {
      ingested: new Counter({ name: 'argus_logs_ingested_total', help: 'argus compatibility: audit logs stored (acknowledged by every required sink).', registers }),
      signatureErrors: new Counter({ name: 'argus_signature_verification_errors_total', help: 'argus compatibility: events whose signature failed verification.', registers }),
      requests: new Counter({ name: 'argus_http_requests_total', help: 'argus compatibility: HTTP requests by route template, method and status.', labelNames: ['path', 'method', 'status'], registers }),
      duration: new Histogram({ name: 'argus_http_request_duration_seconds', help: 'argus compatibility: HTTP request duration by route template and method.', labelNames: ['path', 'method'], registers }),
    };
  }
  return registry[ARGUS_METRICS]!;
}

const HTTP_METRICS = Symbol.for('auditpipe.http.metrics');
/** One set of HTTP metrics per registry, shared by every HTTP source in the process. */
function httpMetrics(context: ComponentContext): HttpMetrics {
  const registry = context.metrics as typeof context.metrics & { [HTTP_METRICS]?: HttpMetrics };
  if (!registry[HTTP_METRICS]) {
    const { Counter, Histogram } = promClient;
    registry[HTTP_METRICS] = {
      requests: new Counter({ name: 'auditpipe_http_requests_total', help: 'HTTP requests by route template and status.', labelNames: ['pipeline', 'route', 'status'], registers: [registry] }),
      duration: new Histogram({ name: 'auditpipe_http_request_duration_seconds', help: 'HTTP request duration by route template.', labelNames: ['pipeline', 'route'], buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [registry] }),
    };
  }
  return registry[HTTP_METRICS]!;
}
