import assert from 'node:assert/strict';
import { test } from 'node:test';
import { canonicalRecord, chainHash, GENESIS_HASH } from '../../../src/security/chain.ts';
import { joinRuns, joinWithOrderedWalk, UnorderedChainCheck, type RowBytes } from '../../../src/security/unordered-check.ts';
import type { ChainCheckInput, Claims } from '../../../src/security/verify.ts';

interface Stored {
  actor: string;
  seq: number;
  id: string;
  prevHash: string;
  hash: string;
  record: string;
  eventTimeMs: number;
  receivedAtMs: number;
}

const TIME = '2026-11-29T10:00:00.000Z';

function chain(actor: string, length: number): Stored[] {
  const rows: Stored[] = [];
  let prevHash = GENESIS_HASH;
  for (let seq = 1; seq <= length; seq += 1) {
    const id = `${actor}-${seq}`;
    const record = canonicalRecord({ actor, seq, id, receivedAt: TIME, event: { id, time: TIME, action: `a${seq}` } });
    const hash = chainHash(prevHash, record);
    rows.push({ actor, seq, id, prevHash, hash, record, eventTimeMs: Date.parse(TIME), receivedAtMs: Date.parse(TIME) });
    prevHash = hash;
  }
  return rows;
}

/** The row as the COPY reader hands it over: offsets into one buffer (the actor's bytes: `actorBytes`, else its UTF-8). */
function bytesOf(row: Stored, actorBytes?: Buffer): RowBytes {
  const actor = actorBytes ?? Buffer.from(row.actor);
  const id = Buffer.from(row.id);
  const bytes = Buffer.concat([actor, id, Buffer.from(row.prevHash, 'latin1'), Buffer.from(row.hash, 'latin1'), Buffer.from(row.record)]);
  const idEnd = actor.length + id.length;
  const hashAt = idEnd + 64;
  return {
    bytes, actorStart: 0, actorEnd: actor.length, seq: row.seq, idStart: actor.length, idEnd, previousHashAt: idEnd, hashAt,
    recordStart: hashAt + 64, recordEnd: bytes.length, eventTimeMs: row.eventTimeMs, receivedAtMs: row.receivedAtMs,
  };
}

const noClaims = (): ChainCheckInput => ({ claims: new Map(), anchored: new Map(), finalClaims: new Map(), maxFindings: 100 });

function pass(rows: Stored[], input = noClaims(), maxRuns?: number) {
  const check = new UnorderedChainCheck(input, maxRuns);
  for (const row of rows) check.row(bytesOf(row));
  return check.finish();
}

/** One pass over `rows`, joined as the verifier does. */
function run(rows: Stored[], input = noClaims(), maxRuns?: number) {
  return joinRuns([pass(rows, input, maxRuns)], input);
}

test('intact chains verify in any arrival order, with their tails', () => {
  const alice = chain('alice', 6);
  const bob = chain('bob', 3);
  const shuffled = [alice[1]!, bob[0]!, alice[0]!, alice[4]!, bob[2]!, alice[2]!, bob[1]!, alice[3]!, alice[5]!];
  const result = run(shuffled);
  assert.deepEqual(result.suspects, []);
  assert.equal(result.events, 9);
  assert.deepEqual(result.tails.get('alice'), { seq: 6, hash: alice[5]!.hash });
  assert.deepEqual(result.tails.get('bob'), { seq: 3, hash: bob[2]!.hash });
});

test('anything unexpected makes the actor a suspect, and only that actor', () => {
  const bob = chain('bob', 3);
  const cases: Record<string, Stored[]> = {
    gap: [chain('alice', 4)[0]!, chain('alice', 4)[2]!, chain('alice', 4)[3]!],
    'missing first row': chain('alice', 3).slice(1),
    duplicate: [...chain('alice', 2), chain('alice', 2)[1]!],
    'edited record': chain('alice', 3).map((row) => (row.seq === 2 ? { ...row, record: row.record.replace('"a2"', '"zz"') } : row)),
    'edited hash': chain('alice', 3).map((row) => (row.seq === 3 ? { ...row, hash: 'f'.repeat(64) } : row)),
    // Row 2 is self-consistent (its hash recomputed over the forged link): only the link is wrong.
    'broken link': chain('alice', 2).map((row) => (row.seq === 2 ? { ...row, prevHash: 'e'.repeat(64), hash: chainHash('e'.repeat(64), row.record) } : row)),
    'column disagrees with record': chain('alice', 3).map((row) => (row.seq === 1 ? { ...row, eventTimeMs: row.eventTimeMs + 1 } : row)),
    'id column disagrees': chain('alice', 3).map((row) => (row.seq === 1 ? { ...row, id: 'other' } : row)),
  };
  for (const [name, rows] of Object.entries(cases)) {
    const result = run([...rows, ...bob]);
    assert.deepEqual(result.suspects, ['alice'], name);
    assert.deepEqual([...result.tails.keys()], ['bob'], name);
    assert.equal(result.events, 3, name);
  }
});

test('a previous hash that is not hex, or not 64 bytes, is never accepted', () => {
  const rows = chain('alice', 2);
  const check = new UnorderedChainCheck(noClaims());
  check.row(bytesOf(rows[0]!));
  check.row({ ...bytesOf(rows[1]!), previousHashAt: -1 });
  assert.deepEqual(joinRuns([check.finish()], noClaims()).suspects, ['alice']);
});

