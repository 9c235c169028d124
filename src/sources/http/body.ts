/**
 * Hostile-input policy of the HTTP source: how a request body is read (size, gzip), decoded
 * (strict UTF-8) and checked before JSON.parse builds it (nesting depth, duplicate keys, lone
 * surrogate escapes), and the server's connection limits and timeouts. docs/decisions.md says why.
 */
import type { IncomingMessage, Server, ServerOptions } from 'node:http';
import { isUtf8 } from 'node:buffer';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import type { HttpSourceConfig } from './schema.ts';

const gunzipAsync = promisify(gunzip);

/** A request the body policy refuses: answered as `{error, details}` with `status`. */
export class BodyError extends Error {
  readonly status: number;
  readonly details: string;
  readonly headers: Record<string, string> = {};
  constructor(status: number, error: string, details: string) {
    super(error);
    this.status = status;
    this.details = details;
  }
}

const GZIP_ENCODINGS = new Set(['gzip', 'x-gzip']);

/**
 * The body, decompressed when `Content-Encoding: gzip`; `limit` bounds both the bytes received
 * and the bytes decompressed, so a gzip bomb stops at `limit` bytes of output (413).
 */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const encoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  const gzipped = GZIP_ENCODINGS.has(encoding);
  if (!gzipped && encoding !== 'identity') {
    throw new BodyError(415, 'unsupported content encoding', `send the body as identity or gzip, not ${encoding}`);
  }
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    throw new BodyError(413, 'payload too large', `body of ${declared} bytes is over the limit of ${limit} bytes`);
  }
  const received = await receive(req, limit);
  if (!gzipped) return received;
  try {
    return await gunzipAsync(received, { maxOutputLength: limit });
  } catch (error) {
    if ((error as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new BodyError(413, 'payload too large', `decompressed body is over the limit of ${limit} bytes`);
    }
    throw new BodyError(400, 'invalid gzip body', (error as Error).message);
  }
}

/** Collects at most `limit` bytes; past it, fails with a 413 (the caller discards the rest). */
function receive(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) return void chunks.push(chunk);
      chunks.length = 0;
      req.off('data', onData);
      req.off('end', onEnd);
      reject(new BodyError(413, 'payload too large', `body is over the limit of ${limit} bytes`));
    };
    const onEnd = () => resolve(Buffer.concat(chunks, size));
    // The client went away or a timeout closed the connection: nobody is left to answer.
    const aborted = () => reject(new BodyError(400, 'request aborted', 'the connection closed before the whole body arrived'));
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', aborted);
    req.once('close', () => { if (!req.complete) aborted(); });
  });
}

/** Most bytes `discardBody` drops before it gives up and lets the answer close the connection. */
const MAX_DISCARDED_BYTES = 64 * 1024 * 1024;

/**
 * Before an early 413: reads and drops the rest of the body (at most 64 MiB, at most `lingerMs`),
 * so a client still sending reads the answer. Node closes a connection whose request it did not
 * read to the end as soon as the answer is out, and the kernel then answers the client's next
 * bytes with a reset, which can destroy the 413 before the client read it.
 */
export function discardBody(req: IncomingMessage, lingerMs: number): Promise<void> {
  if (req.complete || req.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    let discarded = 0;
    const done = () => {
      clearTimeout(timer);
      req.off('data', onData);
      resolve();
    };
    const onData = (chunk: Buffer) => {
      discarded += chunk.length;
      if (discarded > MAX_DISCARDED_BYTES) done();
    };
    const timer = setTimeout(done, lingerMs);
    req.on('data', onData);
    req.once('end', done);
    req.once('close', done);
    req.resume();
  });
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Strict UTF-8: a body with invalid bytes is refused, never stored with U+FFFD in their place. */
export function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}

