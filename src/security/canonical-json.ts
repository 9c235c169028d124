/**
 * RFC 8785 JSON Canonicalization Scheme (JCS): the one byte form auditpipe hashes and signs.
 * Keys sorted by UTF-16 code units, no whitespace, ECMAScript number and string serialisation.
 *
 * Written for auditpipe's inputs (values produced by JSON.parse) because it sits on the hot path
 * of every chain append, verification and signature check: the general-purpose `canonicalize`
 * package (toJSON unwrapping, cycle tracking, boxed primitives) was 5x slower than
 * JSON.stringify here. The tests compare both on the RFC vectors and on random values.
 */

/** A value JCS cannot represent (non-finite number, lone surrogate, bigint, undefined, function). */
export class CanonicalJsonError extends Error {
  override readonly name = 'CanonicalJsonError';
}

/** The RFC 8785 canonical form of `value`; throws `CanonicalJsonError` saying why it has none. */
export function canonicalJson(value: unknown): string {
  try {
    return serialize(value);
  } catch (error) {
    if (error instanceof CanonicalJsonError) throw error;
    // Deep nesting exhausts the stack: say so instead of a bare RangeError.
    throw new CanonicalJsonError(`value has no RFC 8785 canonical form: ${(error as Error).message}`);
  }
}

function fail(reason: string): never {
  throw new CanonicalJsonError(`value has no RFC 8785 canonical form: ${reason}`);
}

/** Characters JSON.stringify would escape, plus surrogates (checked for lone ones). */
const NEEDS_CARE = /["\\\u0000-\u001f\ud800-\udfff]/;

function serializeString(value: string): string {
  // Most strings need no escaping; quoting them directly avoids a JSON.stringify call per string.
  // Events are mostly short strings, where a loop costs less than running the regular expression.
  if (value.length <= 32) {
    for (let i = 0; i < value.length; i += 1) {
      const c = value.charCodeAt(i);
      if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return escaped(value);
    }
    return '"' + value + '"';
  }
  return NEEDS_CARE.test(value) ? escaped(value) : '"' + value + '"';
}

function escaped(value: string): string {
  if (!value.isWellFormed()) fail('lone surrogate in a string');
  return JSON.stringify(value);
}

function serialize(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return serializeString(value);
    case 'number':
      if (!Number.isFinite(value)) fail(`${value} is not a JSON number`);
      // ECMAScript Number-to-String is exactly JCS's number format (RFC 8785 §3.2.2.3).
      return String(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value)) {
        let out = '[';
        for (let i = 0; i < value.length; i += 1) {
          if (i > 0) out += ',';
          const item: unknown = value[i];
          out += item === undefined || typeof item === 'function' || typeof item === 'symbol' ? 'null' : serialize(item);
        }
        return out + ']';
      }
      if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return serialize((value as { toJSON(): unknown }).toJSON());
      const object = value as Record<string, unknown>;
      // Default sort compares UTF-16 code units, which is the order RFC 8785 §3.2.3 requires.
      const keys = Object.keys(object).sort();
      let out = '{';
      let first = true;
      for (const key of keys) {
        const item = object[key];
        if (item === undefined || typeof item === 'function' || typeof item === 'symbol') continue;
        out += (first ? '' : ',') + serializeString(key) + ':' + serialize(item);
        first = false;
      }
      return out + '}';
    }
    default:
      return fail(`${typeof value} is not JSON`);
  }
}
