import convict from 'convict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml, parseDocument } from 'yaml';
import type { BatchSettings, ConfigSchema, RetryPolicy } from './component.ts';
import type { ComponentRegistry } from './registry.ts';
import type { PipelineName } from './types.ts';

/** A config problem, with everything needed to find and fix it. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(problems.join('\n'));
    this.problems = problems;
  }
}

let formatsAdded = false;
/** Formats shared by every component schema. */
export function addConfigFormats(): void {
  if (formatsAdded) return;
  formatsAdded = true;
  convict.addFormat({
    name: 'listen-address',
    validate(value: unknown) {
      if (typeof value !== 'string' || !/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(value)) {
        throw new Error('must be host:port, e.g. 127.0.0.1:8080');
      }
      const port = Number(value.slice(value.lastIndexOf(':') + 1));
      if (port > 65535) throw new Error('port must be at most 65535');
    },
  });
  convict.addFormat({
    name: 'string-list',
    validate(value: unknown) {
      if (!Array.isArray(value) || value.some((item) => typeof item !== 'string')) throw new Error('must be a list of strings');
    },
    coerce: (value: unknown) => (typeof value === 'string' ? value.split(',').map((s) => s.trim()).filter(Boolean) : value),
  });
  convict.addFormat({
    name: 'positive-int',
    validate(value: unknown) {
      if (!Number.isInteger(value) || (value as number) < 1) throw new Error('must be a positive integer');
    },
    coerce: (value: unknown) => (typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value),
  });
  convict.addFormat({
    name: 'object',
    validate(value: unknown) {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('must be a mapping');
    },
  });
}

const ENV_REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;
const WHOLE_REFERENCE = /^\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}$/;

/**
 * Replaces `${NAME}` and `${NAME:-default}` in every string value of the parsed YAML with
 * environment variables, so secrets and deployment specifics stay out of the file. Comments are
 * never touched. A value that is one whole reference takes the YAML type of what it expands to
 * (`port: ${PORT}` is a number). An unset variable without a default is an error, never "".
 */
export function interpolateEnv(value: unknown, env: NodeJS.ProcessEnv, file: string): unknown {
  const missing = new Map<string, string>();
  const expand = (text: string, where: string): unknown => {
    const out = text.replace(ENV_REFERENCE, (_, name: string, fallback: string | undefined) => {
      const found = env[name];
      if (found !== undefined && found !== '') return found;
      if (fallback !== undefined) return fallback;
      missing.set(name, where);
      return '';
    });
    if (out === text || !WHOLE_REFERENCE.test(text)) return out;
    const typed: unknown = parseYaml(out);
    return typed !== null && typeof typed === 'object' ? out : typed ?? out;
  };
  const walk = (node: unknown, where: string): unknown => {
    if (typeof node === 'string') return expand(node, where);
    if (Array.isArray(node)) return node.map((item, i) => walk(item, `${where}[${i}]`));
    if (node !== null && typeof node === 'object') {
      return Object.fromEntries(Object.entries(node).map(([key, child]) => [key, walk(child, where ? `${where}.${key}` : key)]));
    }
    return node;
  };
  const result = walk(value, '');
  if (missing.size > 0) {
    throw new ConfigError([...missing].map(([name, where]) => `${file}: key "${where}": environment variable ${name} is not set and has no default (\${${name}:-default})`));
  }
  return result;
}

/** Validates `value` against a convict schema; problems are prefixed with `where`. */
export function validateSection<T>(schema: ConfigSchema, value: unknown, where: string): { config?: T; problems: string[] } {
  addConfigFormats();
  if (value !== undefined && (value === null || typeof value !== 'object' || Array.isArray(value))) {
    return { problems: [`${where}: must be a mapping, got ${JSON.stringify(value)}`] };
  }
  try {
    const instance = convict(schema as convict.Schema<T>, { env: process.env, args: [] });
    instance.load(value ?? {});
    instance.validate({ allowed: 'strict' });
    return { config: instance.getProperties() as T, problems: [] };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { problems: message.split('\n').filter(Boolean).map((line) => `${where}: ${describeConvictLine(line)}`) };
  }
}

/** convict says `key: message: value was "x"`; say which key and what was expected plainly. */
function describeConvictLine(line: string): string {
  const unknown = /^configuration param '(.+)' not declared in the schema$/.exec(line);
  if (unknown) return `unknown key "${unknown[1]}"`;
  return line.replace(/^([\w.[\]]+): /, 'key "$1": ');
}

