/**
 * The verifier's fast check that a stored row's columns say what its hashed record says, without
 * building the record as objects (JSON.parse of every record was half of the verifier's time).
 * It reads the record's UTF-8 bytes, so the verifier can check rows straight from the bytes
 * PostgreSQL sent.
 *
 * The check answers true only when the record has exactly the layout auditpipe writes,
 *
 *   {"actor":A,"event":{…},"id":I,"receivedAt":"R","seq":S}
 *
 * with A, I and S the row's actor, event id and sequence as canonical JSON, R a time equal to
 * the row's receipt column, and the event a well-formed JSON object whose top-level "id" is the
 * row's id and whose top-level "time" equals the row's event-time column. Anything else (a
 * mismatch, or merely another layout) returns false and the verifier falls back to the full
 * check, which says precisely what is wrong. So true is always right; false is only a hint.
 */
import { canonicalJson } from './canonical-json.ts';

export interface RecordColumns {
  readonly actor: string;
  readonly seq: number;
  readonly eventId: string;
  readonly canonical: string;
  readonly eventTimeMs: number;
  readonly receivedAtMs: number;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

let scratch: Buffer = Buffer.allocUnsafe(64 * 1024);

/** `recordBytesAgree` for a row read as text (the embedded store's rows). */
export function recordAgrees(row: RecordColumns): boolean {
  // Lone surrogates cannot be written as UTF-8: the byte comparison below could not tell them apart.
  if (!row.canonical.isWellFormed() || !row.eventId.isWellFormed() || !row.actor.isWellFormed()) return false;
  const needed = (row.canonical.length + row.eventId.length + row.actor.length) * 3;
  if (needed > scratch.length) scratch = Buffer.allocUnsafe(needed);
  const end = scratch.write(row.canonical, 0, 'utf8');
  const idEnd = end + scratch.write(row.eventId, end, 'utf8');
  const actorEnd = idEnd + scratch.write(row.actor, idEnd, 'utf8');
  return recordBytesAgree(scratch, 0, end, idEnd, actorEnd, end, idEnd, row.seq, row.eventTimeMs, row.receivedAtMs);
}

/**
 * Whether the record `bytes[start, end)` says what the columns say: its actor and event id are
 * the UTF-8 in `bytes[actorStart, actorEnd)` and `bytes[idStart, idEnd)`, and sequence, event
 * time and receipt time (epoch milliseconds) are the given ones.
 */
export function recordBytesAgree(
  bytes: Uint8Array, start: number, end: number, actorStart: number, actorEnd: number, idStart: number, idEnd: number,
  seq: number, eventTimeMs: number, receivedAtMs: number,
): boolean {
  try {
    return agrees(bytes, start, end, actorStart, actorEnd, idStart, idEnd, seq, eventTimeMs, receivedAtMs);
  } catch {
    return false; // e.g. nesting deeper than the stack: the full check reports it
  }
}

/**
 * A string column as canonical JSON: undefined when that is the value itself in quotes (no
 * character needs an escape), else the escaped bytes.
 */
function escapedForm(b: Uint8Array, from: number, to: number): Buffer | undefined {
  for (let k = from; k < to; k += 1) {
    const c = b[k]!;
    if (c === QUOTE || c === BACKSLASH || c < 0x20) {
      return Buffer.from(canonicalJson(Buffer.from(b.buffer, b.byteOffset + from, to - from).toString('utf8')), 'utf8');
    }
  }
  return undefined;
}

/** Whether b[at, at + length) is the canonical JSON string of b[from, to) (`escaped`: its escapedForm). */
function isQuoted(b: Uint8Array, at: number, length: number, from: number, to: number, escaped: Buffer | undefined): boolean {
  if (escaped) return length === escaped.length && equalAt(b, at, escaped, 0, length);
  return length === to - from + 2 && b[at] === QUOTE && b[at + length - 1] === QUOTE && equalAt(b, at + 1, b, from, length - 2);
}

function agrees(
  b: Uint8Array, start: number, end: number, actorStart: number, actorEnd: number, idStart: number, idEnd: number,
  seq: number, eventTimeMs: number, receivedAtMs: number,
): boolean {
  // `{"actor":A,"event":`
  if (end - start < 64 || !equalAt(b, start, ACTOR_KEY, 0, ACTOR_KEY.length)) return false;
  const actorEscaped = escapedForm(b, actorStart, actorEnd);
  const actorLength = actorEscaped ? actorEscaped.length : actorEnd - actorStart + 2;
  const actorAt = start + ACTOR_KEY.length;
  if (!isQuoted(b, actorAt, actorLength, actorStart, actorEnd, actorEscaped)) return false;
  const eventStart = actorAt + actorLength + EVENT_KEY.length;
  if (!equalAt(b, eventStart - EVENT_KEY.length, EVENT_KEY, 0, EVENT_KEY.length)) return false;

  // From the end: `,"seq":S}`.
  let i = end - 1;
  if (b[i] !== CLOSE_BRACE) return false;
  let value = 0;
  let scale = 1;
  i -= 1;
  while (i > start && b[i]! >= 0x30 && b[i]! <= 0x39) {
    value += (b[i]! - 0x30) * scale;
    scale *= 10;
    i -= 1;
  }
  const digits = end - 2 - i;
  if (digits === 0 || digits > 15 || (digits > 1 && b[i + 1] === 0x30) || value !== seq) return false;
  i -= SEQ_KEY.length - 1;
  if (!equalAt(b, i, SEQ_KEY, 0, SEQ_KEY.length)) return false;

  // `,"receivedAt":"R"`: an ISO time holds no quote, so its opening quote is the last one before.
  const receivedEnd = i - 1;
  if (b[receivedEnd] !== QUOTE) return false;
  let receivedStart = receivedEnd - 1;
  while (receivedStart > start && b[receivedStart] !== QUOTE) receivedStart -= 1;
  if (timeMillis(b, receivedStart + 1, receivedEnd) !== receivedAtMs) return false;
  i = receivedStart - (RECEIVED_KEY.length - 1);
  if (i < start || !equalAt(b, i, RECEIVED_KEY, 0, RECEIVED_KEY.length - 1)) return false;

  // `,"id":"I"`
  const idEscaped = escapedForm(b, idStart, idEnd);
  const idLength = idEscaped ? idEscaped.length : idEnd - idStart + 2;
  const idAt = i - idLength;
  if (idAt < eventStart || !isQuoted(b, idAt, idLength, idStart, idEnd, idEscaped)) return false;
  const eventEnd = idAt - ID_KEY.length;
  if (!equalAt(b, eventEnd, ID_KEY, 0, ID_KEY.length)) return false;

  if (!scanEvent(b, eventStart, eventEnd) || eventId.start < 0 || eventTime.start < 0 || eventTime.escaped) return false;
  return isQuoted(b, eventId.start, eventId.end - eventId.start, idStart, idEnd, idEscaped)
    && timeMillis(b, eventTime.start + 1, eventTime.end - 1) === eventTimeMs;
}

const ACTOR_KEY = Buffer.from('{"actor":');
const EVENT_KEY = Buffer.from(',"event":');
const SEQ_KEY = Buffer.from(',"seq":');
const RECEIVED_KEY = Buffer.from(',"receivedAt":"');
const ID_KEY = Buffer.from(',"id":');
const KEY_ID = Buffer.from('"id"');
const KEY_TIME = Buffer.from('"time"');
const TRUE = Buffer.from('true');
const FALSE = Buffer.from('false');
const NULL = Buffer.from('null');

function equalAt(a: Uint8Array, aStart: number, b: Uint8Array, bStart: number, length: number): boolean {
  if (aStart < 0 || aStart + length > a.length) return false;
  for (let k = 0; k < length; k += 1) if (a[aStart + k] !== b[bStart + k]) return false;
  return true;
}

/** Where the event's top-level "id" and "time" string values are (start -1: absent). */
const eventId = { start: -1, end: -1, escaped: false };
const eventTime = { start: -1, end: -1, escaped: false };

/** Whether the string scanned last held an escape. */
let escaped = false;

const MAX_DEPTH = 256;
/** The open containers while scanning: the byte that opened each. */
const open = new Uint8Array(MAX_DEPTH);
const EXPECT_VALUE = 0;
const EXPECT_KEY = 1;
const AFTER_VALUE = 2;

/**
 * Validates that b[start, end) is exactly one JSON object with no whitespace, and finds its
 * top-level "id" and "time" string values; false when it is not (or one of them repeats or is
 * not a string, or a top-level key holds an escape: it could spell "id" another way). One loop
 * with an explicit stack: a call per value cost more than the scan itself.
 */
function scanEvent(b: Uint8Array, start: number, end: number): boolean {
  eventId.start = -1;
  eventTime.start = -1;
  if (b[start] !== OPEN_BRACE) return false;
  let depth = 0;
  let i = start;
  let state = EXPECT_VALUE;
  let slot: typeof eventId | undefined;
  for (;;) {
    if (i >= end) return false;
    const c = b[i]!;
    if (state === EXPECT_KEY) {
      if (c !== QUOTE) return false;
      const keyStart = i;
      i = scanString(b, i, end);
      if (i < 0 || b[i] !== COLON) return false;
      if (depth === 1) {
        if (escaped) return false;
        const length = i - keyStart;
        slot = length === 4 && equalAt(b, keyStart, KEY_ID, 0, 4) ? eventId : length === 6 && equalAt(b, keyStart, KEY_TIME, 0, 6) ? eventTime : undefined;
      }
      i += 1;
      state = EXPECT_VALUE;
      continue;
    }
    if (state === EXPECT_VALUE) {
      if (c === QUOTE) {
        const valueStart = i;
        i = scanString(b, i, end);
        if (i < 0) return false;
        if (slot) {
          if (slot.start >= 0) return false;
          slot.start = valueStart;
          slot.end = i;
          slot.escaped = escaped;
          slot = undefined;
        }
      } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
        if (slot || depth === MAX_DEPTH) return false;
        open[depth] = c;
        depth += 1;
        i += 1;
        if (b[i] === (c === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET)) {
          i += 1;
          depth -= 1;
        } else {
          state = c === OPEN_BRACE ? EXPECT_KEY : EXPECT_VALUE;
          continue;
        }
      } else {
        if (slot) return false;
        i = scanScalar(b, i, end);
        if (i < 0) return false;
      }
      if (depth === 0) return i === end;
      state = AFTER_VALUE;
      continue;
    }
    // After a value inside the container opened last.
    const container = open[depth - 1];
    if (c === COMMA) {
      i += 1;
      state = container === OPEN_BRACE ? EXPECT_KEY : EXPECT_VALUE;
    } else if (c === (container === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET)) {
      i += 1;
      depth -= 1;
      if (depth === 0) return i === end;
    } else {
      return false;
    }
  }
}

