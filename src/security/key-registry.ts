/**
 * The registry of public keys clients sign audit events with: key id → key, optionally bound to
 * the actors it may sign for and to a validity window (for rotation). Loaded from config (PEM
 * text, PEM files or JWKs, inline or in a file); never from the repository.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { isRfc3339 } from '../core/time.ts';
import { MAX_KEY_ID_CHARS, type SignatureAlgorithm } from './signature-algorithms.ts';

export class KeyRegistryError extends Error {
  override readonly name = 'KeyRegistryError';
}

export interface RegisteredKey {
  readonly id: string;
  readonly publicKey: KeyObject;
  /** Algorithms this key verifies (from its type, narrowed by a JWK `alg`). */
  readonly algorithms: readonly SignatureAlgorithm[];
  /** When set, the key may sign only for these actor ids. */
  readonly actors?: ReadonlySet<string>;
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  /**
   * What bytes this key's signatures cover: `rfc8785` (auditpipe's form, the default) or
   * `argus-legacy` (the pipe-joined form argus's Go SDK signs; docs/argus.md).
   */
  readonly format?: SignatureFormat;
}

export type SignatureFormat = 'rfc8785' | 'argus-legacy';
export const SIGNATURE_FORMATS: readonly SignatureFormat[] = ['rfc8785', 'argus-legacy'];

/** One key as the config gives it. Exactly one of `pem`, `pem_file`, `jwk`. */
export interface SignatureKeySpec {
  readonly id?: string;
  readonly pem?: string;
  readonly pem_file?: string;
  readonly jwk?: Record<string, unknown>;
  readonly actors?: readonly string[];
  readonly not_before?: string;
  readonly not_after?: string;
  readonly format?: string;
}

export interface KeyRegistry {
  get(id: string): RegisteredKey | undefined;
  readonly size: number;
  ids(): string[];
}

const MIN_RSA_BITS = 2048;
const SPEC_KEYS = new Set(['id', 'pem', 'pem_file', 'jwk', 'actors', 'not_before', 'not_after', 'format']);

export class StaticKeyRegistry implements KeyRegistry {
  private readonly keys = new Map<string, RegisteredKey>();

  constructor(keys: readonly RegisteredKey[] = []) {
    for (const key of keys) this.add(key);
  }

  add(key: RegisteredKey): void {
    if (this.keys.has(key.id)) throw new KeyRegistryError(`signature key id ${JSON.stringify(key.id)} is defined twice`);
    this.keys.set(key.id, key);
  }

  get(id: string): RegisteredKey | undefined {
    return this.keys.get(id);
  }

  get size(): number {
    return this.keys.size;
  }

  ids(): string[] {
    return [...this.keys.keys()];
  }
}

function algorithmsFor(key: KeyObject, where: string, jwkAlg?: unknown): SignatureAlgorithm[] {
  let algorithms: SignatureAlgorithm[];
  switch (key.asymmetricKeyType) {
    case 'ed25519':
      algorithms = ['EdDSA'];
      break;
    case 'rsa':
    case 'rsa-pss': {
      const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
      if (bits < MIN_RSA_BITS) throw new KeyRegistryError(`${where}: RSA key of ${bits} bits is too short (at least ${MIN_RSA_BITS})`);
      algorithms = key.asymmetricKeyType === 'rsa' ? ['RS256', 'PS256'] : ['PS256'];
      break;
    }
    default:
      throw new KeyRegistryError(`${where}: key type ${key.asymmetricKeyType} is not supported (use Ed25519 or RSA)`);
  }
  if (jwkAlg !== undefined) {
    if (typeof jwkAlg !== 'string' || !algorithms.includes(jwkAlg as SignatureAlgorithm)) {
      throw new KeyRegistryError(`${where}: jwk "alg" ${JSON.stringify(jwkAlg)} does not fit a ${key.asymmetricKeyType} key (allowed: ${algorithms.join(', ')})`);
    }
    algorithms = [jwkAlg as SignatureAlgorithm];
  }
  return algorithms;
}

function parseTime(value: unknown, where: string, field: string): Date | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (value instanceof Date) return value;
  if (typeof value !== 'string' || !isRfc3339(value)) {
    throw new KeyRegistryError(`${where}: ${field} must be an RFC 3339 time, e.g. 2026-01-01T00:00:00Z`);
  }
  return new Date(value);
}

