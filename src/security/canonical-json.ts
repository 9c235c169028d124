/**
 * RFC 8785 JSON Canonicalization Scheme (JCS): the one byte form auditpipe hashes and signs.
 * Keys sorted by UTF-16 code units, no whitespace, ECMAScript number and string serialisation.
 */
import canonicalize from 'canonicalize';

/** A value JCS cannot represent (non-finite number, lone surrogate, bigint, undefined, cycle). */
export class CanonicalJsonError extends Error {
  override readonly name = 'CanonicalJsonError';
}

/** The RFC 8785 canonical form of `value`; throws `CanonicalJsonError` saying why it has none. */
export function canonicalJson(value: unknown): string {
  let text: string | undefined;
  try {
    text = canonicalize(value);
  } catch (error) {
    throw new CanonicalJsonError(`value has no RFC 8785 canonical form: ${(error as Error).message}`);
  }
  if (typeof text !== 'string') {
    throw new CanonicalJsonError(`value has no RFC 8785 canonical form: ${typeof value} is not JSON`);
  }
  return text;
}
