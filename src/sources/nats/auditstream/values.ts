/**
 * The auditstream drop-in: recognises an auditstream `config/values.yml` (its nine keys, no
 * `pipelines`) and translates it into the auditpipe config that does the same job: NATS JetStream
 * `{namespace}_{stream}` → VictoriaLogs, flushed on `batch_size` or `flush_interval`, acked after
 * VictoriaLogs answered 2xx.
 */

export const AUDITSTREAM_KEYS = [
  'mode', 'namespace', 'stream', 'nats_hosts', 'nats_token', 'victoria', 'victoria_path', 'batch_size', 'flush_interval',
] as const;

/** Root keys of an auditpipe config; a document with any of them is not an auditstream values file. */
const AUDITPIPE_ROOT_KEYS = ['pipelines', 'log_level', 'data_dir', 'shutdown_timeout_ms', 'plugins_file', 'admin'];

/** The sink's retry.timeout_ms default; ack wait must exceed flush interval plus this. */
const SINK_TIMEOUT_MS = 10_000;

export function isAuditstreamValues(raw: Record<string, unknown>): boolean {
  if (AUDITPIPE_ROOT_KEYS.some((key) => key in raw)) return false;
  return (AUDITSTREAM_KEYS as readonly string[]).some((key) => key in raw);
}

const DURATION_UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** Parses a Go duration ("5s", "1m30s", "250ms") into milliseconds; undefined when it is not one. */
export function parseGoDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (trimmed === '0') return 0;
  const part = /(\d+(?:\.\d+)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/gy;
  let total = 0;
  let matched = 0;
  let match: RegExpExecArray | null;
  while ((match = part.exec(trimmed)) !== null) {
    total += Number(match[1]) * DURATION_UNITS[match[2]!]!;
    matched = part.lastIndex;
  }
  return matched === trimmed.length && matched > 0 ? total : undefined;
}

export interface Translation {
  readonly config?: Record<string, unknown>;
  readonly problems: string[];
}

/** Query arguments of `victoria_path` and the VictoriaLogs sink keys they become. */
const PATH_ARGS: Record<string, string> = {
  _stream_fields: 'stream_fields',
  _msg_field: 'msg_field',
  _time_field: 'time_field',
  ignore_fields: 'ignore_fields',
  extra_fields: 'extra_fields',
};

export function translateAuditstreamValues(raw: Record<string, unknown>, file: string): Translation {
  const problems: string[] = [];
  const say = (key: string, message: string) => problems.push(`${file}: auditstream key "${key}": ${message}`);
  for (const key of Object.keys(raw)) {
    if (!(AUDITSTREAM_KEYS as readonly string[]).includes(key)) {
      problems.push(`${file}: unknown key "${key}" in an auditstream values file (known: ${AUDITSTREAM_KEYS.join(', ')}); an auditpipe config needs "pipelines"`);
    }
  }
  const text = (key: string, required: boolean): string => {
    const value = raw[key];
    if (value === undefined || value === null || value === '') {
      if (required) say(key, 'is required');
      return '';
    }
    if (typeof value !== 'string') {
      say(key, `must be a string, got ${JSON.stringify(value)}`);
      return '';
    }
    return value;
  };

  const mode = text('mode', false) || 'release';
  if (mode !== 'debug' && mode !== 'release') say('mode', `must be "debug" or "release", got "${mode}"`);
  const namespace = text('namespace', true);
  const stream = text('stream', true);
  for (const [key, value] of [['namespace', namespace], ['stream', stream]] as const) {
    if (value && !/^[A-Za-z0-9_-]+$/.test(value)) say(key, `must be letters, digits, "_" or "-" (it becomes the subject ${namespace}.${stream}), got "${value}"`);
  }

  let servers: string[] = [];
  const hosts = raw.nats_hosts;
  if (typeof hosts === 'string' && hosts) servers = hosts.split(',').map((s) => s.trim()).filter(Boolean);
  else if (Array.isArray(hosts) && hosts.length > 0 && hosts.every((h) => typeof h === 'string' && h)) servers = hosts as string[];
  else say('nats_hosts', 'must be a non-empty list of NATS URLs, e.g. [nats://127.0.0.1:4222]');
  const token = raw.nats_token === undefined || raw.nats_token === null ? '' : String(raw.nats_token);

  const victoria = text('victoria', true);
  let base: URL | undefined;
  if (victoria) {
    try {
      base = new URL(victoria);
      if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error('scheme');
    } catch {
      say('victoria', `must be an http(s) URL such as http://localhost:9428, got "${victoria}"`);
      base = undefined;
    }
  }
  const sink: Record<string, unknown> = { type: 'victorialogs', name: 'victorialogs', required: true };
  if (base) sink.url = `${base.origin}${base.pathname.replace(/\/+$/, '')}`;
  const victoriaPath = text('victoria_path', false) || '/insert/jsonline?_stream_fields=stream&_msg_field=msg&_time_field=time';
  const parsedPath = new URL(victoriaPath, 'http://placeholder');
  sink.path = parsedPath.pathname;
  for (const [arg, value] of parsedPath.searchParams) {
    const key = PATH_ARGS[arg];
    if (!key) {
      say('victoria_path', `query argument "${arg}" is not supported (supported: ${Object.keys(PATH_ARGS).join(', ')})`);
      continue;
    }
    if (key === 'stream_fields' || key === 'ignore_fields') sink[key] = value.split(',').map((s) => s.trim()).filter(Boolean);
    else if (key === 'extra_fields') {
      sink[key] = Object.fromEntries(value.split(',').filter(Boolean).map((pair) => {
        const at = pair.indexOf('=');
        return at > 0 ? [pair.slice(0, at), pair.slice(at + 1)] : [pair, ''];
      }));
    } else sink[key] = value;
  }

  const batchSize = raw.batch_size;
  let maxEvents = 100;
  if (batchSize !== undefined) {
    if (!Number.isInteger(batchSize) || (batchSize as number) < 1) say('batch_size', `must be a positive integer, got ${JSON.stringify(batchSize)}`);
    else maxEvents = batchSize as number;
  }
  let intervalMs = 5_000;
  if (raw.flush_interval !== undefined) {
    const parsed = typeof raw.flush_interval === 'string' ? parseGoDuration(raw.flush_interval) : undefined;
    if (parsed === undefined || parsed < 1) say('flush_interval', `must be a positive Go duration such as 5s or 500ms, got ${JSON.stringify(raw.flush_interval)}`);
    else intervalMs = Math.max(1, Math.round(parsed));
  }
  if (problems.length > 0) return { problems };

  const maxInFlight = 4;
  // The seed could not set these; choose them so that its batch_size and flush_interval always work.
  const maxAckPending = Math.max(10_000, maxEvents * (maxInFlight + 2));
  const config = {
    log_level: mode === 'debug' ? 'debug' : 'info',
    pipelines: [{
      name: `${namespace}_${stream}`,
      actor_field: 'user_id',
      batch: { max_events: maxEvents, interval_ms: intervalMs, max_in_flight: maxInFlight },
      source: {
        type: 'nats',
        servers,
        ...(token ? { token } : {}),
        namespace,
        stream,
        consumer: 'default',
        ack_wait_ms: Math.max(30_000, intervalMs + SINK_TIMEOUT_MS + 15_000),
        max_ack_pending: maxAckPending,
        pull_batch: Math.min(1_000, maxAckPending),
      },
      sinks: [sink],
    }],
  };
  return { config, problems };
}