/** Builds one registry entry; `baseDir` resolves a relative `pem_file`. */
export function loadKeySpec(spec: SignatureKeySpec, index: number, baseDir: string): RegisteredKey {
  const label = typeof spec?.id === 'string' && spec.id ? `signature key ${JSON.stringify(spec.id)}` : `signature key #${index}`;
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) throw new KeyRegistryError(`${label}: must be a mapping`);
  for (const key of Object.keys(spec)) {
    if (!SPEC_KEYS.has(key)) throw new KeyRegistryError(`${label}: unknown key "${key}" (known: ${[...SPEC_KEYS].join(', ')})`);
  }
  const sources = [spec.pem, spec.pem_file, spec.jwk].filter((v) => v !== undefined && v !== null && v !== '');
  if (sources.length !== 1) throw new KeyRegistryError(`${label}: give exactly one of pem, pem_file, jwk`);
  const jwk = spec.jwk;
  const id = spec.id ?? (jwk && typeof jwk.kid === 'string' ? jwk.kid : undefined);
  if (typeof id !== 'string' || id.length === 0) throw new KeyRegistryError(`${label}: "id" is required (or a jwk "kid")`);
  if (id.length > MAX_KEY_ID_CHARS) throw new KeyRegistryError(`${label}: id is longer than ${MAX_KEY_ID_CHARS} characters`);

  let publicKey: KeyObject;
  if (jwk) {
    if (typeof jwk !== 'object' || Array.isArray(jwk)) throw new KeyRegistryError(`${label}: jwk must be a JSON Web Key object`);
    if ('d' in jwk || 'p' in jwk) throw new KeyRegistryError(`${label}: the jwk holds private key material; register the public key only`);
    const { kid: _kid, alg: _alg, use: _use, key_ops: _ops, ...material } = jwk;
    try {
      publicKey = createPublicKey({ key: material as import('node:crypto').JsonWebKey, format: 'jwk' });
    } catch (error) {
      throw new KeyRegistryError(`${label}: not a usable public JWK (${(error as Error).message})`);
    }
  } else {
    let text = spec.pem;
    if (spec.pem_file) {
      const file = path.resolve(baseDir, spec.pem_file);
      try {
        text = readFileSync(file, 'utf8');
      } catch (error) {
        throw new KeyRegistryError(`${label}: cannot read pem_file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
      }
    }
    if (typeof text !== 'string' || !text.includes('-----BEGIN')) throw new KeyRegistryError(`${label}: expected a PEM public key ("-----BEGIN PUBLIC KEY-----")`);
    if (/PRIVATE KEY-----/.test(text)) throw new KeyRegistryError(`${label}: the PEM holds a private key; register the public key only`);
    try {
      publicKey = createPublicKey(text);
    } catch {
      throw new KeyRegistryError(`${label}: not a PEM public key (SPKI "PUBLIC KEY" or PKCS#1 "RSA PUBLIC KEY")`);
    }
  }
  const algorithms = algorithmsFor(publicKey, label, jwk?.alg);
  let actors: Set<string> | undefined;
  if (spec.actors !== undefined && spec.actors !== null) {
    if (!Array.isArray(spec.actors) || spec.actors.length === 0 || spec.actors.some((a) => typeof a !== 'string' || a === '')) {
      throw new KeyRegistryError(`${label}: actors must be a non-empty list of actor ids (leave it out to allow every actor)`);
    }
    actors = new Set(spec.actors);
  }
  const notBefore = parseTime(spec.not_before, label, 'not_before');
  const notAfter = parseTime(spec.not_after, label, 'not_after');
  if (notBefore && notAfter && notAfter <= notBefore) throw new KeyRegistryError(`${label}: not_after must be later than not_before`);
  const format = spec.format ?? 'rfc8785';
  if (!(SIGNATURE_FORMATS as readonly string[]).includes(format)) {
    throw new KeyRegistryError(`${label}: format must be one of ${SIGNATURE_FORMATS.join(', ')}`);
  }
  return { id, publicKey, algorithms, actors, notBefore, notAfter, format: format as SignatureFormat };
}

/**
 * Reads a keys file: YAML or JSON holding a list of key specs, `{keys: [specs]}`, or a JWKS
 * (`{keys: [jwk...]}`, each with a `kid`; optional non-standard members `actors`,
 * `not_before`, `not_after`).
 */
export function readKeysFile(file: string): SignatureKeySpec[] {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new KeyRegistryError(`signature keys file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  const list = Array.isArray(doc) ? doc : (doc as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(list)) throw new KeyRegistryError(`signature keys file ${file}: must hold a list of keys or {keys: [...]}`);
  return list.map((entry: Record<string, unknown>) => {
    if (entry && typeof entry === 'object' && typeof entry.kty === 'string') {
      const { actors, not_before, not_after, format, ...jwk } = entry;
      return { jwk, actors, not_before, not_after, format } as SignatureKeySpec;
    }
    return entry as SignatureKeySpec;
  });
}

/** Builds a registry from inline specs plus an optional keys file; every problem is reported at once. */
export function buildKeyRegistry(specs: readonly SignatureKeySpec[], keysFile: string | undefined, baseDir: string): StaticKeyRegistry {
  const all = [...specs];
  const problems: string[] = [];
  let fileDir = baseDir;
  if (keysFile) {
    const file = path.resolve(baseDir, keysFile);
    fileDir = path.dirname(file);
    try {
      all.push(...readKeysFile(file).map((spec) => ({ ...spec, __dir: fileDir }) as SignatureKeySpec));
    } catch (error) {
      problems.push((error as Error).message);
    }
  }
  const registry = new StaticKeyRegistry();
  all.forEach((spec, index) => {
    const { __dir: dir, ...clean } = spec as SignatureKeySpec & { __dir?: string };
    try {
      registry.add(loadKeySpec(clean, index, dir ?? baseDir));
    } catch (error) {
      problems.push((error as Error).message);
    }
  });
  if (problems.length > 0) throw new KeyRegistryError(problems.join('\n'));
  return registry;
}
