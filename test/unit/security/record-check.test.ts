import assert from 'node:assert/strict';
import { test } from 'node:test';
import { canonicalRecord } from '../../../src/security/chain.ts';
import { recordAgrees, type RecordColumns } from '../../../src/security/record-check.ts';

/** What the verifier's full check accepts: the definition the fast check must never contradict. */
function fullCheckAgrees(row: RecordColumns): boolean {
  let record: { actor?: unknown; seq?: unknown; id?: unknown; receivedAt?: unknown; event?: { id?: unknown; time?: unknown } };
  try {
    record = JSON.parse(row.canonical);
  } catch {
    return false;
  }
  if (record === null || typeof record !== 'object' || record.event === null || typeof record.event !== 'object') return false;
  return record.actor === row.actor && record.seq === row.seq && record.id === row.eventId && record.event.id === row.eventId
    && typeof record.receivedAt === 'string' && Date.parse(record.receivedAt) === row.receivedAtMs
    && typeof record.event.time === 'string' && Date.parse(record.event.time) === row.eventTimeMs;
}

function row(event: Record<string, unknown>, over: Partial<RecordColumns> = {}, actor = 'alice', seq = 3): RecordColumns {
  const receivedAt = '2026-11-29T08:00:00.123Z';
  const canonical = canonicalRecord({ actor, seq, id: event.id as string, receivedAt, event: event as never });
  return { actor, seq, eventId: event.id as string, canonical, eventTimeMs: Date.parse(event.time as string), receivedAtMs: Date.parse(receivedAt), ...over };
}

const base = { id: 'e-1', time: '2026-11-29T07:59:59.001Z', action: 'login', target: { id: 'doc-9', time: 'nested, not the event time' } };

test('agrees with the records auditpipe writes, whatever they hold', () => {
  const events = [
    base,
    { ...base, id: 'quote"back\\slash', note: 'tab\there \u0001 ünïcödé 🎉', list: [1, -2.5e-7, true, null, { time: 'x' }, []] },
    { ...base, time: '2026-02-03T04:05:06+01:00' },
    { ...base, time: '2024-02-29T23:59:59.999Z', deep: { a: { b: { c: [[[{}]]] } } } },
    { ...base, time: '0050-06-01T00:00:00.000Z' },
    { ...base, actorId: '', empty: {} },
  ];
  for (const event of events) {
    const r = row(event);
    assert.equal(fullCheckAgrees(r), true);
    assert.equal(recordAgrees(r), true, r.canonical);
  }
  assert.equal(recordAgrees(row(base, {}, 'actor "with" \\ escapes\u001e', 12)), true);
});

test('disagrees when any column differs from the record', () => {
  const good = row(base);
  const changed: Array<Partial<RecordColumns>> = [
    { actor: 'bob' }, { seq: 4 }, { eventId: 'e-2' }, { eventTimeMs: good.eventTimeMs + 1 }, { receivedAtMs: good.receivedAtMs - 1 },
    { eventTimeMs: good.eventTimeMs + 0.001 },
  ];
  for (const over of changed) {
    const r = { ...good, ...over };
    assert.equal(fullCheckAgrees(r), false);
    assert.equal(recordAgrees(r), false, JSON.stringify(over));
  }
});

test('a nested "id" or "time" is never taken for the event\'s own', () => {
  const event = { id: 'real', time: '2026-11-29T07:59:59.001Z', actor: { id: 'fake', time: '1999-01-01T00:00:00.000Z' } };
  const r = row(event);
  assert.equal(recordAgrees({ ...r, eventId: 'fake' }), false);
  assert.equal(recordAgrees({ ...r, eventTimeMs: Date.parse('1999-01-01T00:00:00.000Z') }), false);
  assert.equal(recordAgrees(r), true);
});

test('never agrees where the full check does not (random corruptions of real records)', () => {
  let seed = 42;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const alphabet = ['"', '\\', '{', '}', '[', ']', ',', ':', 'u', '0', '1', 'e', '-', '.', ' ', '\u0000', 'x', 'Z', 'T', 'n'];
  const sources = [base, { ...base, note: 'a\\"b', n: [1, 2.5, { id: 'x' }] }];
  let agreedAfterCorruption = 0;
  for (let i = 0; i < 20_000; i += 1) {
    const good = row(sources[i % sources.length]!);
    const text = good.canonical;
    const at = Math.floor(random() * text.length);
    const edit = random();
    const piece = alphabet[Math.floor(random() * alphabet.length)]!;
    const canonical = edit < 0.33 ? text.slice(0, at) + piece + text.slice(at + 1)
      : edit < 0.66 ? text.slice(0, at) + piece + text.slice(at)
        : text.slice(0, at) + text.slice(at + 1);
    const corrupted = { ...good, canonical };
    if (recordAgrees(corrupted)) {
      agreedAfterCorruption += 1;
      assert.equal(fullCheckAgrees(corrupted), true, `fast check agreed, full check did not: ${canonical}`);
    }
  }
  // Some corruptions are harmless (a changed letter in a value); most are caught by both.
  assert.ok(agreedAfterCorruption > 0 && agreedAfterCorruption < 20_000);
});

test('escaped keys spelling "id" or "time" go to the full check', () => {
  const r = row(base);
  const sneaky = r.canonical.replace('"time":"2026-11-29T07:59:59.001Z"', '"time":"2026-11-29T07:59:59.001Z","ti\\u006de":"1999-01-01T00:00:00.000Z"');
  assert.equal(fullCheckAgrees({ ...r, canonical: sneaky }), false);
  assert.equal(recordAgrees({ ...r, canonical: sneaky }), false);
});

test('nesting deeper than the scanner follows goes to the full check, which still agrees', () => {
  let deep: unknown = 'bottom';
  for (let i = 0; i < 300; i += 1) deep = [deep];
  const r = row({ ...base, deep });
  assert.equal(fullCheckAgrees(r), true);
  assert.equal(recordAgrees(r), false);
});