/** End (exclusive) of the JSON string starting at the quote at `i`, or -1; sets `escaped`. */
function scanString(b: Uint8Array, i: number, end: number): number {
  escaped = false;
  i += 1;
  while (i < end) {
    const c = b[i]!;
    if (c === QUOTE) return i + 1;
    if (c < 0x20) return -1;
    if (c === BACKSLASH) {
      escaped = true;
      const e = b[i + 1];
      if (e === 0x75) {
        if (i + 6 > end || !isHex(b[i + 2]!) || !isHex(b[i + 3]!) || !isHex(b[i + 4]!) || !isHex(b[i + 5]!)) return -1;
        i += 6;
      } else if (e === QUOTE || e === BACKSLASH || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) {
        i += 2;
      } else {
        return -1;
      }
    } else {
      i += 1;
    }
  }
  return -1;
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);
}

function isDigit(c: number | undefined): boolean {
  return c !== undefined && c >= 0x30 && c <= 0x39;
}

/** End (exclusive) of the literal or number starting at `i`, or -1. */
function scanScalar(b: Uint8Array, i: number, end: number): number {
  const c = b[i];
  if (c === 0x74) return i + 4 <= end && equalAt(b, i, TRUE, 0, 4) ? i + 4 : -1;
  if (c === 0x66) return i + 5 <= end && equalAt(b, i, FALSE, 0, 5) ? i + 5 : -1;
  if (c === 0x6e) return i + 4 <= end && equalAt(b, i, NULL, 0, 4) ? i + 4 : -1;
  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  let j = i;
  if (b[j] === 0x2d) j += 1;
  if (b[j] === 0x30) j += 1;
  else if (isDigit(b[j])) while (isDigit(b[j])) j += 1;
  else return -1;
  if (b[j] === 0x2e) {
    j += 1;
    if (!isDigit(b[j])) return -1;
    while (isDigit(b[j])) j += 1;
  }
  if (b[j] === 0x65 || b[j] === 0x45) {
    j += 1;
    if (b[j] === 0x2b || b[j] === 0x2d) j += 1;
    if (!isDigit(b[j])) return -1;
    while (isDigit(b[j])) j += 1;
  }
  return j <= end ? j : -1;
}

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm; Date.UTC costs more). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * (month > 2 ? month - 3 : month + 9) + 2) / 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
  return era * 146_097 + dayOfEra - 719_468;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function digits(b: Uint8Array, at: number, count: number): number {
  let value = 0;
  for (let k = 0; k < count; k += 1) {
    const d = b[at + k]! - 0x30;
    if (d < 0 || d > 9) return -1;
    value = value * 10 + d;
  }
  return value;
}

