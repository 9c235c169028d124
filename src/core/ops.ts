import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';

/** The DI token under which the engine provides `OpsEndpoints`. */
export const OPS_TOKEN = 'auditpipe:ops';

export interface Readiness {
  readonly ready: boolean;
  readonly state: string;
  readonly problems: readonly string[];
}

/** /healthz, /readyz and /metrics: public, cheap, shared by the admin listener and HTTP sources. */
export class OpsEndpoints {
  private readonly registry: Registry;
  private readonly readiness: () => Readiness;

  constructor(registry: Registry, readiness: () => Readiness) {
    this.registry = registry;
    this.readiness = readiness;
  }

  /** Route template for a path this handler owns, or undefined. */
  route(path: string): string | undefined {
    return path === '/healthz' || path === '/readyz' || path === '/metrics' ? path : undefined;
  }

  /** Answers the request when it is one of ours; returns false otherwise. */
  async handle(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
    if (!this.route(path)) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendJson(res, 405, { error: 'method not allowed', details: `${path} answers GET` }, { allow: 'GET, HEAD' });
      return true;
    }
    if (path === '/healthz') {
      sendJson(res, 200, { status: 'ok' });
    } else if (path === '/readyz') {
      const r = this.readiness();
      sendJson(res, r.ready ? 200 : 503, { status: r.ready ? 'ready' : 'not ready', state: r.state, problems: r.problems });
    } else {
      const body = await this.registry.metrics();
      res.writeHead(200, { 'content-type': this.registry.contentType, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    }
    return true;
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}
