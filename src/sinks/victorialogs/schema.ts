export interface VictoriaLogsSinkConfig {
  url: string;
  path: string;
  stream_fields: string[];
  msg_field: string;
  time_field: string;
  ignore_fields: string[];
  extra_fields: Record<string, string>;
  account_id: number;
  project_id: number;
  gzip: boolean;
  connections: number;
  connect_timeout_ms: number;
  keep_alive_timeout_ms: number;
  request_timeout_ms: number;
  bearer_token: string;
  username: string;
  password: string;
}

function checkExtraFields(value: unknown): void {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('must be a mapping of field name to value');
  for (const [key, field] of Object.entries(value)) {
    if (!/^[^\s=,]+$/.test(key)) throw new Error(`field name "${key}" must be non-empty without spaces, "=" or ","`);
    if (typeof field !== 'string' && typeof field !== 'number' && typeof field !== 'boolean') throw new Error(`value of "${key}" must be a string`);
    if (String(field).includes(',')) throw new Error(`value of "${key}" must not contain ","`);
  }
}

function checkHttpUrl(value: unknown): void {
  if (typeof value !== 'string') throw new Error('must be a URL such as http://127.0.0.1:9428');
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error('must be a URL such as http://127.0.0.1:9428');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('must be an http:// or https:// URL');
  if (url.username || url.password) throw new Error('must not carry credentials; use username/password or bearer_token');
  if (url.search || url.hash) throw new Error('must not have a query or fragment; use the field keys instead');
}

export const victoriaLogsSinkSchema = {
  url: { doc: 'VictoriaLogs base URL (scheme, host, port, optional path prefix of a proxy).', format: checkHttpUrl, default: 'http://127.0.0.1:9428' },
  path: { doc: 'Ingest path below the base URL.', format: String, default: '/insert/jsonline' },
  stream_fields: { doc: 'Fields that make up the log stream (_stream_fields).', format: 'string-list', default: [] as string[] },
  msg_field: { doc: 'Field holding the log message (_msg_field).', format: String, default: 'msg' },
  time_field: { doc: 'Field holding the event time (_time_field).', format: String, default: 'time' },
  ignore_fields: { doc: 'Fields VictoriaLogs drops on ingest (ignore_fields).', format: 'string-list', default: [] as string[] },
  extra_fields: { doc: 'Constant fields added to every stored line (extra_fields), e.g. {env: prod}.', format: checkExtraFields, default: {} as Record<string, string> },
  account_id: { doc: 'Tenant AccountID header (multi-tenant VictoriaLogs); 0 is the default tenant.', format: 'nat', default: 0 },
  project_id: { doc: 'Tenant ProjectID header.', format: 'nat', default: 0 },
  gzip: { doc: 'Compress request bodies with gzip.', format: Boolean, default: false },
  connections: { doc: 'Keep-alive connections in the pool.', format: 'positive-int', default: 4 },
  connect_timeout_ms: { doc: 'TCP/TLS connect timeout.', format: 'positive-int', default: 5_000 },
  keep_alive_timeout_ms: { doc: 'Idle keep-alive connections are closed after this; keep it below the server\'s idle timeout (VictoriaLogs: 5 s).', format: 'positive-int', default: 4_000 },
  request_timeout_ms: { doc: 'Bound on waiting for response headers and body; the pipeline attempt timeout (retry.timeout_ms) also aborts.', format: 'positive-int', default: 30_000 },
  bearer_token: { doc: 'Authorization: Bearer token (e.g. for vmauth).', format: String, default: '', sensitive: true },
  username: { doc: 'Basic auth user.', format: String, default: '' },
  password: { doc: 'Basic auth password.', format: String, default: '', sensitive: true },
};