/** What `scanJson` found: an error for the whole text, or errors per item of a top-level array. */
export interface JsonScan {
  readonly whole?: string;
  readonly items: ReadonlyMap<number, string>;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;

/**
 * Checks JSON text for what JSON.parse accepts but auditpipe refuses: nesting deeper than
 * `maxDepth` (events are frozen, hashed and serialised recursively), a key repeated in one object
 * (JSON.parse keeps the last silently; a signer or another parser may have kept the first) and
 * a `\uD800`-style escape that is not half of a surrogate pair (it has no UTF-8 form, so two
 * different events would hash alike). One loop with an explicit depth count, never recursion,
 * so 100,000 levels cost a scan and no stack. Syntax is left to JSON.parse. When the text is a
 * top-level array, a problem inside an item is that item's error, so its neighbours can go on;
 * the top-level array itself counts as one level.
 */
export function scanJson(text: string, maxDepth: number): JsonScan {
  const items = new Map<number, string>();
  const topArray = firstSignificant(text) === OPEN_ARRAY;
  /** Keys seen per open object; undefined for arrays. */
  const keys: Array<Set<string> | undefined> = [];
  let depth = 0;
  let expectKey = false;
  let item = 0;
  /** Inside an item already failed: only brackets are followed, to find where it ends. */
  let skipping = false;
  let nextBackslash = text.indexOf('\\');

  const fail = (message: string): string | undefined => {
    if (!topArray || depth < 1) return message;
    items.set(item, message);
    skipping = true;
    return undefined;
  };

  for (let i = 0; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const start = i + 1;
      let escaped = false;
      let problem: string | undefined;
      for (i = start; i < text.length; i += 1) {
        // Jump to the string's end or its next escape: indexOf is native, a loop per char is not.
        if (nextBackslash !== -1 && nextBackslash < i) nextBackslash = text.indexOf('\\', i);
        const quote = text.indexOf('"', i);
        if (quote === -1) return { items };
        if (nextBackslash === -1 || nextBackslash > quote) {
          i = quote;
          break;
        }
        i = nextBackslash;
        escaped = true;
        i += 1;
        if (skipping || problem || text.charCodeAt(i) !== 0x75 /* u */) continue;
        const unit = parseInt(text.slice(i + 1, i + 5), 16);
        if (unit >= 0xdc00 && unit <= 0xdfff) problem = 'a \\u escape holds a lone surrogate (a low half with no high half before it)';
        else if (unit >= 0xd800 && unit <= 0xdbff) {
          const next = text.slice(i + 5, i + 7) === '\\u' ? parseInt(text.slice(i + 7, i + 11), 16) : NaN;
          if (next >= 0xdc00 && next <= 0xdfff) i += 6;
          else problem = 'a \\u escape holds a lone surrogate (a high half with no low half after it)';
        }
        i += 4;
      }
      if (skipping) continue;
      if (problem) {
        const whole = fail(problem);
        if (whole) return { whole, items };
        continue;
      }
      const set = keys[depth - 1];
      if (expectKey && set) {
        expectKey = false;
        const raw = text.slice(start, i);
        const key = escaped ? safeParseString(raw) : raw;
        if (key === undefined) continue;
        if (set.has(key)) {
          const whole = fail(`key ${JSON.stringify(key.length > 64 ? `${key.slice(0, 64)}…` : key)} appears twice in one object`);
          if (whole) return { whole, items };
          continue;
        }
        set.add(key);
      }
      continue;
    }
    if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      depth += 1;
      if (skipping) continue;
      if (depth > maxDepth) {
        const whole = fail(`JSON nests deeper than ${maxDepth} levels`);
        if (whole) return { whole, items };
        continue;
      }
      keys[depth - 1] = c === OPEN_OBJECT ? new Set() : undefined;
      expectKey = c === OPEN_OBJECT;
      continue;
    }
    if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      depth -= 1;
      if (!skipping) keys.length = Math.max(depth, 0);
      continue;
    }
    if (c === COMMA) {
      if (topArray && depth === 1) {
        item += 1;
        skipping = false;
        keys.length = 1;
      } else if (!skipping) expectKey = keys[depth - 1] !== undefined;
    }
  }
  return { items };
}

