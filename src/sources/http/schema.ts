import { parseTokenSpecs, type TokenSpec } from '../../security/tokens.ts';

export interface HttpSourceConfig {
  listen: string;
  tokens: TokenSpec[];
  auth_required: boolean;
  max_body_bytes: number;
  max_events_per_request: number;
  request_timeout_ms: number;
  argus: { enums_file: string };
  version: string;
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
  max_body_bytes: { doc: 'Largest request body; larger ones get 413.', format: 'positive-int', default: 5 * 1024 * 1024 },
  max_events_per_request: { doc: 'Most events in one request; more get 413.', format: 'positive-int', default: 10_000 },
  request_timeout_ms: { doc: 'Time allowed to receive a whole request.', format: 'positive-int', default: 30_000 },
  argus: {
    enums_file: { doc: 'argus enums.yaml; each list in it replaces the default list.', format: String, default: '', env: 'AUDIT_ENUMS_CONFIG' },
  },
  version: { doc: 'Version reported by /version.', format: String, default: '0.1.0' },
};

export function normaliseHttpConfig(config: HttpSourceConfig): HttpSourceConfig {
  return { ...config, tokens: parseTokenSpecs(config.tokens) };
}