const RETRY_SCHEMA = {
  max_attempts: { doc: 'Attempts per batch before the sink is reported failed.', format: 'positive-int', default: 5 },
  initial_backoff_ms: { doc: 'Backoff ceiling before the second attempt; doubles each attempt (full jitter).', format: 'positive-int', default: 100 },
  max_backoff_ms: { doc: 'Largest backoff ceiling.', format: 'positive-int', default: 5000 },
  max_elapsed_ms: { doc: 'Give up once this much time passed since the first attempt.', format: 'positive-int', default: 30000 },
  timeout_ms: { doc: 'Timeout of one write attempt.', format: 'positive-int', default: 10000 },
};

/** Keys of a sink entry that belong to the pipeline, not to the sink component. */
const SINK_SLOT_SCHEMA = {
  type: { doc: 'Sink type (built-in or from a plugin).', format: String, default: '' },
  name: { doc: 'Name in logs and metrics; defaults to the type.', format: String, default: '' },
  required: { doc: 'Acks wait for a required sink; a best-effort one never holds them.', format: Boolean, default: true },
  max_in_flight: { doc: 'Best-effort sinks: batches in flight before further ones are skipped.', format: 'positive-int', default: 4 },
  retry: RETRY_SCHEMA,
};

const PIPELINE_SCHEMA = {
  name: { doc: 'Pipeline name (metrics label, log field).', format: String, default: '' },
  actor_field: { doc: 'Dotted path of the field holding the actor id (hash-chain partition).', format: String, default: 'actorId' },
  require_actor: {
    doc: 'Reject an event without the actor field as invalid (true), accept it (false), or auto: true when one of the pipeline\'s sinks is a chain store (postgres).',
    format: (value: unknown) => {
      if (value !== true && value !== false && value !== 'auto') throw new Error('must be true, false or auto');
    },
    default: 'auto' as boolean | 'auto',
  },
  nak_delay_ms: { doc: 'Redelivery delay asked for when a batch failed (HTTP: Retry-After).', format: 'positive-int', default: 5000 },
  progress_interval_ms: { doc: 'How often a source is told a batch is still being written (NATS working()).', format: 'positive-int', default: 5000 },
  batch: {
    max_events: { doc: 'Flush when this many events are buffered.', format: 'positive-int', default: 500 },
    max_bytes: { doc: 'Flush when this many bytes are buffered.', format: 'positive-int', default: 4 * 1024 * 1024 },
    interval_ms: { doc: 'Flush at most this long after the first buffered event.', format: 'positive-int', default: 200 },
    max_in_flight: { doc: 'Batches written at once; more wait in the buffer.', format: 'positive-int', default: 4 },
    max_buffered_bytes: { doc: 'Bytes held (buffered or in flight) before sources are made to wait.', format: 'positive-int', default: 64 * 1024 * 1024 },
    flush: {
      doc: 'eager: write a batch as soon as one of max_in_flight slots is free (what waits meanwhile forms the next batch); interval: when max_events/max_bytes is reached or interval_ms passed; auto: what the source asks for (http: eager, nats: interval).',
      format: ['auto', 'eager', 'interval'],
      default: 'auto',
    },
  },
  max_event_bytes: { doc: 'Largest single event accepted.', format: 'positive-int', default: 1024 * 1024 },
};

const ROOT_SCHEMA = {
  log_level: { doc: 'pino log level.', format: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info', env: 'AUDITPIPE_LOG_LEVEL' },
  data_dir: { doc: 'Where components keep files.', format: String, default: './data', env: 'AUDITPIPE_DATA_DIR' },
  shutdown_timeout_ms: { doc: 'Bound on a graceful shutdown; what is unwritten then is naked.', format: 'positive-int', default: 15000 },
  plugins_file: { doc: 'plugins.json listing third-party components; relative to the config file.', format: String, default: '' },
  admin: {
    listen: { doc: 'host:port for /metrics, /healthz, /readyz when no HTTP source serves them; empty to disable.', format: String, default: '' },
  },
};

export interface SinkConfig {
  readonly type: string;
  readonly name: string;
  readonly required: boolean;
  readonly maxInFlight: number;
  readonly retry: RetryPolicy;
  readonly options: Record<string, unknown>;
}

export interface PipelineConfig {
  readonly name: PipelineName;
  readonly actorField: string;
  /** Events without the actor field are invalid (require_actor, resolved from auto). */
  readonly requireActor: boolean;
  readonly nakDelayMs: number;
  readonly progressIntervalMs: number;
  readonly batch: BatchSettings;
  readonly maxEventBytes: number;
  readonly source: { readonly type: string; readonly options: Record<string, unknown> };
  readonly sinks: readonly SinkConfig[];
  readonly deadLetter: SinkConfig | undefined;
}

export interface AppConfig {
  readonly file: string;
  readonly dir: string;
  readonly logLevel: string;
  readonly dataDir: string;
  readonly shutdownTimeoutMs: number;
  readonly pluginsFile: string;
  readonly adminListen: string;
  readonly pipelines: readonly PipelineConfig[];
}

/** Reads and parses a YAML config file (env interpolation included); no validation. */
export function readConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError([`${file}: cannot read: ${(error as Error).message}`]);
  }
  const doc = parseDocument(text);
  if (doc.errors.length > 0) throw new ConfigError(doc.errors.map((e) => `${file}: invalid YAML: ${e.message}`));
  const value = interpolateEnv(doc.toJS(), env, file);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ConfigError([`${file}: the top level must be a mapping`]);
  return value as Record<string, unknown>;
}