function firstSignificant(text: string): number {
  for (let i = 0; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d && c !== 0xfeff) return c;
  }
  return -1;
}

function safeParseString(raw: string): string | undefined {
  try {
    return JSON.parse(`"${raw}"`) as string;
  } catch {
    return undefined;
  }
}

/**
 * Lines of an NDJSON body, each decoded and checked on its own: one bad line (invalid UTF-8,
 * too deep, a duplicate key, malformed) fails alone. Splits on the 0x0A byte, which never occurs
 * inside a UTF-8 multi-byte sequence.
 */
export function ndjsonLines(body: Buffer, maxDepth: number): Array<{ index: number; value?: unknown; error?: string }> {
  const items: Array<{ index: number; value?: unknown; error?: string }> = [];
  let index = 0;
  for (const line of utf8Lines(body)) {
    if (line === undefined) {
      items.push({ index, error: `line ${index + 1}: not valid UTF-8` });
      index += 1;
      continue;
    }
    if (line.charCodeAt(0) !== OPEN_OBJECT && line.trim() === '') continue;
    // A line is one event: a problem inside a line holding an array fails the whole line.
    const checked = parseChecked(line, maxDepth, false);
    if (checked.error !== undefined) items.push({ index, error: `line ${index + 1}: ${checked.error}` });
    else items.push({ index, value: checked.value });
    index += 1;
  }
  return items;
}

/** The body's lines, each undefined when it is not valid UTF-8 (decoded per line only then). */
function utf8Lines(body: Buffer): Array<string | undefined> {
  if (isUtf8(body)) return body.toString('utf8').split('\n');
  const lines: Array<string | undefined> = [];
  for (let start = 0; start <= body.length;) {
    let end = body.indexOf(0x0a, start);
    if (end < 0) end = body.length;
    lines.push(decodeUtf8(body.subarray(start, end)));
    start = end + 1;
  }
  return lines;
}

/**
 * A JSON body parsed under the policy: a problem with the whole text throws a 400; problems
 * inside items of a top-level array come back per index, for the caller to fail those items alone.
 */
export function parseJsonBody(body: Buffer, maxDepth: number): { value: unknown; itemErrors: ReadonlyMap<number, string> } {
  const text = decodeUtf8(body);
  if (text === undefined) throw new BodyError(400, 'invalid UTF-8', 'the body is not valid UTF-8');
  const checked = parseChecked(text, maxDepth, true);
  if (checked.error !== undefined) throw new BodyError(400, checked.malformed ? 'malformed JSON' : 'invalid JSON', checked.error);
  return { value: checked.value, itemErrors: checked.itemErrors };
}

type Checked =
  | { readonly value: unknown; readonly itemErrors: ReadonlyMap<number, string>; readonly error?: undefined }
  | { readonly error: string; readonly malformed: boolean };

const NO_ERRORS: ReadonlyMap<number, string> = new Map();
/** `keysIn` recurses once per level: past this configured depth only the loop of scanJson runs. */
const QUICK_MAX_DEPTH = 1_000;

/**
 * JSON.parse under the policy. Clean text, nearly all of it, takes the quick path: `countKeys`
 * counts the keys the text writes and JSON.parse builds; equal counts mean no key repeated, with
 * no Set or key string per object. Anything else (too deep, a surrogate-range escape, a count
 * that differs, a syntax error) goes through `scanJson`, which alone words the errors, so both
 * paths answer the same text the same way. With `itemsAlone`, a problem inside an item of a
 * top-level array is that item's error; without it, it is the whole text's.
 */