test('claims are checked on the rows they name; those beyond the tail are left for the caller', () => {
  const alice = chain('alice', 4);
  const claims: Claims = new Map([['alice', new Map([[2, { hash: alice[1]!.hash, checkpoint: 1 }], [7, { hash: 'a'.repeat(64), checkpoint: 2 }]])]]);
  const ok = run(alice, { ...noClaims(), claims, finalClaims: new Map([['alice', 2]]) });
  assert.deepEqual(ok.suspects, []);
  assert.deepEqual([...ok.unmatchedClaims.get('alice')!.keys()], [7]);
  assert.equal(ok.uncoveredEvents, 2);

  const rewritten: Claims = new Map([['alice', new Map([[3, { hash: 'b'.repeat(64), checkpoint: 1 }]])]]);
  assert.deepEqual(run(alice, { ...noClaims(), claims: rewritten }).suspects, ['alice']);
  assert.deepEqual(run(alice, { ...noClaims(), anchored: rewritten }).suspects, ['alice']);
});

test('rows stored backwards join into one run as they arrive', () => {
  const alice = chain('alice', 50);
  const result = run([...alice].reverse(), noClaims(), 1);
  assert.deepEqual(result.suspects, []);
  assert.deepEqual(result.tails.get('alice'), { seq: 50, hash: alice[49]!.hash });
});

test('runs kept apart are bounded: past the limit the actor goes to the ordered walk', () => {
  const alice = chain('alice', 4);
  // 1, then 3 (1 set aside), then 2 (3 set aside: two runs), then 4 (2 joins 3).
  const scattered = [alice[0]!, alice[2]!, alice[1]!, alice[3]!];
  assert.deepEqual(run(scattered, noClaims(), 2).suspects, []);
  assert.deepEqual(run(scattered, noClaims(), 1).suspects, ['alice']);
  // The limit is shared: a suspect gives its runs back.
  const bob = chain('bob', 3);
  const result = run([alice[0]!, alice[2]!, alice[2]!, bob[1]!, bob[0]!, bob[2]!], noClaims(), 1);
  assert.deepEqual(result.suspects, ['alice']);
  assert.deepEqual([...result.tails.keys()], ['bob']);
});

test('passes over different parts of the table join into whole chains', () => {
  const alice = chain('alice', 9);
  const bob = chain('bob', 4);
  const parts = [
    pass([alice[0]!, alice[1]!, bob[2]!, alice[6]!, alice[7]!, alice[8]!]),
    pass([bob[0]!, bob[1]!, alice[2]!, alice[3]!, alice[4]!, alice[5]!, bob[3]!]),
  ];
  const joined = joinRuns(parts, noClaims());
  assert.deepEqual(joined.suspects, []);
  assert.equal(joined.events, 13);
  assert.deepEqual(joined.tails.get('alice'), { seq: 9, hash: alice[8]!.hash });

  // A row in both parts, a row in neither, a part whose first row links elsewhere, a suspect in one part only.
  const forged = { ...alice[3]!, prevHash: 'e'.repeat(64), hash: chainHash('e'.repeat(64), alice[3]!.record) };
  const cases: Record<string, Stored[][]> = {
    'read twice': [alice.slice(0, 5), alice.slice(4)],
    missing: [alice.slice(0, 4), alice.slice(5)],
    'broken link between parts': [alice.slice(0, 3), [forged]],
    'suspect in one part': [alice.slice(0, 4), alice.slice(4).map((row) => (row.seq === 7 ? { ...row, record: row.record.replace('"a7"', '"zz"') } : row))],
  };
  for (const [name, rows] of Object.entries(cases)) {
    const result = joinRuns([pass([...rows[0]!, ...bob]), pass(rows[1]!)], noClaims());
    assert.deepEqual(result.suspects, ['alice'], name);
    assert.deepEqual([...result.tails.keys()], ['bob'], name);
  }
});

test('joined with the ordered walk of the suspects, counts and tails add up', () => {
  const fast = run([...chain('alice', 3), ...chain('bob', 2)]);
  const ordered = {
    actors: 1, events: 5, uncoveredEvents: 5, tails: new Map([['carol', { seq: 5, hash: 'c'.repeat(64) }]]),
    findings: [{ kind: 'gap' as const, actor: 'carol', sequence: 2, detail: 'x' }], findingsTotal: 1, unmatchedClaims: new Map(), unmatchedAnchored: new Map(),
  };
  const joined = joinWithOrderedWalk(fast, ordered);
  assert.equal(joined.actors, 3);
  assert.equal(joined.events, 10);
  assert.equal(joined.uncoveredEvents, 10);
  assert.deepEqual([...joined.tails.keys()].sort(), ['alice', 'bob', 'carol']);
  assert.equal(joined.findingsTotal, 1);
});

test('many actors, each found again by its bytes wherever its rows arrive', () => {
  // Enough actors to grow the lookup by bytes several times; rows interleaved as a table holds them.
  const chains = Array.from({ length: 5000 }, (_, n) => chain(`user-${n}`, 3));
  const rows = [0, 1, 2].flatMap((k) => chains.map((rowsOfActor) => rowsOfActor[k]!));
  const result = run(rows);
  assert.deepEqual(result.suspects, []);
  assert.equal(result.events, 15_000);
  assert.equal(result.tails.size, 5000);
  assert.deepEqual(result.tails.get('user-4321'), { seq: 3, hash: chains[4321]![2]!.hash });
});

test('actors whose stored bytes differ but read as the same text are one actor, as the ordered walk reads them', () => {
  // Bytes that are not UTF-8 (a SQL_ASCII database can hold them) both read as U+FFFD: two chains
  // of that one actor, each starting at 1, are a duplicate, not two intact chains.
  const [first] = chain('\ufffd', 1);
  const check = new UnorderedChainCheck(noClaims());
  check.row(bytesOf(first!, Buffer.from([0xff])));
  check.row(bytesOf(first!, Buffer.from([0xfe])));
  const result = joinRuns([check.finish()], noClaims());
  assert.deepEqual(result.suspects, ['\ufffd']);
  assert.equal(result.events, 0);
});