type RawSlot = { type: string; name: string; required: boolean; max_in_flight: number; retry: Record<string, number> };

/**
 * Validates a whole config: the root, every pipeline, and each component against the schema its
 * definition declares. Collects every problem instead of stopping at the first.
 */
export function validateConfig(raw: Record<string, unknown>, file: string, registry: ComponentRegistry): AppConfig {
  const problems: string[] = [];
  const { pipelines: rawPipelines, ...rootRaw } = raw;
  const root = validateSection<any>(ROOT_SCHEMA, rootRaw, file);
  problems.push(...root.problems);
  if (!Array.isArray(rawPipelines) || rawPipelines.length === 0) {
    problems.push(`${file}: key "pipelines": must be a non-empty list of pipelines`);
  }
  const pipelines: PipelineConfig[] = [];
  const names = new Set<string>();
  (Array.isArray(rawPipelines) ? rawPipelines : []).forEach((entry: unknown, index: number) => {
    const label = typeof (entry as any)?.name === 'string' && (entry as any).name ? `"${(entry as any).name}"` : `#${index}`;
    const where = `${file}: pipeline ${label}`;
    const pipeline = validatePipeline(entry, where, registry, problems);
    if (!pipeline) return;
    if (names.has(pipeline.name)) problems.push(`${where}: key "name": duplicate pipeline name`);
    names.add(pipeline.name);
    pipelines.push(pipeline);
  });
  if (problems.length > 0) throw new ConfigError(problems);
  const dir = path.dirname(path.resolve(file));
  return {
    file,
    dir,
    logLevel: root.config.log_level,
    dataDir: path.resolve(root.config.data_dir),
    shutdownTimeoutMs: root.config.shutdown_timeout_ms,
    pluginsFile: root.config.plugins_file ? path.resolve(dir, root.config.plugins_file) : '',
    adminListen: root.config.admin.listen,
    pipelines,
  };
}