function parseChecked(text: string, maxDepth: number, itemsAlone: boolean): Checked {
  const topArray = itemsAlone && firstSignificant(text) === OPEN_ARRAY;
  const written = maxDepth <= QUICK_MAX_DEPTH ? countKeys(text, maxDepth, topArray) : undefined;
  let parsed: Parsed | undefined;
  if (written !== undefined) {
    parsed = parse(text);
    if (parsed.ok && keysMatch(parsed.value, written, topArray)) return { value: parsed.value, itemErrors: NO_ERRORS };
  }
  // The policy's verdict comes before the syntax's, as when only the exact scan ran.
  const scan = scanJson(text, maxDepth);
  const problem = scan.whole ?? (itemsAlone ? undefined : scan.items.values().next().value);
  if (problem !== undefined) return { error: problem, malformed: false };
  parsed ??= parse(text);
  if (!parsed.ok) return { error: itemsAlone ? parsed.message : `malformed JSON: ${parsed.message}`, malformed: true };
  return { value: parsed.value, itemErrors: scan.items };
}

type Parsed = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly message: string };

/** JSON.parse, its error kept rather than thrown: each text is parsed at most once. */
function parse(text: string): Parsed {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    return { ok: false, message: (error as Error).message };
  }
}

/**
 * How many keys the text writes (its colons outside strings), per item of a top-level array
 * when `topArray`, else in one count; undefined when the text needs `scanJson`: nesting deeper
 * than `maxDepth`, a `\u` escape in the surrogate range, an unterminated string.
 */
function countKeys(text: string, maxDepth: number, topArray: boolean): number[] | undefined {
  const counts = [0];
  let depth = 0;
  let nextBackslash = text.indexOf('\\');
  for (let i = 0; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      for (i += 1; ; i += 1) {
        const quote = text.indexOf('"', i);
        if (quote === -1) return undefined;
        if (nextBackslash !== -1 && nextBackslash < i) nextBackslash = text.indexOf('\\', i);
        if (nextBackslash === -1 || nextBackslash > quote) {
          i = quote;
          break;
        }
        i = nextBackslash + 1;
        if (text.charCodeAt(i) === 0x75 /* u */) {
          const unit = parseInt(text.slice(i + 1, i + 5), 16);
          if (unit >= 0xd800 && unit <= 0xdfff) return undefined;
        }
      }
    } else if (c === COLON) counts[counts.length - 1]! += 1;
    else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      depth += 1;
      if (depth > maxDepth) return undefined;
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) depth -= 1;
    else if (c === COMMA && topArray && depth === 1) counts.push(0);
  }
  return counts;
}

/** Whether the parsed value holds as many keys as the text wrote, per item of a top-level array. */
function keysMatch(value: unknown, written: readonly number[], topArray: boolean): boolean {
  if (!topArray) return keysIn(value) === written[0];
  if (!Array.isArray(value) || (value.length > 0 && value.length !== written.length)) return false;
  for (let i = 0; i < value.length; i += 1) if (keysIn(value[i]) !== written[i]) return false;
  return true;
}

/** Keys of every object in a parsed value (its depth is bounded by maxDepth, checked before). */
function keysIn(value: unknown): number {
  if (typeof value !== 'object' || value === null) return 0;
  let n = 0;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i += 1) n += keysIn(value[i]);
    return n;
  }
  for (const key in value) n += 1 + keysIn((value as Record<string, unknown>)[key]);
  return n;
}

/** Node's timeouts and connection limit from the config (the defaults are in schema.ts). */
export function serverOptions(config: HttpSourceConfig): ServerOptions {
  const shortest = Math.min(config.headers_timeout_ms, config.request_timeout_ms);
  return {
    headersTimeout: shortest,
    requestTimeout: config.request_timeout_ms,
    keepAliveTimeout: config.keep_alive_timeout_ms,
    // Node checks both timeouts only this often (30 s by default): a quarter of the shortest.
    connectionsCheckingInterval: Math.max(100, Math.min(5_000, Math.floor(shortest / 4))),
  };
}

/** Settings Node takes on the server object only. */
export function limitServer(server: Server, config: HttpSourceConfig): void {
  server.maxConnections = config.max_connections;
  server.maxHeadersCount = 100;
}
