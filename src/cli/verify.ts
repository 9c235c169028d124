/**
 * `auditpipe verify`: checks a chain store offline and read-only. Exit 0 intact, 1 findings,
 * 2 cannot verify (store unreachable, no store there, config naming none, unreadable key),
 * 64 usage error (as every command).
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { ConfigError } from '../core/config.ts';
import { KeyError, loadPrivateKeyEnv, loadPublicKeyFile } from '../security/keys.ts';
import { buildKeyRegistry } from '../security/key-registry.ts';
import { verifyStoredSignatures, type SignatureReport } from '../security/verify-signatures.ts';
import { verifyStore, type VerifyReport } from '../security/verify.ts';
import { openEmbedded, openPostgres, type ChainDb } from '../sinks/postgres/db.ts';
import { SCHEMA_NAME } from '../sinks/postgres/migrations.ts';
import { embeddedPath, generatedKeyPath, type PostgresSinkConfig } from '../sinks/postgres/sink.ts';
import { ChainStore } from '../sinks/postgres/store.ts';
import type { S3SinkConfig } from '../sinks/s3/index.ts';
import { parseCommand, UsageError } from './usage.ts';

export const VERIFY_HELP = `Usage: auditpipe verify [--config FILE] [--pipeline NAME] [--actor ACTOR] [--public-key FILE] [--s3] [--json]
       auditpipe verify --database-url URL [--schema NAME] --public-key FILE [--actor ACTOR] [--s3-bucket B ...] [--json]
       auditpipe verify --data-dir DIR [--pipeline NAME] [--public-key FILE] [--actor ACTOR] [--json]

Recomputes every hash chain (or one --actor) from the stored bytes and checks sequences, links,
head rows, and the signed checkpoints (signature, their chain, Merkle root, every attested head).
With --s3 it also reads the checkpoints anchored in S3 Object Lock and checks that the store
still holds each of them and that every chain still matches the heads they attest, so a
database rewritten in full (hashes recomputed, checkpoints re-signed) is still caught.
Read-only. Exit 0: intact; 1: findings; 2: cannot verify (store unreachable, no store there,
no key or config to read); 64: usage error.

  --config FILE       the auditpipe config naming the store (default config/auditpipe.yml)
  --pipeline NAME     which pipeline's postgres sink (needed when several have one)
  --database-url URL  a PostgreSQL store directly (or AUDITPIPE_VERIFY_DATABASE_URL)
  --schema NAME       its schema (default auditpipe)
  --data-dir DIR      an embedded store: the auditpipe data dir, or the store directory itself
  --public-key FILE   the trusted checkpoint public key (default: the configured key's .pub)
  --actor ACTOR       verify only this actor's chain
  --s3                compare with the checkpoints anchored by the pipeline's s3 sink(s)
                      (bucket, endpoint and credentials from the config), or by --s3-bucket
  --s3-bucket NAME    the anchoring bucket directly (credentials: the standard AWS
                      environment, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / profile)
  --s3-prefix P       its key prefix (default auditpipe); anchors are under P/PIPELINE/checkpoints/
  --s3-endpoint URL   S3 endpoint (MinIO, ...; default AWS or AWS_ENDPOINT_URL_S3)
  --s3-region R       region (default AWS_REGION)
  --s3-path-style     path-style URLs, as most self-hosted servers need
  --signature-keys F  also re-verify the client signatures of stored events against the keys
                      in F (the signature_keys_file format: a list, {keys: [...]}, or a JWKS)
  --workers N         threads checking the rows of a PostgreSQL store, each reading chunks of
                      the table with a binary COPY on a connection of its own (default:
                      the CPU count, at most 8, and one per 100,000 events; 1 = one thread;
                      the embedded store and the single executable use one)
  --json              print the report as JSON
`;

/** The store, key or anchors cannot be read (exit 2); a wrong command line is a {@link UsageError} (64). */
class CannotVerify extends Error {
  override readonly name = 'CannotVerify';
}

