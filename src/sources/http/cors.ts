/**
 * CORS for browser clients. Preflight requests (`OPTIONS` with `Access-Control-Request-Method`)
 * are answered before authentication, since browsers never send credentials on a preflight
 * (argus checked the token first, so no browser could ever call it). Every other answer, 401s
 * included, carries the allow headers when the origin is allowed, so a browser can read errors.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

export interface CorsConfig {
  /** Exact origins (`https://app.example.org`) or `*`. Empty: no CORS headers at all. */
  readonly allowed_origins: readonly string[];
  /** Send `Access-Control-Allow-Credentials: true` (cookies); bearer tokens do not need it. */
  readonly allow_credentials: boolean;
  readonly max_age_s: number;
}

const ALLOWED_METHODS = 'GET, POST, OPTIONS';
const ALLOWED_HEADERS = 'Authorization, Content-Type, Idempotency-Key, Traceparent';
const EXPOSED_HEADERS = 'Retry-After';

export class CorsPolicy {
  private readonly origins: ReadonlySet<string>;
  private readonly any: boolean;
  private readonly credentials: boolean;
  private readonly maxAge: string;

  constructor(config: CorsConfig) {
    this.origins = new Set(config.allowed_origins.map((o) => o.trim().replace(/\/$/, '')).filter(Boolean));
    this.any = this.origins.has('*');
    this.credentials = config.allow_credentials;
    this.maxAge = String(config.max_age_s);
  }

  get enabled(): boolean {
    return this.origins.size > 0;
  }

  private allowedOrigin(origin: string | undefined): string | undefined {
    if (!origin || !this.enabled) return undefined;
    if (this.origins.has(origin)) return origin;
    if (!this.any) return undefined;
    // With credentials a wildcard is not allowed by browsers; the origin is echoed instead.
    return this.credentials ? origin : '*';
  }

  /** Sets the CORS headers of an ordinary answer. */
  apply(req: IncomingMessage, res: ServerResponse): void {
    if (!this.enabled) return;
    res.setHeader('vary', 'Origin');
    const origin = this.allowedOrigin(req.headers.origin);
    if (!origin) return;
    res.setHeader('access-control-allow-origin', origin);
    res.setHeader('access-control-expose-headers', EXPOSED_HEADERS);
    if (this.credentials) res.setHeader('access-control-allow-credentials', 'true');
  }

  /** True for a CORS preflight, which must be answered without authentication. */
  isPreflight(req: IncomingMessage): boolean {
    return req.method === 'OPTIONS' && typeof req.headers['access-control-request-method'] === 'string';
  }

  /** Answers a preflight: 204 with the allow headers, or 403 when the origin is not allowed. */
  answerPreflight(req: IncomingMessage, res: ServerResponse): void {
    const origin = this.allowedOrigin(req.headers.origin);
    const headers: Record<string, string> = { vary: 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers' };
    if (!origin) {
      const body = JSON.stringify({ error: 'forbidden', details: 'this origin is not allowed (cors.allowed_origins)' });
      res.writeHead(403, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    headers['access-control-allow-origin'] = origin;
    headers['access-control-allow-methods'] = ALLOWED_METHODS;
    headers['access-control-allow-headers'] = ALLOWED_HEADERS;
    headers['access-control-max-age'] = this.maxAge;
    if (this.credentials) headers['access-control-allow-credentials'] = 'true';
    res.writeHead(204, headers);
    res.end();
  }
}
