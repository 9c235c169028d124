/**
 * Client signatures over audit events (format v1; docs/argus.md §"Signature canonical form" is
 * the normative description for implementers in other languages).
 *
 *   signed bytes = UTF-8( SIGNATURE_DOMAIN_TAG ‖ RFC 8785 canonical JSON of the event without
 *                         its signature fields )
 *
 * "The event" is the native event object auditpipe stores: `id`, `time`, `actorId`, ..., with an
 * argus `message` as the JSON value it holds (not its base64) and argus `timestamp` as `time`.
 * The signature fields are `signature`, `signatureAlgorithm`, `publicKeyId` and
 * `signatureVersion`. A signed event must carry its own `id` and `time`, so the stored event is
 * exactly what was signed and can be re-verified later.
 *
 * The server and the SDK both call `signingInput` below; there is no second implementation.
 */
import { createPrivateKey, sign as cryptoSign, verify as cryptoVerify, constants, type KeyObject } from 'node:crypto';
import type { JsonObject, JsonValue } from '../public/index.ts';
import { canonicalJson } from './canonical-json.ts';
import type { KeyRegistry, RegisteredKey, SignatureFormat } from './key-registry.ts';
import { MAX_KEY_ID_CHARS, SIGNATURE_ALGORITHMS, type SignatureAlgorithm } from './signature-algorithms.ts';

export { MAX_KEY_ID_CHARS, SIGNATURE_ALGORITHMS, type SignatureAlgorithm };

export const SIGNATURE_VERSION = 1;
/** Domain separation: a signature over an event can never be replayed as another protocol's. */
export const SIGNATURE_DOMAIN_TAG = 'auditpipe/event-signature/v1\n';
/**
 * `signatureFormat` is not sent by clients: the server stamps it on the stored event when the
 * signature verified in the argus-legacy form (absent = rfc8785), so the stored, hashed record
 * says which form was checked.
 */
export const SIGNATURE_FIELDS = ['signature', 'signatureAlgorithm', 'publicKeyId', 'signatureVersion', 'signatureFormat'] as const;

/** Base64 text of the largest signature accepted (RSA 8192: 1024 bytes → 1368 characters). */
export const MAX_SIGNATURE_CHARS = 2048;

export type SignatureMode = 'off' | 'verify-if-present' | 'required';
export const SIGNATURE_MODES: readonly SignatureMode[] = ['off', 'verify-if-present', 'required'];

/** Why a signature check failed; a bounded set, used as a metric label. */
export type SignatureFailureReason =
  | 'unsigned'
  | 'malformed'
  | 'unknown_key'
  | 'key_not_allowed_for_actor'
  | 'key_not_yet_valid'
  | 'key_expired'
  | 'algorithm_not_allowed'
  | 'bad_signature'
  | 'legacy_form_not_allowed'
  | 'ambiguous_legacy_form';
export const SIGNATURE_FAILURE_REASONS: readonly SignatureFailureReason[] = [
  'unsigned', 'malformed', 'unknown_key', 'key_not_allowed_for_actor', 'key_not_yet_valid', 'key_expired',
  'algorithm_not_allowed', 'bad_signature', 'legacy_form_not_allowed', 'ambiguous_legacy_form',
];

export type SignatureCheck =
  | { readonly ok: true; readonly signed: false }
  | { readonly ok: true; readonly signed: true; readonly keyId: string; readonly algorithm: SignatureAlgorithm; readonly format?: 'argus-legacy' }
  | { readonly ok: false; readonly reason: SignatureFailureReason; readonly detail: string };

/** The event without its signature fields: what the signature covers. */
export function signedContent(event: JsonObject): Record<string, JsonValue> {
  const content: Record<string, JsonValue> = {};
  for (const [key, value] of Object.entries(event)) {
    if (!(SIGNATURE_FIELDS as readonly string[]).includes(key)) content[key] = value;
  }
  return content;
}

/** The exact bytes signed for `event` (its signature fields, if any, are left out). */
export function signingInput(event: JsonObject): Buffer {
  return Buffer.from(SIGNATURE_DOMAIN_TAG + canonicalJson(signedContent(event)), 'utf8');
}

/** The fields argus's Go SDK joins with `|`, in its order (docs/argus.md §"Legacy argus signatures"). */
export const ARGUS_LEGACY_FIELDS = [
  'traceId', 'time', 'eventType', 'action', 'status', 'actorType', 'actorId', 'targetType', 'targetId', 'message', 'metadata',
] as const;

