/**
 * Client-signature checking as a source applies it: the mode, the key registry, and the
 * `auditpipe_signature_failures_total{pipeline,reason}` counter. Any source (HTTP, NATS, a
 * plugin) spreads `signatureConfigSchema` into its convict schema and calls
 * `SignaturePolicy.fromConfig`; the counter is registered once per metrics registry, so several
 * sources in one process share it.
 */
import * as promClient from 'prom-client';
import type { AuditEvent, ComponentContext, JsonObject } from '../public/index.ts';
import { buildKeyRegistry, type KeyRegistry, type SignatureKeySpec } from './key-registry.ts';
import {
  checkEventSignature, SIGNATURE_FAILURE_REASONS, SIGNATURE_MODES, type SignatureFailureReason, type SignatureMode,
} from './signatures.ts';

export interface SignatureConfig {
  signatures: SignatureMode;
  signature_keys: SignatureKeySpec[];
  signature_keys_file: string;
}

/** The convict schema keys of `SignatureConfig`, for a source's own schema. */
export const signatureConfigSchema = {
  signatures: {
    doc: 'Client signatures: off (not checked), verify-if-present (unsigned events accepted, signed ones verified), required.',
    format: SIGNATURE_MODES as unknown as string[],
    default: 'off',
  },
  signature_keys: {
    doc: 'Public keys clients sign with: [{id, pem | pem_file | jwk, actors?, not_before?, not_after?}].',
    format: (value: unknown) => {
      if (!Array.isArray(value) || value.some((v) => v === null || typeof v !== 'object' || Array.isArray(v))) throw new Error('must be a list of key mappings');
    },
    default: [] as unknown[],
  },
  signature_keys_file: { doc: 'YAML/JSON file with more keys (a list, {keys: [...]}, or a JWKS); relative to the config file.', format: String, default: '' },
};

/** Problems a source's `check()` can report before start. */
export function signatureConfigProblems(config: SignatureConfig): string[] {
  return config.signatures !== 'off' && config.signature_keys.length === 0 && !config.signature_keys_file
    ? [`signatures: ${config.signatures} needs at least one key in signature_keys or signature_keys_file`]
    : [];
}

/**
 * The event to store after a signature check: `signatureFormat` set to the verified form when it
 * was argus-legacy, and removed otherwise (a client cannot choose what the record claims).
 */
export function withVerifiedFormat(event: AuditEvent, verdict: SignatureVerdict, mode: SignatureMode): AuditEvent {
  if (mode === 'off' || !verdict.ok) return event;
  const { signatureFormat: given, ...rest } = event.data;
  if (given === undefined && !verdict.format) return event;
  // The values are already deeply frozen; only the new top level needs freezing.
  const data: JsonObject = Object.freeze(verdict.format ? { ...rest, signatureFormat: verdict.format } : rest);
  const json = JSON.stringify(data);
  return Object.freeze({ ...event, data, json, bytes: Buffer.byteLength(json) });
}

export type SignatureVerdict =
  | { readonly ok: true; readonly format?: 'argus-legacy' }
  | { readonly ok: false; readonly reason: SignatureFailureReason; readonly message: string };

const FAILURES = Symbol.for('auditpipe.signature-failures');

function failureCounter(registry: promClient.Registry): promClient.Counter<'pipeline' | 'reason'> {
  const holder = registry as promClient.Registry & { [FAILURES]?: promClient.Counter<'pipeline' | 'reason'> };
  holder[FAILURES] ??= new promClient.Counter({
    name: 'auditpipe_signature_failures_total',
    help: 'Events whose client signature failed verification, by reason.',
    labelNames: ['pipeline', 'reason'],
    registers: [registry],
  });
  return holder[FAILURES];
}

export class SignaturePolicy {
  readonly mode: SignatureMode;
  readonly registry: KeyRegistry | undefined;
  private readonly pipeline: string;
  private readonly failures: promClient.Counter<'pipeline' | 'reason'>;

  constructor(mode: SignatureMode, registry: KeyRegistry | undefined, context: Pick<ComponentContext, 'pipeline' | 'metrics'>) {
    if (mode !== 'off' && (!registry || registry.size === 0)) {
      // argus shipped an empty registry that rejected every signed event; refuse to start instead.
      throw new Error(`signatures: ${mode} needs at least one key in signature_keys or signature_keys_file`);
    }
    this.mode = mode;
    this.registry = registry;
    this.pipeline = context.pipeline;
    this.failures = failureCounter(context.metrics);
    for (const reason of SIGNATURE_FAILURE_REASONS) this.failures.inc({ pipeline: this.pipeline, reason }, 0);
  }

  /** Loads the key registry (relative paths against the config dir) and builds the policy. */
  static fromConfig(config: SignatureConfig, context: Pick<ComponentContext, 'pipeline' | 'metrics' | 'configDir'>): SignaturePolicy {
    const configured = config.signature_keys.length > 0 || Boolean(config.signature_keys_file);
    const registry = configured ? buildKeyRegistry(config.signature_keys, config.signature_keys_file || undefined, context.configDir) : undefined;
    return new SignaturePolicy(config.signatures, registry, context);
  }

  /** The event to store after `check` (see the function `withVerifiedFormat`). */
  withVerifiedFormat(event: AuditEvent, verdict: SignatureVerdict): AuditEvent {
    return withVerifiedFormat(event, verdict, this.mode);
  }

  /**
   * Checks one event as the client sent it (`raw`, native form) and counts a failure.
   * `actor` is the event's actor id, `receivedAt` when it arrived (key validity is judged then).
   */
  check(raw: JsonObject, actor: string | undefined, receivedAt: string | Date): SignatureVerdict {
    if (this.mode === 'off' || !this.registry) return { ok: true };
    const result = checkEventSignature(raw, this.registry, this.mode, { actor, at: new Date(receivedAt) });
    if (result.ok) return result.signed && result.format ? { ok: true, format: result.format } : { ok: true };
    this.failures.inc({ pipeline: this.pipeline, reason: result.reason });
    return { ok: false, reason: result.reason, message: `signature verification failed (${result.reason}): ${result.detail}` };
  }
}
