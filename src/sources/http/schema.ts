import { signatureConfigSchema, type SignatureConfig } from '../../public/security.ts';
import { parseTokenSpecs, type TokenSpec } from '../../public/security.ts';
import type { CorsConfig } from './cors.ts';

export interface HttpSourceConfig extends SignatureConfig {
  listen: string;
  tokens: TokenSpec[];
  auth_required: boolean;
  max_body_bytes: number;
  max_events_per_request: number;
  request_timeout_ms: number;
  headers_timeout_ms: number;
  keep_alive_timeout_ms: number;
  max_connections: number;
  max_json_depth: number;
  argus: { enums_file: string; metrics: boolean };
  version: string;
  /** Name `/health` and `/version` report (`argus` under the argus preset). */
  service_name: string;
  build_time: string;
  git_commit: string;
  cors: CorsConfig;
}

export const httpSourceSchema = {
  listen: { doc: 'host:port to listen on.', format: 'listen-address', default: '127.0.0.1:8080' },
  tokens: {
    doc: 'Bearer tokens: strings, or {token, scopes: [ingest, read]}. Comma-separated in the env variable.',
    format: (value: unknown) => void parseTokenSpecs(value),
    coerce: (value: unknown) => (typeof value === 'string' ? value.split(',').map((s) => s.trim()).filter(Boolean) : value),
    default: [] as unknown[],
    env: 'AUDITPIPE_HTTP_TOKENS',
    sensitive: true,
  },
  auth_required: {
    doc: 'Reject every request when no token is configured (fail closed). Implied when tokens are set.',
    format: Boolean,
    default: false,
  },
  max_body_bytes: { doc: 'Largest request body, after gzip decompression; larger ones get 413.', format: 'positive-int', default: 5 * 1024 * 1024 },
  max_events_per_request: { doc: 'Most events in one request; more get 413.', format: 'positive-int', default: 10_000 },
  request_timeout_ms: { doc: 'Time allowed to receive a whole request, headers and body; then 408 and the connection closes.', format: 'positive-int', default: 30_000 },
  headers_timeout_ms: { doc: 'Time allowed to receive the request headers (at most request_timeout_ms); then 408 and the connection closes.', format: 'positive-int', default: 10_000 },
  keep_alive_timeout_ms: { doc: 'How long an idle keep-alive connection stays open.', format: 'positive-int', default: 65_000 },
  max_connections: { doc: 'Most open connections; past it new connections are closed at once.', format: 'positive-int', default: 4_096 },
  max_json_depth: { doc: 'Deepest nesting of arrays and objects in one event; deeper: 400 for that event.', format: 'positive-int', default: 64 },
  argus: {
    enums_file: { doc: 'argus enums.yaml; each list in it replaces the default list.', format: String, default: '', env: 'AUDIT_ENUMS_CONFIG' },
    metrics: { doc: 'Also export argus\'s metric names (argus_logs_ingested_total, ...) for existing dashboards.', format: Boolean, default: false },
  },
  version: { doc: 'Version reported by /version.', format: String, default: '0.1.0' },
  service_name: { doc: 'Service name /health and /version report.', format: String, default: 'auditpipe' },
  build_time: { doc: 'Build time /version reports.', format: String, default: 'unknown' },
  git_commit: { doc: 'Git commit /version reports.', format: String, default: 'unknown' },
  ...signatureConfigSchema,
  cors: {
    allowed_origins: { doc: 'Origins browsers may call from (exact, or *); empty: no CORS headers.', format: 'string-list', default: [] as string[] },
    allow_credentials: { doc: 'Send Access-Control-Allow-Credentials: true.', format: Boolean, default: false },
    max_age_s: { doc: 'How long browsers may cache a preflight answer.', format: 'positive-int', default: 600 },
  },
};

export function normaliseHttpConfig(config: HttpSourceConfig): HttpSourceConfig {
  return { ...config, tokens: parseTokenSpecs(config.tokens) };
}
