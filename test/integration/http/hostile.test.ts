/**
 * Hostile bodies at the HTTP edge (issue 19, item 4), against auditpipe as a child process:
 * each case gets a clear 4xx naming the reason, the valid neighbours of a bulk request are stored
 * (read back from the PostgreSQL chain), and the process stays healthy with its RSS bounded.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createGzip, gzipSync } from 'node:zlib';
import { argusItem, ndjson, NDJSON, startHostile, type Hostile } from './hostile-helpers.ts';

const LEVELS = 100_000;
const deepArray = '['.repeat(LEVELS) + ']'.repeat(LEVELS);
const deepObject = '{"a":'.repeat(LEVELS) + '1' + '}'.repeat(LEVELS);
const MiB = 1024 * 1024;

describe('HTTP source under hostile bodies', { timeout: 150_000 }, () => {
  let h: Hostile;
  before(async () => {
    h = await startHostile('ap_hostile');
  });
  after(async () => {
    await h?.stop();
  });

  /** A 207 whose failed indexes and reasons are as given, and whose ids are stored. */
  async function assertPartial(answer: Awaited<ReturnType<Hostile['send']>>, written: string[], failed: Array<[number, RegExp]>) {
    assert.equal(answer.status, 207, answer.text);
    const body = answer.json();
    const ids: string[] = body.ids ?? body.succeeded.map((r: { id: string }) => r.id);
    assert.deepEqual(ids, written);
    assert.deepEqual(body.failed.map((f: { index: number }) => f.index), failed.map(([index]) => index));
    failed.forEach(([, reason], i) => assert.match(body.failed[i].error, reason));
    const stored = await h.stored(written);
    assert.deepEqual([...stored.keys()].sort(), [...written].sort(), 'the valid neighbours are stored');
  }

  it('deep nesting (100,000 levels): 400 for a JSON body, the item alone in arrays, NDJSON and argus bulk', async () => {
    const whole = await h.send('/v1/events', `{"id":"deep-0","actorId":"d","x":${deepArray}}`);
    assert.equal(whole.status, 400, whole.text);
    assert.match(whole.json().details, /nests deeper than 64 levels/);
    const objects = await h.send('/v1/events', deepObject);
    assert.equal(objects.status, 400);
    assert.match(objects.json().details, /nests deeper than 64 levels/);

    await assertPartial(
      await h.send('/v1/events', `[{"id":"deep-a1","actorId":"d"},{"id":"deep-a2","actorId":"d","x":${deepArray}},${deepArray},{"id":"deep-a3","actorId":"d"}]`),
      ['deep-a1', 'deep-a3'], [[1, /nests deeper/], [2, /nests deeper/]],
    );
    await assertPartial(
      await h.send('/v1/events', ndjson({ id: 'deep-n1', actorId: 'd' }, `{"id":"deep-n2","actorId":"d","x":${deepObject}}`, deepArray, { id: 'deep-n3', actorId: 'd' }), NDJSON),
      ['deep-n1', 'deep-n3'], [[1, /line 2: JSON nests deeper/], [2, /line 3: JSON nests deeper/]],
    );
    const argus = await h.send('/api/audit-logs/bulk', `[${JSON.stringify(argusItem({ id: 'deep-g1' }))},${JSON.stringify(argusItem({ id: 'deep-g2' })).replace(/}$/, `,"metadata":{"x":${deepArray}}}`)}]`);
    await assertPartial(argus, ['deep-g1'], [[0 + 1, /nests deeper/]]);
    const nested = { id: 'deep-ok', actorId: 'd', x: JSON.parse('['.repeat(60) + ']'.repeat(60)) };
    assert.equal((await h.send('/v1/events', JSON.stringify(nested))).status, 200, '60 levels are fine');
    await h.assertHealthy('deep');
  });

  it('50 MB bodies: 413 whether declared in Content-Length or streamed chunked', async () => {
    const chunk = Buffer.alloc(MiB, 'x');
    const declared = await h.send('/v1/events', Array.from({ length: 50 }, () => chunk), { 'content-length': String(50 * MiB) });
    assert.equal(declared.status, 413);
    assert.match(declared.json().details, /52428800 bytes is over the limit of 5242880 bytes/);
    const streamed = await h.send('/v1/events', Array.from({ length: 50 }, () => chunk), { 'transfer-encoding': 'chunked' });
    assert.equal(streamed.status, 413);
    assert.match(streamed.json().details, /over the limit of 5242880 bytes/);
    const argus = await h.send('/api/audit-logs/bulk', Array.from({ length: 50 }, () => chunk), { 'transfer-encoding': 'chunked' });
    assert.equal(argus.status, 413);
    await h.assertHealthy('large');
  });

  it('100,000-item arrays: a bulk of 100k events is 413; an event with a 100k-item field is stored, or 400 alone when over max_event_bytes', async () => {
    const many = JSON.stringify(Array.from({ length: 100_000 }, (_, i) => ({ id: `many-${i}`, actorId: 'm' })));
    const tooMany = await h.send('/v1/events', many);
    assert.equal(tooMany.status, 413);
    assert.match(tooMany.json().details, /100000 events; the limit is 10000/);
    const argusMany = await h.send('/api/audit-logs/bulk', JSON.stringify(Array.from({ length: 100_000 }, () => argusItem())));
    assert.equal(argusMany.status, 413);
    assert.equal((await h.stored(['many-0', 'many-99999'])).size, 0, 'nothing of a refused request is stored');

    const wide = { id: 'wide-1', actorId: 'w', tags: Array.from({ length: 100_000 }, (_, i) => i % 10) };
    const tooWide = { id: 'wide-2', actorId: 'w', tags: Array.from({ length: 100_000 }, () => 'abcdefghij') };
    await assertPartial(
      await h.send('/v1/events', ndjson({ id: 'wide-0', actorId: 'w' }, wide, tooWide, { id: 'wide-3', actorId: 'w' }), NDJSON),
      ['wide-0', 'wide-1', 'wide-3'], [[2, /over the limit of 1048576/]],
    );
    assert.equal((await h.stored(['wide-1'])).get('wide-1')!.event.tags.length, 100_000);
    await h.assertHealthy('arrays');
  });

  it('gzip: accepted; a gzip bomb stops at max_body_bytes decompressed (413); other encodings 415; corrupt gzip 400', async () => {
    const gzipped = await h.send('/v1/events', gzipSync(ndjson({ id: 'gz-1', actorId: 'g' }, { id: 'gz-2', actorId: 'g' })), { ...NDJSON, 'content-encoding': 'gzip' });
    assert.equal(gzipped.status, 200, gzipped.text);
    assert.equal((await h.stored(['gz-1', 'gz-2'])).size, 2);

    // 1 GiB of zeros, about 1 MB compressed.
    const gzip = createGzip({ level: 9 });
    const compressed: Buffer[] = [];
    gzip.on('data', (part: Buffer) => compressed.push(part));
    const done = new Promise((resolve) => gzip.on('end', resolve));
    const zeros = Buffer.alloc(16 * MiB);
    for (let i = 0; i < 64; i += 1) if (!gzip.write(zeros)) await new Promise((r) => gzip.once('drain', r));
    gzip.end();
    await done;
    const bomb = Buffer.concat(compressed);
    assert.ok(bomb.length < 5 * MiB, `the bomb is ${bomb.length} bytes compressed, under the body limit`);
    const exploded = await h.send('/v1/events', bomb, { 'content-encoding': 'gzip' });
    assert.equal(exploded.status, 413, exploded.text);
    assert.match(exploded.json().details, /decompressed body is over the limit of 5242880 bytes/);
    assert.ok(h.rssBytes() < 400 * MiB, 'the bomb was not inflated in memory');

    const brotli = await h.send('/v1/events', '{}', { 'content-encoding': 'br' });
    assert.equal(brotli.status, 415);
    assert.match(brotli.json().details, /identity or gzip, not br/);
    const corrupt = await h.send('/v1/events', Buffer.from('not gzip at all'), { 'content-encoding': 'gzip' });
    assert.equal(corrupt.status, 400);
    assert.equal(corrupt.json().error, 'invalid gzip body');
    await h.assertHealthy('gzip');
  });

  it('invalid UTF-8: 400 for a JSON body, the line alone in NDJSON; never stored with U+FFFD', async () => {
    const bad = Buffer.concat([Buffer.from('{"id":"utf-0","actorId":"u","x":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
    const whole = await h.send('/v1/events', bad);
    assert.equal(whole.status, 400);
    assert.equal(whole.json().error, 'invalid UTF-8');
    const overlong = Buffer.concat([Buffer.from('{"id":"utf-o","actorId":"u","x":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')]);
    assert.equal((await h.send('/v1/events', overlong)).status, 400, 'an overlong encoding is invalid');
    const encodedSurrogate = Buffer.concat([Buffer.from('{"id":"utf-s","actorId":"u","x":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')]);
    assert.equal((await h.send('/v1/events', encodedSurrogate)).status, 400, 'a UTF-8-encoded surrogate is invalid');

    const lines = Buffer.concat([
      Buffer.from(ndjson({ id: 'utf-1', actorId: 'u', name: 'Zoë 🦊' })),
      Buffer.from('{"id":"utf-2","actorId":"u","x":"'), Buffer.from([0xe2, 0x82]), Buffer.from('"}\n'),
      Buffer.from(ndjson({ id: 'utf-3', actorId: 'u' })),
    ]);
    await assertPartial(await h.send('/v1/events', lines, NDJSON), ['utf-1', 'utf-3'], [[1, /line 2: not valid UTF-8/]]);
    assert.equal((await h.stored(['utf-1'])).get('utf-1')!.event.name, 'Zoë 🦊');
    assert.equal((await h.stored(['utf-0', 'utf-2'])).size, 0);
    await h.assertHealthy('utf8');
  });

  it('lone surrogate escapes: 400 (no UTF-8 form, so no unambiguous hash); a proper pair is stored', async () => {
    const whole = await h.send('/v1/events', '{"id":"sur-0","actorId":"s","x":"\\ud800"}');
    assert.equal(whole.status, 400);
    assert.match(whole.json().details, /lone surrogate/);
    await assertPartial(
      await h.send('/v1/events', ndjson({ id: 'sur-1', actorId: 's' }, '{"id":"sur-2","actorId":"s","x":"a\\udc00"}', '{"id":"sur-3","actorId":"s","\\ud800k":1}', '{"id":"sur-4","actorId":"s","x":"\\ud83e\\udd8a"}'), NDJSON),
      ['sur-1', 'sur-4'], [[1, /lone surrogate/], [2, /lone surrogate/]],
    );
    assert.equal((await h.stored(['sur-4'])).get('sur-4')!.event.x, '🦊');
    await assertPartial(
      await h.send('/v1/events', '[{"id":"sur-a1","actorId":"s"},{"id":"sur-a2","actorId":"s","x":"\\udbff"}]'),
      ['sur-a1'], [[1, /lone surrogate/]],
    );
    await h.assertHealthy('surrogates');
  });

  it('duplicate keys: rejected (400, the item alone in bulk), at any depth and however the key is escaped', async () => {
    const whole = await h.send('/v1/events', '{"id":"dup-0","actorId":"x","id":"dup-00"}');
    assert.equal(whole.status, 400);
    assert.match(whole.json().details, /key "id" appears twice in one object/);
    await assertPartial(
      await h.send('/v1/events', ndjson({ id: 'dup-1', actorId: 'x', a: { k: 1 }, b: { k: 1 } }, '{"id":"dup-2","actorId":"x","m":{"k":1,"\\u006b":2}}', '{"id":"dup-3","actorId":"x","actorId":"y"}', { id: 'dup-4', actorId: 'x' }), NDJSON),
      ['dup-1', 'dup-4'], [[1, /key "k" appears twice/], [2, /key "actorId" appears twice/]],
    );
    const argus = await h.send('/api/audit-logs/bulk', `[${JSON.stringify(argusItem({ id: 'dup-g1' }))},${JSON.stringify(argusItem({ id: 'dup-g2' })).replace(/}$/, ',"status":"FAILURE"}')}]`);
    await assertPartial(argus, ['dup-g1'], [[1, /key "status" appears twice/]]);
    await h.assertHealthy('duplicates');
  });

  it('__proto__, constructor and prototype keys: stored as plain data; nothing is polluted', async () => {
    const hostile = '{"id":"proto-1","actorId":"p","__proto__":{"actorId":"polluted","id":"polluted","isAdmin":true},'
      + '"constructor":{"prototype":{"actorId":"polluted"}},"prototype":{"x":1},"metadata":{"__proto__":{"y":1}}}';
    const answer = await h.send('/v1/events', hostile);
    assert.equal(answer.status, 200, answer.text);
    const stored = (await h.stored(['proto-1'])).get('proto-1')!;
    assert.equal(stored.actor, 'p');
    assert.deepEqual(Object.getOwnPropertyNames(stored.event).sort(), ['__proto__', 'actorId', 'constructor', 'id', 'metadata', 'prototype', 'time']);
    assert.deepEqual(Object.getOwnPropertyDescriptor(stored.event, '__proto__')!.value, { actorId: 'polluted', id: 'polluted', isAdmin: true });
    assert.ok(Object.hasOwn(stored.event.metadata, '__proto__'));

    const argus = await h.send('/api/audit-logs', JSON.stringify(argusItem({ id: 'proto-g1' })).replace(/}$/, ',"metadata":{"__proto__":{"actorId":"polluted"},"constructor":{"prototype":{"a":1}}}}'));
    assert.equal(argus.status, 201, argus.text);
    assert.ok(Object.hasOwn((await h.stored(['proto-g1'])).get('proto-g1')!.event.metadata, '__proto__'));

    // Had Object.prototype been polluted, an event without an actor would pick one up from it and
    // be accepted (this pipeline requires an actor), and one without an id would take its id.
    const noActor = await h.send('/v1/events', '{"action":"probe"}');
    assert.equal(noActor.status, 400, noActor.text);
    assert.match(noActor.text, /actor id\) is required/);
    const probe = await h.send('/v1/events', '{"actorId":"probe","action":"probe"}');
    assert.equal(probe.status, 200, probe.text);
    const [probeId] = probe.json().ids;
    assert.notEqual(probeId, 'polluted');
    const probed = (await h.stored([probeId])).get(probeId)!;
    assert.equal(probed.actor, 'probe');
    await h.assertHealthy('proto');
  });

  it('10 KB ids: the event id, actor id, argus ids and the read path id over their limits fail alone', async () => {
    const big = 'i'.repeat(10 * 1024);
    await assertPartial(
      await h.send('/v1/events', ndjson({ id: 'big-1', actorId: 'b' }, { id: big, actorId: 'b' }, { id: 'big-2', actorId: big }, { id: 'big-3', actorId: 'b' }), NDJSON),
      ['big-1', 'big-3'], [[1, /"id" is longer than 256 characters/], [2, /actor id\) is longer than 256 characters/]],
    );
    await assertPartial(
      await h.send('/api/audit-logs/bulk', JSON.stringify([argusItem({ id: 'big-g1' }), argusItem({ actorId: big }), argusItem({ targetId: big }), argusItem({ id: big }), argusItem({ traceId: big })])),
      ['big-g1'], [[1, /actorId must be at most 255/], [2, /targetId must be at most 255/], [3, /id/], [4, /traceId must be a UUID/]],
    );
    const read = await h.send(`/api/audit-logs/${big}`, '', {}, 'GET');
    assert.equal(read.status, 400);
    assert.match(read.json().details, /id must be 1 to 256 characters/);
    await h.assertHealthy('ids');
  });

  it('times that name no instant (30 February, 24:00, a leap second, year 0): the item fails alone at the edge, before any sink', async () => {
    const times = ['2026-02-30T10:00:00Z', '2026-01-01T24:00:00Z', '2016-12-31T23:59:60Z', '0000-01-01T00:00:00Z', '2023-02-29T00:00:00.000Z'];
    await assertPartial(
      await h.send('/v1/events', ndjson({ id: 'time-1', actorId: 't', time: '2024-02-29T23:59:59.999+01:00' }, ...times.map((time, i) => ({ id: `time-bad-${i}`, actorId: 't', time })), { id: 'time-2', actorId: 't' }), NDJSON),
      ['time-1', 'time-2'], times.map((_, i) => [i + 1, /"time" must be an RFC 3339 timestamp/] as [number, RegExp]),
    );
    assert.equal((await h.stored(times.map((_, i) => `time-bad-${i}`))).size, 0);
    await assertPartial(
      await h.send('/api/audit-logs/bulk', JSON.stringify([argusItem({ id: 'time-g1' }), argusItem({ timestamp: '2026-04-31T08:00:00Z' }), argusItem({ timestamp: '2026-01-02 15:04:05Z' })])),
      ['time-g1'], [[1, /timestamp must be RFC 3339/], [2, /timestamp must be RFC 3339/]],
    );
    await h.assertHealthy('time');
  });
});
