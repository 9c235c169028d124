/**
 * RFC 3339 date-times (§5.6), checked field by field: what auditpipe accepts as an event's `time`,
 * an argus `timestamp`, a query bound or a key's validity dates.
 *
 * `Date.parse` alone is not the check. V8 accepts `2023-02-29` and `2024-04-31` (it rolls them
 * into the next month) and `24:00:00`, so an event could be stored with a time that names no
 * instant; PostgreSQL then refused the row ("date/time field value out of range") after the other
 * sinks had written it. Here every field is in range for its month and year, and the instant lies
 * within what the chain's timestamptz columns and `Date` both hold (years 0001-9999 in UTC).
 */

/** The shape: `T`, `t` or a space between date and time (§5.6 NOTE), 1-9 fraction digits, `Z`/`z` or ±hh:mm. */
const SHAPE = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})$/;

/** 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z: PostgreSQL has no year 0, ISO strings no year 10000. */
const EARLIEST_MS = Date.parse('0001-01-01T00:00:00Z');
const LATEST_MS = Date.parse('9999-12-31T23:59:59.999Z');

/** The two digits at `at`, as a number (the shape guarantees digits there). */
function twoDigits(value: string, at: number): number {
  return (value.charCodeAt(at) - 48) * 10 + (value.charCodeAt(at + 1) - 48);
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

/** Whether `value` is an RFC 3339 date-time naming a real instant between years 0001 and 9999 (UTC). */
export function isRfc3339(value: string): boolean {
  if (!SHAPE.test(value)) return false;
  const year = twoDigits(value, 0) * 100 + twoDigits(value, 2);
  const month = twoDigits(value, 5);
  const day = twoDigits(value, 8);
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return false;
  // Seconds stop at 59: a leap second (60) has no `Date` or ISO-string form to store it as.
  if (twoDigits(value, 11) > 23 || twoDigits(value, 14) > 59 || twoDigits(value, 17) > 59) return false;
  const last = value.charCodeAt(value.length - 1);
  if (last !== 0x5a && last !== 0x7a && (twoDigits(value, value.length - 5) > 23 || twoDigits(value, value.length - 2) > 59)) return false;
  if (year > 1 && year < 9999) return true;
  // Only at the ends of the range can an offset carry the instant outside it.
  const ms = Date.parse(value);
  return ms >= EARLIEST_MS && ms <= LATEST_MS;
}
