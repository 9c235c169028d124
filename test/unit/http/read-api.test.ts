// The read API's paging logic against an in-memory implementation of the chain store's read
// interface (our own interface, not a database): filters the store cannot apply, offsets,
// cursors that neither skip nor repeat. The same routes against PostgreSQL: test/integration/argus/api.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ChainPage, ChainQuery, ChainRecord } from '../../../src/security/chain.ts';
import { auditSummary, listAuditLogs, parseListQuery, ReadApiError, type ArgusReadStore } from '../../../src/sources/http/argus/read-api.ts';

function memoryStore(records: ChainRecord[]): ArgusReadStore & { calls: ChainQuery[] } {
  const sorted = [...records].sort((a, b) => (a.time === b.time ? b.id.localeCompare(a.id) : b.time.localeCompare(a.time)));
  const calls: ChainQuery[] = [];
  return {
    calls,
    async query(filter: ChainQuery): Promise<ChainPage> {
      calls.push(filter);
      const start = filter.cursor ? Number(filter.cursor) : 0;
      const matching = sorted.filter((r) => (filter.actor === undefined || r.actor === filter.actor) && (filter.action === undefined || r.event.action === filter.action)
        && (filter.from === undefined || r.time >= filter.from) && (filter.to === undefined || r.time < filter.to));
      const limit = filter.limit ?? 100;
      const page = matching.slice(start, start + limit);
      return { records: page, ...(start + limit < matching.length ? { next: String(start + limit) } : {}) };
    },
    async get(id: string) {
      return records.find((r) => r.id === id);
    },
    async summary() {
      return { events: records.length, actors: new Set(records.map((r) => r.actor)).size };
    },
  };
}

const records: ChainRecord[] = Array.from({ length: 50 }, (_, i) => ({
  id: `e${String(i).padStart(2, '0')}`,
  actor: `a${i % 2}`,
  sequence: Math.floor(i / 2) + 1,
  previousHash: '0'.repeat(64),
  hash: 'f'.repeat(64),
  time: new Date(Date.UTC(2026, 0, 1, 0, i)).toISOString(),
  receivedAt: '2026-01-01T00:00:00.000Z',
  event: { id: `e${String(i).padStart(2, '0')}`, status: i % 10 === 0 ? 'FAILURE' : 'SUCCESS', action: 'READ', actorId: `a${i % 2}` },
}));

describe('argus read API paging', () => {
  it('pages a sparse filter the store cannot apply with cursors that neither skip nor repeat', async () => {
    const store = memoryStore(records);
    const seen: string[] = [];
    let cursor: string | undefined;
    let guard = 0;
    do {
      const params = new URLSearchParams({ status: 'FAILURE', limit: '2', ...(cursor ? { cursor } : {}) });
      const answer = await listAuditLogs(store, parseListQuery(params));
      seen.push(...answer.logs.map((l) => l.id as string));
      cursor = answer.nextCursor;
      guard += 1;
    } while (cursor && guard < 50);
    assert.deepEqual(seen, ['e40', 'e30', 'e20', 'e10', 'e00']);
    assert.ok(store.calls.every((c) => (c.limit ?? 0) <= 2), 'a store page never holds more records than matches still wanted');
  });

  it('applies offset over the matching records and reports total as a lower bound without a count', async () => {
    const answer = await listAuditLogs(memoryStore(records), parseListQuery(new URLSearchParams({ actorId: 'a1', offset: '3', limit: '4' })));
    assert.deepEqual(answer.logs.map((l) => l.id), ['e43', 'e41', 'e39', 'e37']);
    assert.equal(answer.totalExact, false);
    assert.ok(answer.total >= 7);
    const all = await listAuditLogs(memoryStore(records), parseListQuery(new URLSearchParams({ limit: '1000' })));
    assert.equal(all.logs.length, 50);
    assert.equal(all.total, 50);
    assert.equal(all.totalExact, true);
    assert.equal(all.nextCursor, undefined);
  });

  it('hands filters to a store that applies them and uses its count', async () => {
    const base = memoryStore(records);
    const seenFields: unknown[] = [];
    const store: ArgusReadStore = {
      ...base,
      filtersFields: true,
      query: async (filter) => {
        seenFields.push((filter as { fields?: unknown }).fields);
        return base.query(filter);
      },
      count: async () => 123,
    };
    const answer = await listAuditLogs(store, parseListQuery(new URLSearchParams({ eventType: 'X', limit: '1' })));
    assert.deepEqual(seenFields[0], { eventType: 'X' });
    assert.equal(answer.total, 123);
    assert.equal(answer.totalExact, true);
  });

  it('validates the query string with clear messages', () => {
    for (const [query, message] of [['traceId=x', /traceId must be a UUID/], ['from=2026-02-01&to=x', /RFC 3339/], ['offset=10001', /offset must be at most/],
      ['cursor=a&offset=2', /either offset or cursor/], [`actorId=${'x'.repeat(300)}`, /longer than 256/], ['from=2026-02-02T00:00:00Z&to=2026-02-01T00:00:00Z', /earlier/]] as const) {
      assert.throws(() => parseListQuery(new URLSearchParams(query)), (error: unknown) => error instanceof ReadApiError && error.status === 400 && message.test(error.message), query);
    }
    assert.equal(parseListQuery(new URLSearchParams('limit=0')).limit, 100);
    assert.equal(parseListQuery(new URLSearchParams('limit=99999')).limit, 1000);
  });

  it('summarises one UTC day with an exclusive upper bound', async () => {
    const day = [
      { ...records[0]!, id: 'in', time: '2026-01-01T23:59:59.999Z' },
      { ...records[1]!, id: 'next-day', time: '2026-01-02T00:00:00.000Z' },
    ];
    const summary = await auditSummary(memoryStore(day), new Date('2026-01-01T12:00:00Z'));
    assert.equal(summary.date, '2026-01-01');
    assert.equal(summary.summary, 'Audit activity report for January 01, 2026');
    assert.deepEqual((summary.runtimeActivity as Array<{ id: string }>).map((a) => a.id), ['in']);
  });
});
