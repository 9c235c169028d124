import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isRfc3339 } from '../../../src/core/time.ts';

describe('isRfc3339', () => {
  for (const value of [
    '2026-01-02T03:04:05Z', '2026-01-02t03:04:05z', '2026-01-02 03:04:05Z', '2026-01-02T03:04:05.123456789+02:00',
    '2026-01-02T03:04:05-23:59', '2024-02-29T00:00:00Z', '2000-02-29T12:00:00Z', '2026-04-30T23:59:59.999Z',
    '0001-01-01T00:00:00Z', '0001-01-01T00:30:00+00:30', '9999-12-31T23:59:59.999Z', '9999-12-31T23:59:59+01:00',
  ]) {
    it(`accepts ${value}`, () => assert.equal(isRfc3339(value), true));
  }

  for (const [value, why] of [
    ['2023-02-29T00:00:00Z', 'no 29 February in 2023'], ['1900-02-29T00:00:00Z', '1900 is no leap year'],
    ['2024-02-30T00:00:00Z', 'no 30 February'], ['2024-04-31T00:00:00Z', 'April has 30 days'],
    ['2024-00-10T00:00:00Z', 'month 0'], ['2024-13-10T00:00:00Z', 'month 13'], ['2024-01-00T00:00:00Z', 'day 0'],
    ['2024-01-32T00:00:00Z', 'day 32'], ['2024-01-01T24:00:00Z', 'hour 24'], ['2024-01-01T23:60:00Z', 'minute 60'],
    ['2016-12-31T23:59:60Z', 'leap second'], ['2024-01-01T00:00:00+24:00', 'offset hour 24'],
    ['2024-01-01T00:00:00+01:60', 'offset minute 60'], ['0000-01-01T00:00:00Z', 'year 0'],
    ['0001-01-01T00:00:00+00:01', 'before year 1 in UTC'], ['9999-12-31T23:59:59-00:01', 'after year 9999 in UTC'],
    ['2024-01-01T00:00:00', 'no offset'], ['2024-01-01T00:00:00.Z', 'empty fraction'], ['2024-01-01T00:00:00.1234567890Z', '10 fraction digits'],
    ['2024-1-01T00:00:00Z', 'one-digit month'], ['yesterday', 'not a date'], ['', 'empty'],
  ] as const) {
    it(`rejects ${value || '""'} (${why})`, () => assert.equal(isRfc3339(value), false));
  }

  it('agrees with Date.parse on every accepted value it is given', () => {
    // Whatever passes names the instant Date.parse reads (the store keeps Date's ISO form of it).
    for (let ms = Date.parse('1999-12-31T00:00:00Z'); ms < Date.parse('2001-03-02T00:00:00Z'); ms += 3_599_999) {
      const text = new Date(ms).toISOString();
      assert.equal(isRfc3339(text), true, text);
      assert.equal(Date.parse(text), ms);
    }
  });
});