/** Go's encoding/json output for decoded JSON: map keys sorted, compact, `<`, `>`, `&`, U+2028/9 escaped. */
function goJson(value: JsonValue): string {
  const sorted = (v: JsonValue): JsonValue => {
    if (Array.isArray(v)) return v.map(sorted);
    if (v !== null && typeof v === 'object') {
      const out: Record<string, JsonValue> = {};
      for (const key of Object.keys(v).sort()) out[key] = sorted((v as Record<string, JsonValue>)[key]!);
      return out;
    }
    return v;
  };
  return JSON.stringify(sorted(value))
    .replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

/** The legacy field values in order; absent fields are "", as the Go SDK writes nil pointers. */
export function argusLegacyParts(event: JsonObject): string[] {
  const text = (field: string): string => {
    const value = event[field];
    if (value === undefined || value === null) return '';
    if (typeof value !== 'string') throw new Error(`${field} must be a string for an argus-legacy signature`);
    return value;
  };
  return ARGUS_LEGACY_FIELDS.map((field) => {
    if (field === 'message') {
      const message = event.message;
      return message === undefined || message === null ? '' : Buffer.from(JSON.stringify(message), 'utf8').toString('base64');
    }
    if (field === 'metadata') {
      const metadata = event.metadata;
      return metadata === undefined || metadata === null ? '{}' : goJson(metadata);
    }
    return text(field);
  });
}

/**
 * The bytes argus's Go SDK signs: the fields above joined with `|`, no domain tag. Throws when a
 * field holds `|`: then two different events join to the same bytes, so the signature proves
 * nothing about which one was meant (docs/decisions.md "Legacy argus signatures").
 */
export function argusLegacySigningInput(event: JsonObject): Buffer {
  const parts = argusLegacyParts(event);
  const ambiguous = ARGUS_LEGACY_FIELDS.filter((field, i) => field !== 'message' && field !== 'metadata' && parts[i]!.includes('|'));
  if (parts[ARGUS_LEGACY_FIELDS.indexOf('metadata')]!.includes('|')) ambiguous.push('metadata');
  if (ambiguous.length > 0) throw new AmbiguousLegacyFormError(ambiguous);
  return Buffer.from(parts.join('|'), 'utf8');
}

export class AmbiguousLegacyFormError extends Error {
  override readonly name = 'AmbiguousLegacyFormError';
  readonly fields: readonly string[];
  constructor(fields: readonly string[]) {
    super(`the argus legacy signed form is ambiguous: ${fields.join(', ')} contain "|"; such events are refused`);
    this.fields = fields;
  }
}

/** True when the event carries any signature field. */
export function hasSignatureFields(event: JsonObject): boolean {
  return SIGNATURE_FIELDS.some((field) => event[field] !== undefined && event[field] !== null && event[field] !== '');
}

function rsaPssOptions(key: KeyObject) {
  return { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 };
}

/** Signs raw bytes with `algorithm`; returns the standard (padded) base64 signature. */
export function signBytes(bytes: Buffer, privateKey: KeyObject, algorithm: SignatureAlgorithm): string {
  let signature: Buffer;
  if (algorithm === 'EdDSA') signature = cryptoSign(null, bytes, privateKey);
  else if (algorithm === 'RS256') signature = cryptoSign('sha256', bytes, privateKey);
  else signature = cryptoSign('sha256', bytes, rsaPssOptions(privateKey));
  return signature.toString('base64');
}

function verifyBytes(bytes: Buffer, signature: Buffer, publicKey: KeyObject, algorithm: SignatureAlgorithm): boolean {
  try {
    if (algorithm === 'EdDSA') return cryptoVerify(null, bytes, publicKey, signature);
    if (algorithm === 'RS256') return cryptoVerify('sha256', bytes, publicKey, signature);
    return cryptoVerify('sha256', bytes, rsaPssOptions(publicKey), signature);
  } catch {
    // A key of the wrong type for the algorithm, or a signature of the wrong length.
    return false;
  }
}

/** The algorithm a private key signs with by default: EdDSA for Ed25519, RS256 for RSA, PS256 for RSA-PSS. */
export function defaultAlgorithm(key: KeyObject): SignatureAlgorithm {
  switch (key.asymmetricKeyType) {
    case 'ed25519': return 'EdDSA';
    case 'rsa': return 'RS256';
    case 'rsa-pss': return 'PS256';
    default: throw new Error(`keys of type ${key.asymmetricKeyType} cannot sign audit events (use Ed25519 or RSA)`);
  }
}

export interface EventSigner {
  readonly keyId: string;
  readonly algorithm: SignatureAlgorithm;
  /** Returns the base64 signature of `bytes` (the output of `signingInput`). */
  sign(bytes: Buffer): Promise<string> | string;
}

/** A signer from a PEM (PKCS#8 or PKCS#1) private key or a `KeyObject`. */
export function privateKeySigner(keyId: string, key: KeyObject | string, algorithm?: SignatureAlgorithm): EventSigner {
  const privateKey = typeof key === 'string' ? createPrivateKey(key) : key;
  if (privateKey.type !== 'private') throw new Error('a signer needs a private key');
  const chosen = algorithm ?? defaultAlgorithm(privateKey);
  if (!keyAllowsAlgorithm(privateKey, chosen)) throw new Error(`a ${privateKey.asymmetricKeyType} key cannot sign with ${chosen}`);
  return { keyId, algorithm: chosen, sign: (bytes) => signBytes(bytes, privateKey, chosen) };
}

export function keyAllowsAlgorithm(key: KeyObject, algorithm: SignatureAlgorithm): boolean {
  switch (key.asymmetricKeyType) {
    case 'ed25519': return algorithm === 'EdDSA';
    case 'rsa': return algorithm === 'RS256' || algorithm === 'PS256';
    case 'rsa-pss': return algorithm === 'PS256';
    default: return false;
  }
}

/**
 * Returns a copy of `event` with the signature fields set. The event must carry its `id` and
 * `time` (see the header of this file).
 */
export async function signEvent<T extends JsonObject>(event: T, signer: EventSigner): Promise<T & Record<(typeof SIGNATURE_FIELDS)[number], JsonValue>> {
  if (typeof event.id !== 'string' || typeof event.time !== 'string') {
    throw new Error('a signed event must carry its own "id" and "time" strings');
  }
  const signature = await signer.sign(signingInput(event));
  return {
    ...signedContent(event),
    signature,
    signatureAlgorithm: signer.algorithm,
    publicKeyId: signer.keyId,
    signatureVersion: SIGNATURE_VERSION,
  } as T & Record<(typeof SIGNATURE_FIELDS)[number], JsonValue>;
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const BASE64URL = /^[A-Za-z0-9_-]+$/;

function decodeSignature(text: string): Buffer | undefined {
  if (text.length > MAX_SIGNATURE_CHARS) return undefined;
  if (BASE64.test(text) && text.length % 4 === 0) return Buffer.from(text, 'base64');
  if (BASE64URL.test(text)) return Buffer.from(text, 'base64url');
  return undefined;
}

export interface VerifyOptions {
  /** The actor id the event is attributed to (the pipeline's actor field). */
  readonly actor: string | undefined;
  /** When the event was received: the instant key validity is judged at. */
  readonly at: Date;
}

/**
 * Checks the signature of one event against the registry. `mode` decides what an unsigned event
 * is: fine (`off`, `verify-if-present`) or a failure (`required`). With `off` nothing is checked.
 */
export function checkEventSignature(event: JsonObject, registry: KeyRegistry, mode: SignatureMode, options: VerifyOptions): SignatureCheck {
  if (mode === 'off') return { ok: true, signed: false };
  if (!hasSignatureFields(event)) {
    return mode === 'required'
      ? { ok: false, reason: 'unsigned', detail: 'this pipeline requires signed events; the event has no signature' }
      : { ok: true, signed: false };
  }
  return verifyEventSignature(event, registry, options);
}

/** Verifies an event that carries signature fields. */
export function verifyEventSignature(event: JsonObject, registry: KeyRegistry, options: VerifyOptions): SignatureCheck {
  const { signature, signatureAlgorithm, publicKeyId, signatureVersion } = event;
  if (typeof signature !== 'string' || typeof signatureAlgorithm !== 'string' || typeof publicKeyId !== 'string' || !signature || !publicKeyId) {
    return malformed('signature, signatureAlgorithm and publicKeyId must all be non-empty strings');
  }
  if (signatureVersion !== undefined && signatureVersion !== null && signatureVersion !== SIGNATURE_VERSION) {
    return malformed(`signatureVersion ${JSON.stringify(signatureVersion).slice(0, 20)} is not supported (this server verifies version ${SIGNATURE_VERSION})`);
  }
  if (!(SIGNATURE_ALGORITHMS as readonly string[]).includes(signatureAlgorithm)) {
    return malformed(`signatureAlgorithm must be one of ${SIGNATURE_ALGORITHMS.join(', ')}`);
  }
  if (publicKeyId.length > MAX_KEY_ID_CHARS) return malformed(`publicKeyId is longer than ${MAX_KEY_ID_CHARS} characters`);
  const bytes = decodeSignature(signature);
  if (!bytes || bytes.length === 0) return malformed(`signature must be base64 (at most ${MAX_SIGNATURE_CHARS} characters)`);
  const key: RegisteredKey | undefined = registry.get(publicKeyId);
  // argus's legacy form does not cover the id (its Go SDK sends none; the server assigns one, as
  // argus did), so only the RFC 8785 form needs the client's id to store what was signed.
  const needsId = (key?.format ?? 'rfc8785') === 'rfc8785';
  if ((needsId && typeof event.id !== 'string') || typeof event.time !== 'string') {
    return malformed('a signed event must carry its own "id" and "time" (timestamp), so that what is stored is what was signed');
  }
  if (!key) return { ok: false, reason: 'unknown_key', detail: `public key id ${JSON.stringify(publicKeyId)} is not in the key registry` };
  if (key.notBefore && options.at < key.notBefore) {
    return { ok: false, reason: 'key_not_yet_valid', detail: `key ${key.id} is valid from ${key.notBefore.toISOString()}` };
  }
  if (key.notAfter && options.at >= key.notAfter) {
    return { ok: false, reason: 'key_expired', detail: `key ${key.id} expired at ${key.notAfter.toISOString()}` };
  }
  if (key.actors && (options.actor === undefined || !key.actors.has(options.actor))) {
    return { ok: false, reason: 'key_not_allowed_for_actor', detail: `key ${key.id} may not sign for actor ${JSON.stringify(options.actor ?? null)}` };
  }
  const algorithm = signatureAlgorithm as SignatureAlgorithm;
  if (!key.algorithms.includes(algorithm)) {
    return { ok: false, reason: 'algorithm_not_allowed', detail: `key ${key.id} verifies ${key.algorithms.join(', ')}, not ${algorithm}` };
  }
  const format: SignatureFormat = key.format ?? 'rfc8785';
  let input: Buffer;
  try {
    input = format === 'argus-legacy' ? argusLegacySigningInput(event) : signingInput(event);
  } catch (error) {
    if (error instanceof AmbiguousLegacyFormError) return { ok: false, reason: 'ambiguous_legacy_form', detail: error.message };
    return malformed((error as Error).message);
  }
  if (!verifyBytes(input, bytes, key.publicKey, algorithm)) {
    if (format === 'rfc8785' && matchesLegacyForm(event, bytes, key, algorithm)) {
      return {
        ok: false, reason: 'legacy_form_not_allowed',
        detail: `the signature is over argus's legacy pipe-joined form, but key ${key.id} is not marked format: argus-legacy`,
      };
    }
    return { ok: false, reason: 'bad_signature', detail: `the signature does not match the event under key ${key.id} (${algorithm}, ${format} form)` };
  }
  // `format` is named only for the legacy form, so an rfc8785 result is unchanged for existing callers.
  return format === 'argus-legacy' ? { ok: true, signed: true, keyId: key.id, algorithm, format } : { ok: true, signed: true, keyId: key.id, algorithm };
}

/** Only to give a clear refusal reason; a legacy-form match never makes the event accepted here. */
function matchesLegacyForm(event: JsonObject, signature: Buffer, key: RegisteredKey, algorithm: SignatureAlgorithm): boolean {
  try {
    return verifyBytes(Buffer.from(argusLegacyParts(event).join('|'), 'utf8'), signature, key.publicKey, algorithm);
  } catch {
    return false;
  }
}

function malformed(detail: string): SignatureCheck {
  return { ok: false, reason: 'malformed', detail };
}

export function isSignatureMode(value: unknown): value is SignatureMode {
  return typeof value === 'string' && (SIGNATURE_MODES as readonly string[]).includes(value);
}
