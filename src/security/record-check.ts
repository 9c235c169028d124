/**
 * The verifier's fast check that a stored row's columns say what its hashed record says, without
 * building the record as objects (JSON.parse of every record was half of the verifier's time).
 *
 * `recordAgrees` answers true only when the record has exactly the layout auditpipe writes,
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
const COMMA = 0x2c;
const COLON = 0x3a;

/** Canonical JSON of the last actor seen: rows come grouped by actor. */
let lastActor: string | undefined;
let lastActorPrefix = '';

export function recordAgrees(row: RecordColumns): boolean {
  try {
    return agrees(row);
  } catch {
    return false; // e.g. nesting deeper than the stack: the full check reports it
  }
}

function agrees(row: RecordColumns): boolean {
  const text = row.canonical;
  if (row.actor !== lastActor) {
    lastActor = row.actor;
    lastActorPrefix = `{"actor":${canonicalJson(row.actor)},"event":`;
  }
  if (!text.startsWith(lastActorPrefix)) return false;

  const seqTail = `,"seq":${row.seq}}`;
  if (!text.endsWith(seqTail)) return false;
  const receivedEnd = text.length - seqTail.length;
  // "receivedAt" holds an ISO time: no quote or backslash inside, so its opening quote is the last one before the end.
  if (text.charCodeAt(receivedEnd - 1) !== QUOTE) return false;
  const receivedStart = text.lastIndexOf('"', receivedEnd - 2) + 1;
  const receivedKey = ',"receivedAt":"';
  if (receivedStart <= 0 || !text.startsWith(receivedKey, receivedStart - receivedKey.length)) return false;
  if (timeMillis(text, receivedStart, receivedEnd - 1) !== row.receivedAtMs) return false;
  const quotedId = canonicalJson(row.eventId);
  const idEnd = receivedStart - receivedKey.length;
  const idStart = idEnd - quotedId.length;
  if (!text.startsWith(quotedId, idStart) || !text.startsWith(',"id":', idStart - 6)) return false;

  if (!scanObject(text, lastActorPrefix.length, idStart - 6) || id.start < 0 || time.start < 0) return false;
  const idAgrees = id.escaped
    ? JSON.parse(text.slice(id.start, id.end)) === row.eventId
    : id.end - id.start === quotedId.length && text.startsWith(quotedId, id.start);
  const eventTime = time.escaped ? Date.parse(JSON.parse(text.slice(time.start, time.end)) as string) : timeMillis(text, time.start + 1, time.end - 1);
  return idAgrees && eventTime === row.eventTimeMs;
}

/** Where the event's top-level "id" and "time" string tokens are (start -1: absent). */
const id = { start: -1, end: -1, escaped: false };
const time = { start: -1, end: -1, escaped: false };

/**
 * Validates that text[start, end) is exactly one JSON object with no whitespace, and finds its
 * top-level "id" and "time" string values; false when it is not (or one of them repeats or is
 * not a string).
 */