const usageError = (message: string) => new UsageError('verify', message, VERIFY_HELP);

interface Target {
  readonly open: () => Promise<ChainDb>;
  /** A PostgreSQL store's URL, which the verifier's fast read opens too. */
  readonly url?: string;
  readonly schema: string;
  readonly publicKeyFile?: string;
  readonly publicKeyEnv?: string;
  /** The pipeline the store belongs to (anchors live under its name). */
  readonly pipeline?: string;
  /** The pipeline's s3 sinks that anchor checkpoints, from the config. */
  readonly anchorSinks?: readonly S3SinkConfig[];
}

function sinkTargets(options: PostgresSinkConfig, dataDir: string, configDir: string, pipeline: string): Target {
  const publicKeyFile = options.checkpoint_key_file
    ? [`${path.resolve(configDir, options.checkpoint_key_file)}.pub`, path.resolve(configDir, options.checkpoint_key_file)].find((f) => existsSync(f))
    : options.checkpoint_key_generate && existsSync(`${generatedKeyPath(dataDir, pipeline)}.pub`) ? `${generatedKeyPath(dataDir, pipeline)}.pub` : undefined;
  return {
    schema: options.schema,
    ...(publicKeyFile ? { publicKeyFile } : {}),
    ...(!options.checkpoint_key_file && options.checkpoint_key_env ? { publicKeyEnv: options.checkpoint_key_env } : {}),
    ...(options.url ? { url: options.url } : {}),
    open: options.url
      ? async () => openPostgres({ url: options.url, poolSize: 2, statementTimeoutMs: 600_000, readOnly: true })
      : () => openEmbedded(embeddedPath(options, dataDir, configDir, pipeline), 'auditpipe verify'),
  };
}

async function resolveTarget(values: Record<string, string | boolean | undefined>): Promise<Target> {
  const schema = (values.schema as string | undefined) ?? 'auditpipe';
  if (!SCHEMA_NAME.test(schema)) throw usageError(`--schema must match ${SCHEMA_NAME}`);
  const url = (values['database-url'] as string | undefined) ?? process.env.AUDITPIPE_VERIFY_DATABASE_URL;
  if (url) {
    return { schema, url, open: async () => openPostgres({ url, poolSize: 2, statementTimeoutMs: 600_000, readOnly: true }) };
  }
  const dataDir = values['data-dir'] as string | undefined;
  if (dataDir) {
    const pipeline = (values.pipeline as string | undefined) ?? 'default';
    const direct = existsSync(path.join(dataDir, 'PG_VERSION'));
    const dir = direct ? path.resolve(dataDir) : path.resolve(dataDir, 'chain', pipeline);
    if (!existsSync(path.join(dir, 'PG_VERSION'))) throw new CannotVerify(`no embedded store in ${dir}`);
    const keyFile = `${generatedKeyPath(path.resolve(direct ? path.dirname(path.dirname(dir)) : dataDir), pipeline)}.pub`;
    return { schema, open: () => openEmbedded(dir, 'auditpipe verify'), ...(existsSync(keyFile) ? { publicKeyFile: keyFile } : {}) };
  }
  const configFile = (values.config as string | undefined) ?? 'config/auditpipe.yml';
  // Loaded only here: the whole engine and every built-in component take a second to load.
  const { loadBuiltinApp } = await import('../builtins.ts');
  const { config } = await loadBuiltinApp({ configFile, ...(values.plugins ? { pluginsFile: values.plugins as string } : {}) });
  const candidates = config.pipelines.flatMap((pipeline) => [...pipeline.sinks, ...(pipeline.deadLetter ? [pipeline.deadLetter] : [])]
    .filter((sink) => sink.type === 'postgres')
    .map((sink) => ({ pipeline: pipeline.name as string, sink })));
  const wanted = values.pipeline as string | undefined;
  const matching = wanted ? candidates.filter((c) => c.pipeline === wanted) : candidates;
  if (matching.length === 0) {
    throw new CannotVerify(`${configFile}: ${wanted ? `pipeline "${wanted}" has no postgres sink` : 'no pipeline has a postgres sink'}`);
  }
  if (matching.length > 1) {
    throw usageError(`${configFile}: several postgres sinks (${matching.map((c) => `${c.pipeline}/${c.sink.name}`).join(', ')}); choose one with --pipeline`);
  }
  const { pipeline, sink } = matching[0]!;
  const anchorSinks = config.pipelines.find((p) => p.name === pipeline)!.sinks
    .filter((s) => s.type === 's3' && (s.options as unknown as S3SinkConfig).anchor_checkpoints)
    .map((s) => s.options as unknown as S3SinkConfig);
  return { ...sinkTargets(sink.options as unknown as PostgresSinkConfig, config.dataDir, config.dir, pipeline), pipeline, anchorSinks };
}

