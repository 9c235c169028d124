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
  // A toJSON method may itself call canonicalJson: the shared pieces are then in use.
  const pieces = sharedPieces.count === IDLE ? sharedPieces : new Pieces();
  pieces.count = 0;
  try {
    serialize(value, pieces);
    return pieces.join();
  } catch (error) {
    if (error instanceof CanonicalJsonError) throw error;
    // Deep nesting exhausts the stack: say so instead of a bare RangeError.
    throw new CanonicalJsonError(`value has no RFC 8785 canonical form: ${(error as Error).message}`);
  } finally {
    pieces.count = IDLE;
  }
}

const IDLE = -1;

/**
 * The pieces of the value being serialised, joined once at the end: concatenating them as they
 * come builds a tree of intermediate strings (it was most of an append's garbage) that hashing
 * then has to flatten anyway. The array is reused from call to call and never emptied (V8
 * releases an emptied array's storage), so serialising an event allocates little besides its text.
 */
class Pieces {
  readonly items: string[] = [];
  count = IDLE;

  add(piece: string): void {
    this.items[this.count++] = piece;
  }

  join(): string {
    this.items.length = this.count;
    return this.items.join('');
  }
}

const sharedPieces = new Pieces();

function fail(reason: string): never {
  throw new CanonicalJsonError(`value has no RFC 8785 canonical form: ${reason}`);
}

/** Characters JSON.stringify would escape, plus surrogates (checked for lone ones). */
const NEEDS_CARE = /["\\\u0000-\u001f\ud800-\udfff]/;

function needsEscaping(value: string): boolean {
  // Events are mostly short strings, where a loop costs less than running the regular expression.
  if (value.length > 32) return NEEDS_CARE.test(value);
  for (let i = 0; i < value.length; i += 1) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return true;
  }
  return false;
}

/** The canonical form of a string (what `canonicalJson` gives for one, without its general walk). */
export function canonicalString(value: string): string {
  if (!needsEscaping(value)) return `"${value}"`;
  if (!value.isWellFormed()) fail('lone surrogate in a string');
  return JSON.stringify(value);
}

function pushString(value: string, pieces: Pieces): void {
  // Most strings need no escaping: quoting them directly avoids a JSON.stringify call per string.
  if (!needsEscaping(value)) {
    pieces.add('"');
    pieces.add(value);
    pieces.add('"');
    return;
  }
  if (!value.isWellFormed()) fail('lone surrogate in a string');
  pieces.add(JSON.stringify(value));
}

/**
 * Sorts `keys` in place by UTF-16 code units (the order RFC 8785 §3.2.3 requires, and what `<`
 * compares). Objects have few keys, often already in order: insertion sort allocates nothing,
 * where Array.prototype.sort allocated more per event than all the rest of the serialisation.
 */
function sortKeys(keys: string[]): void {
  for (let i = 1; i < keys.length; i += 1) {
    const key = keys[i]!;
    let j = i - 1;
    if (keys[j]! <= key) continue;
    while (j >= 0 && keys[j]! > key) {
      keys[j + 1] = keys[j]!;
      j -= 1;
    }
    keys[j + 1] = key;
  }
}

/** Objects with more keys than this are sorted by Array.prototype.sort (insertion sort is quadratic). */
const INSERTION_SORT_MAX = 32;

function serialize(value: unknown, pieces: Pieces): void {
  switch (typeof value) {
    case 'string':
      pushString(value, pieces);
      return;
    case 'number':
      if (!Number.isFinite(value)) fail(`${value} is not a JSON number`);
      // ECMAScript Number-to-String is exactly JCS's number format (RFC 8785 §3.2.2.3).
      pieces.add(String(value));
      return;
    case 'boolean':
      pieces.add(value ? 'true' : 'false');
      return;
    case 'object': {
      if (value === null) {
        pieces.add('null');
        return;
      }
      if (Array.isArray(value)) {
        pieces.add('[');
        for (let i = 0; i < value.length; i += 1) {
          if (i > 0) pieces.add(',');
          const item: unknown = value[i];
          if (item === undefined || typeof item === 'function' || typeof item === 'symbol') pieces.add('null');
          else serialize(item, pieces);
        }
        pieces.add(']');
        return;
      }
      if (typeof (value as { toJSON?: unknown }).toJSON === 'function') {
        serialize((value as { toJSON(): unknown }).toJSON(), pieces);
        return;
      }
      const object = value as Record<string, unknown>;
      const keys = Object.keys(object);
      if (keys.length > INSERTION_SORT_MAX) keys.sort();
      else sortKeys(keys);
      pieces.add('{');
      let first = true;
      for (const key of keys) {
        const item = object[key];
        if (item === undefined || typeof item === 'function' || typeof item === 'symbol') continue;
        if (!first) pieces.add(',');
        pushString(key, pieces);
        pieces.add(':');
        serialize(item, pieces);
        first = false;
      }
      pieces.add('}');
      return;
    }
    default:
      return fail(`${typeof value} is not JSON`);
  }
}