function scanObject(text: string, start: number, end: number): boolean {
  id.start = -1;
  time.start = -1;
  if (text.charCodeAt(start) !== 0x7b || text.charCodeAt(end - 1) !== 0x7d) return false;
  let i = start + 1;
  if (i === end - 1) return true;
  for (;;) {
    const keyEnd = scanString(text, i, end);
    if (keyEnd < 0 || text.charCodeAt(keyEnd) !== COLON) return false;
    // An escaped key could spell "id" or "time" another way: leave those to the full check.
    if (escaped) return false;
    const length = keyEnd - i;
    const slot = length === 4 && text.startsWith('"id"', i) ? id : length === 6 && text.startsWith('"time"', i) ? time : undefined;
    const valueStart = keyEnd + 1;
    const valueEnd = scanValue(text, valueStart, end);
    if (valueEnd < 0) return false;
    if (slot) {
      if (slot.start >= 0 || text.charCodeAt(valueStart) !== QUOTE) return false;
      slot.start = valueStart;
      slot.end = valueEnd;
      slot.escaped = escaped;
    }
    if (valueEnd === end - 1) return true;
    if (text.charCodeAt(valueEnd) !== COMMA) return false;
    i = valueEnd + 1;
  }
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

function digits(text: string, at: number, count: number): number {
  let value = 0;
  for (let k = 0; k < count; k += 1) {
    const d = text.charCodeAt(at + k) - 0x30;
    if (d < 0 || d > 9) return -1;
    value = value * 10 + d;
  }
  return value;
}

/**
 * Epoch milliseconds of the time text[start, end). The form auditpipe and most clients write,
 * `YYYY-MM-DDTHH:MM:SS.mmmZ`, is computed directly (Date.parse costs more than the rest of the
 * check); any other form goes through Date.parse. NaN when it is not a time.
 */
function timeMillis(text: string, start: number, end: number): number {
  if (end - start === 24 && text.charCodeAt(start + 4) === 0x2d && text.charCodeAt(start + 7) === 0x2d && text.charCodeAt(start + 10) === 0x54
    && text.charCodeAt(start + 13) === COLON && text.charCodeAt(start + 16) === COLON && text.charCodeAt(start + 19) === 0x2e && text.charCodeAt(start + 23) === 0x5a) {
    const year = digits(text, start, 4);
    const month = digits(text, start + 5, 2);
    const day = digits(text, start + 8, 2);
    const hour = digits(text, start + 11, 2);
    const minute = digits(text, start + 14, 2);
    const second = digits(text, start + 17, 2);
    const ms = digits(text, start + 20, 3);
    const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
    if (year >= 0 && month >= 1 && month <= 12 && day >= 1 && day <= DAYS_IN_MONTH[month - 1]! + (month === 2 && leap ? 1 : 0)
      && hour >= 0 && hour < 24 && minute >= 0 && minute < 60 && second >= 0 && second < 60 && ms >= 0) {
      return daysFromCivil(year, month, day) * 86_400_000 + hour * 3_600_000 + minute * 60_000 + second * 1000 + ms;
    }
  }
  const value = text.slice(start, end);
  return /^[0-9A-Za-z:.+-]+$/.test(value) ? Date.parse(value) : Number.NaN;
}

/** Whether the string scanned last held an escape. */
let escaped = false;

// Sticky expressions run as native code: much faster than a character loop in JavaScript.
const PLAIN_STRING = /"[^"\\\u0000-\u001f]*"/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;

/** End (exclusive) of the JSON string starting at `i`, or -1. */
function scanString(text: string, i: number, end: number): number {
  PLAIN_STRING.lastIndex = i;
  if (PLAIN_STRING.test(text)) {
    escaped = false;
    return PLAIN_STRING.lastIndex <= end ? PLAIN_STRING.lastIndex : -1;
  }
  STRING.lastIndex = i;
  if (!STRING.test(text)) return -1;
  escaped = true;
  return STRING.lastIndex <= end ? STRING.lastIndex : -1;
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

/** End (exclusive) of the JSON value starting at `i`, or -1. */
function scanValue(text: string, i: number, end: number): number {
  const c = text.charCodeAt(i);
  if (c === QUOTE) return scanString(text, i, end);
  if (c === 0x7b || c === 0x5b) {
    const close = c === 0x7b ? 0x7d : 0x5d;
    let j = i + 1;
    if (text.charCodeAt(j) === close) return j + 1;
    for (;;) {
      if (c === 0x7b) {
        j = scanString(text, j, end);
        if (j < 0 || text.charCodeAt(j) !== COLON) return -1;
        j += 1;
      }
      j = scanValue(text, j, end);
      if (j < 0 || j >= end) return -1;
      const next = text.charCodeAt(j);
      if (next === close) return j + 1;
      if (next !== COMMA) return -1;
      j += 1;
    }
  }
  for (const literal of ['true', 'false', 'null']) {
    if (text.startsWith(literal, i)) return i + literal.length <= end ? i + literal.length : -1;
  }
  NUMBER.lastIndex = i;
  if (!NUMBER.test(text) || NUMBER.lastIndex === i) return -1;
  return NUMBER.lastIndex <= end ? NUMBER.lastIndex : -1;
}