function loadTrustedKey(values: Record<string, string | boolean | undefined>, target: Target) {
  const file = (values['public-key'] as string | undefined) ?? target.publicKeyFile;
  if (file) return loadPublicKeyFile(file);
  if (target.publicKeyEnv) {
    const key = loadPrivateKeyEnv(target.publicKeyEnv);
    if (key) return { publicKey: key.publicKey, keyId: key.keyId };
  }
  return undefined;
}

function formatSignatures(report: SignatureReport): string {
  const lines = [`  client signatures: ${report.verified} verified, ${report.unsigned} events unsigned, ${report.findingsTotal} finding${report.findingsTotal === 1 ? '' : 's'}`];
  for (const finding of report.findings) {
    lines.push(`  - event-signature: actor ${JSON.stringify(finding.actor)} sequence ${finding.sequence} (event ${finding.eventId}): ${finding.reason}: ${finding.detail}`);
  }
  return `${lines.join('\n')}\n`;
}

export function formatReport(report: VerifyReport, where: string, anchorsNote?: string): string {
  const lines = [`auditpipe verify: ${where}`];
  lines.push(`  chains: ${report.actors} actors, ${report.events} events`);
  lines.push(report.lastCheckpoint
    ? `  checkpoints: ${report.checkpoints}, last #${report.lastCheckpoint.number} at ${report.lastCheckpoint.time} attesting ${report.lastCheckpoint.events} events; ${report.uncoveredEvents} events written since`
    : `  checkpoints: none`);
  lines.push(`  signatures: ${report.publicKeyId ? `checked against key ${report.publicKeyId}` : 'NOT checked (no public key)'}`);
  for (const anchors of report.anchors ?? []) lines.push(`  anchors: ${anchors.checkpoints} anchored checkpoints in ${anchors.where} compared`);
  if (!report.anchors && anchorsNote) lines.push(`  anchors: ${anchorsNote}`);
  lines.push(report.ok
    ? `  result: INTACT (${report.elapsedMs} ms)`
    : `  result: ${report.findingsTotal} finding${report.findingsTotal === 1 ? '' : 's'} (${report.elapsedMs} ms)`);
  for (const finding of report.findings) {
    const where = finding.actor !== null
      ? `actor ${JSON.stringify(finding.actor)} sequence ${finding.sequence}`
      : `checkpoint ${finding.checkpoint ?? '-'}`;
    lines.push(`  - ${finding.kind}: ${where}: ${finding.detail}`);
  }
  if (report.findings.length < report.findingsTotal) lines.push(`  ... and ${report.findingsTotal - report.findings.length} more`);
  return `${lines.join('\n')}\n`;
}

/** Measured: a worker thread pays for its start-up from about this many events (docs/benchmarks.md). */
const MIN_EVENTS_PER_THREAD = 100_000;