function validatePipeline(entry: unknown, where: string, registry: ComponentRegistry, problems: string[]): PipelineConfig | undefined {
  if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
    problems.push(`${where}: must be a mapping with name, source and sinks`);
    return undefined;
  }
  const { source, sinks, dead_letter: deadLetter, ...rest } = entry as Record<string, unknown>;
  const settings = validateSection<any>(PIPELINE_SCHEMA, rest, where);
  problems.push(...settings.problems);
  if (settings.config && !settings.config.name) problems.push(`${where}: key "name": must be a non-empty string`);

  const sourceConfig = validateSource(source, `${where}: source`, registry, problems);
  if (!Array.isArray(sinks) || sinks.length === 0) problems.push(`${where}: key "sinks": must be a non-empty list of sinks`);
  const sinkConfigs = (Array.isArray(sinks) ? sinks : []).map((sink, i) => validateSink(sink, `${where}: sinks[${i}]`, `sinks[${i}]`, registry, problems));
  const deadLetterConfig = deadLetter === undefined || deadLetter === null
    ? undefined
    : validateSink(deadLetter, `${where}: dead_letter`, 'dead_letter', registry, problems);
  const sinkNames = new Set<string>();
  for (const sink of sinkConfigs) {
    if (!sink) continue;
    if (sinkNames.has(sink.name)) problems.push(`${where}: sink name "${sink.name}" is used twice; give each a distinct "name"`);
    sinkNames.add(sink.name);
  }
  if (!settings.config || !sourceConfig || sinkConfigs.some((s) => !s) || (deadLetter && !deadLetterConfig)) return undefined;

  const c = settings.config;
  const pipeline: PipelineConfig = {
    name: c.name as PipelineName,
    actorField: c.actor_field,
    requireActor: c.require_actor === 'auto'
      ? (sinkConfigs as SinkConfig[]).some((sink) => registry.findSink(sink.type)?.chainStore === true)
      : c.require_actor,
    nakDelayMs: c.nak_delay_ms,
    progressIntervalMs: c.progress_interval_ms,
    batch: {
      maxEvents: c.batch.max_events,
      maxBytes: c.batch.max_bytes,
      intervalMs: c.batch.interval_ms,
      maxInFlight: c.batch.max_in_flight,
      maxBufferedBytes: c.batch.max_buffered_bytes,
      eager: c.batch.flush === 'eager' || (c.batch.flush === 'auto' && registry.findSource(sourceConfig.type)?.flush === 'eager'),
    },
    maxEventBytes: c.max_event_bytes,
    source: sourceConfig,
    sinks: sinkConfigs as SinkConfig[],
    deadLetter: deadLetterConfig,
  };
  if (pipeline.batch.maxBufferedBytes < pipeline.batch.maxBytes) {
    problems.push(`${where}: key "batch.max_buffered_bytes" (${pipeline.batch.maxBufferedBytes}) must be at least batch.max_bytes (${pipeline.batch.maxBytes})`);
  }
  const definition = registry.findSource(sourceConfig.type);
  if (definition?.check) {
    const maxSinkTimeoutMs = Math.max(...pipeline.sinks.filter((s) => s.required).map((s) => s.retry.attemptTimeoutMs), 0);
    for (const message of definition.check(sourceConfig.options, { batch: pipeline.batch, maxSinkTimeoutMs, nakDelayMs: pipeline.nakDelayMs })) {
      problems.push(`${where}: source: ${message}`);
    }
  }
  return pipeline;
}

function validateSource(value: unknown, where: string, registry: ComponentRegistry, problems: string[]) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    problems.push(`${where}: must be a mapping with a "type"`);
    return undefined;
  }
  const { type, ...options } = value as Record<string, unknown>;
  if (typeof type !== 'string' || !type) {
    problems.push(`${where}: key "type": must name a source type (known: ${registry.sourceTypes().join(', ')})`);
    return undefined;
  }
  const definition = registry.findSource(type);
  if (!definition) {
    problems.push(`${where}: key "type": unknown source type "${type}" (known: ${registry.sourceTypes().join(', ')})`);
    return undefined;
  }
  const result = validateSection<Record<string, unknown>>(definition.schema, options, `${where} (${type})`);
  problems.push(...result.problems);
  return result.config ? { type, options: result.config } : undefined;
}

function validateSink(value: unknown, where: string, defaultName: string, registry: ComponentRegistry, problems: string[]): SinkConfig | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    problems.push(`${where}: must be a mapping with a "type"`);
    return undefined;
  }
  const raw = value as Record<string, unknown>;
  const slotRaw: Record<string, unknown> = {};
  const options: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(raw)) (key in SINK_SLOT_SCHEMA ? slotRaw : options)[key] = v;
  const slot = validateSection<RawSlot>(SINK_SLOT_SCHEMA, slotRaw, where);
  problems.push(...slot.problems);
  if (!slot.config) return undefined;
  const type = slot.config.type;
  const definition = type ? registry.findSink(type) : undefined;
  if (!definition) {
    problems.push(`${where}: key "type": ${type ? `unknown sink type "${type}"` : 'must name a sink type'} (known: ${registry.sinkTypes().join(', ')})`);
    return undefined;
  }
  const component = validateSection<Record<string, unknown>>(definition.schema, options, `${where} (${type})`);
  problems.push(...component.problems);
  if (!component.config) return undefined;
  const r = slot.config.retry;
  return {
    type,
    name: slot.config.name || (defaultName === 'dead_letter' ? 'dead_letter' : type),
    required: slot.config.required,
    maxInFlight: slot.config.max_in_flight,
    retry: {
      maxAttempts: r.max_attempts!,
      initialBackoffMs: r.initial_backoff_ms!,
      maxBackoffMs: r.max_backoff_ms!,
      maxElapsedMs: r.max_elapsed_ms!,
      attemptTimeoutMs: r.timeout_ms!,
    },
    options: component.config,
  };
}