const TIME_TEXT = /^[0-9A-Za-z:.+-]+$/;

/**
 * Epoch milliseconds of the time b[start, end). The form auditpipe and most clients write,
 * `YYYY-MM-DDTHH:MM:SS.mmmZ`, is computed directly (Date.parse costs more than the rest of the
 * check); any other form goes through Date.parse. NaN when it is not a time.
 */
function timeMillis(b: Uint8Array, start: number, end: number): number {
  if (end - start === 24 && b[start + 4] === 0x2d && b[start + 7] === 0x2d && b[start + 10] === 0x54
    && b[start + 13] === COLON && b[start + 16] === COLON && b[start + 19] === 0x2e && b[start + 23] === 0x5a) {
    const year = digits(b, start, 4);
    const month = digits(b, start + 5, 2);
    const day = digits(b, start + 8, 2);
    const hour = digits(b, start + 11, 2);
    const minute = digits(b, start + 14, 2);
    const second = digits(b, start + 17, 2);
    const ms = digits(b, start + 20, 3);
    const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
    if (year >= 0 && month >= 1 && month <= 12 && day >= 1 && day <= DAYS_IN_MONTH[month - 1]! + (month === 2 && leap ? 1 : 0)
      && hour >= 0 && hour < 24 && minute >= 0 && minute < 60 && second >= 0 && second < 60 && ms >= 0) {
      return daysFromCivil(year, month, day) * 86_400_000 + hour * 3_600_000 + minute * 60_000 + second * 1000 + ms;
    }
  }
  if (end <= start || end - start > 64) return Number.NaN;
  const value = Buffer.from(b.buffer, b.byteOffset + start, end - start).toString('latin1');
  return TIME_TEXT.test(value) ? Date.parse(value) : Number.NaN;
}