/** How many threads check the rows: --workers, or one per CPU (at most 8); one inside the single executable. */
async function verifyWorkers(option: string | undefined): Promise<number> {
  const count = option === undefined ? undefined : Number(option);
  if (count !== undefined && (!Number.isInteger(count) || count < 1 || count > 64)) throw usageError('--workers must be an integer from 1 to 64');
  // Worker threads load this program's modules from files, which the single executable does not have.
  if (await import('node:sea').then((m) => m.isSea(), () => false)) {
    if (count !== undefined && count > 1) process.stderr.write('auditpipe verify: the single executable walks the chains on one thread; --workers is ignored\n');
    return 1;
  }
  return count ?? Math.min(availableParallelism(), 8);
}

export async function verifyCommand(argv: string[]): Promise<number> {
  const parsed = parseCommand({
    command: 'verify',
    usage: VERIFY_HELP,
    options: {
      config: { type: 'string', short: 'c' },
      plugins: { type: 'string' },
      pipeline: { type: 'string' },
      actor: { type: 'string' },
      'public-key': { type: 'string' },
      'database-url': { type: 'string' },
      'data-dir': { type: 'string' },
      schema: { type: 'string' },
      s3: { type: 'boolean' },
      's3-bucket': { type: 'string' },
      's3-prefix': { type: 'string' },
      's3-endpoint': { type: 'string' },
      's3-region': { type: 'string' },
      's3-path-style': { type: 'boolean' },
      'signature-keys': { type: 'string' },
      workers: { type: 'string' },
      json: { type: 'boolean' },
    },
  }, argv);
  if (parsed.done !== undefined) return parsed.done;
  const values: Record<string, string | boolean | undefined> = parsed.values;
  // A wrong command line is reported before any store is opened.
  const workers = await verifyWorkers(values.workers as string | undefined);
  checkS3Flags(values);
  let db: ChainDb | undefined;
  try {
    const target = await resolveTarget(values);
    const trusted = loadTrustedKey(values, target);
    db = await target.open();
    const where = `${db.embedded ? 'embedded store' : 'PostgreSQL'} ${db.where} schema ${target.schema}`;
    // Without --workers, a small store is walked by fewer threads than CPUs (see ParallelVerify).
    const minEventsPerThread = values.workers === undefined ? MIN_EVENTS_PER_THREAD : 0;
    const store = new ChainStore(db, target.schema, target.url ? { parallelVerify: { url: target.url, workers, minEventsPerThread } } : {});
    await store.checkTables();
    const sources = await anchorSources(values, target);
    const anchors = [];
    for (const source of sources) {
      const read = await readAnchors(source);
      const { anchorEvidence } = await import('../sinks/s3/anchors.ts');
      anchors.push(anchorEvidence(read, await store.checkpoints(), trusted, source.where));
    }
    const report = await verifyStore(store, {
      ...(values.actor !== undefined ? { actor: values.actor as string } : {}),
      ...(trusted ? { publicKey: trusted } : {}),
      ...(sources.length > 0 ? { anchors } : {}),
    });
    const anchorsNote = sources.length === 0 && target.anchorSinks?.length ? 'NOT compared with the checkpoints anchored in S3 (add --s3)' : undefined;
    const keysFile = values['signature-keys'] as string | undefined;
    const signatures = keysFile
      ? await verifyStoredSignatures(store.rows(values.actor as string | undefined), buildKeyRegistry([], path.resolve(keysFile), process.cwd()))
      : undefined;
    const ok = report.ok && (signatures?.findingsTotal ?? 0) === 0;
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ store: where, ...report, ok, ...(signatures ? { signatures } : {}) }, null, 2)}\n`);
    } else {
      process.stdout.write(formatReport(report, where, anchorsNote));
      if (signatures) process.stdout.write(formatSignatures(signatures));
    }
    return ok ? 0 : 1;
  } catch (error) {
    if (error instanceof UsageError) throw error;
    const message = error instanceof ConfigError
      ? `invalid configuration:\n${error.problems.map((p) => `  - ${p}`).join('\n')}`
      : error instanceof CannotVerify || error instanceof KeyError ? error.message : `cannot verify: ${redact((error as Error).message)}`;
    process.stderr.write(`auditpipe verify: ${message}\n`);
    return 2;
  } finally {
    await db?.close().catch(() => undefined);
  }
}

interface AnchorSourceSpec {
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;
  readonly pipeline: string;
  readonly where: string;
}

function checkS3Flags(values: Record<string, string | boolean | undefined>): void {
  const flagged = ['s3-prefix', 's3-endpoint', 's3-region', 's3-path-style'].filter((flag) => values[flag] !== undefined);
  if (values['s3-bucket'] === undefined && flagged.length > 0) throw usageError(`--${flagged[0]} needs --s3-bucket`);
}

/** The S3 locations to compare with: the flags, or the pipeline's anchoring s3 sinks with --s3. */
async function anchorSources(values: Record<string, string | boolean | undefined>, target: Target): Promise<AnchorSourceSpec[]> {
  const bucket = values['s3-bucket'] as string | undefined;
  if (!bucket && !values.s3) return [];
  const pipeline = (values.pipeline as string | undefined) ?? target.pipeline ?? 'default';
  // The AWS SDK is loaded only for verifies that read S3 (it takes a good part of a second).
  const [{ S3Client }, { s3Settings }, { checkpointFolder }, { clientConfig }] = await Promise.all([
    import('@aws-sdk/client-s3'), import('../sinks/s3/index.ts'), import('../sinks/s3/object.ts'), import('../sinks/s3/sink.ts'),
  ]);
  // The verifier may retry reads (the sink makes one attempt per pipeline attempt).
  const readOnly = (config: ReturnType<typeof clientConfig>): S3Client => new S3Client({ ...config, maxAttempts: 3 });
  const spec = (client: S3Client, b: string, prefix: string): AnchorSourceSpec => ({
    client, bucket: b, prefix, pipeline, where: `s3://${b}/${checkpointFolder(prefix, pipeline)}`,
  });
  if (bucket) {
    const settings = s3Settings({
      bucket, prefix: (values['s3-prefix'] as string | undefined) ?? 'auditpipe',
      endpoint: (values['s3-endpoint'] as string | undefined) ?? '', region: (values['s3-region'] as string | undefined) ?? '',
      force_path_style: Boolean(values['s3-path-style']), access_key_id: '', secret_access_key: '', session_token: '',
      lock_mode: 'COMPLIANCE', retention: '1d', legal_hold: false, checksum: 'sha256', dedup: 'if-none-match',
      anchor_checkpoints: true, connect_timeout_ms: 10_000, anchor_timeout_ms: 30_000,
    });
    return [spec(readOnly(clientConfig(settings)), bucket, settings.prefix)];
  }
  if (!target.anchorSinks?.length) {
    throw new CannotVerify(`--s3: ${target.pipeline ? `pipeline "${target.pipeline}" has no s3 sink with anchor_checkpoints` : 'no config names the anchoring bucket'}; give --s3-bucket (and --s3-endpoint, --s3-prefix) instead`);
  }
  return target.anchorSinks.map((sink) => spec(readOnly(clientConfig(s3Settings(sink))), sink.bucket, sink.prefix));
}

async function readAnchors(source: AnchorSourceSpec) {
  try {
    const { readAnchoredCheckpoints } = await import('../sinks/s3/anchors.ts');
    return await readAnchoredCheckpoints(source, AbortSignal.timeout(300_000));
  } catch (error) {
    const e = error as Error & { $metadata?: { httpStatusCode?: number } };
    const status = e.$metadata?.httpStatusCode;
    throw new CannotVerify(`cannot read the anchored checkpoints in ${source.where}: ${e.name}: ${e.message || 'no message'}${status ? ` (HTTP ${status})` : ''}`);
  } finally {
    // Used once; its sockets must not keep the process alive.
    source.client.destroy();
  }
}

/** Connection errors may echo the URL; never print its password. */
function redact(message: string): string {
  return message.replace(/(postgres(?:ql)?:\/\/)[^@\s]*@/gi, '$1***@');
}
