// The HTTP client against a scripted loopback HTTP server that stands in for auditpipe's HTTP
// source, so each answer (207, 400, 429, 503, a dead port) can be chosen per request. The same
// client against the real engine and PostgreSQL is in test/integration/argus/.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readdirSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { ClientClosedError, HttpAuditClient, QueueFullError, type DeliveryResult } from '../../../src/client/index.ts';
import { buildKeyRegistry } from '../../../src/security/key-registry.ts';
import { verifyEventSignature } from '../../../src/security/signatures.ts';

interface Received {
  readonly url: string;
  readonly authorization: string | undefined;
  readonly items: Array<Record<string, unknown>>;
}
type Answer = { status: number; body?: unknown; headers?: Record<string, string> };

/** A loopback server answering each request with the next scripted answer (the last one repeats). */
async function scripted(answers: Array<Answer | ((items: Array<Record<string, unknown>>) => Answer)>, port = 0) {
  const received: Received[] = [];
  const server: Server = createServer(async (req: IncomingMessage, res) => {
    let text = '';
    for await (const chunk of req) text += chunk;
    const items = JSON.parse(text);
    received.push({ url: req.url ?? '', authorization: req.headers.authorization, items });
    const next = answers[Math.min(received.length - 1, answers.length - 1)]!;
    const answer = typeof next === 'function' ? next(items) : next;
    res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers });
    res.end(answer.body === undefined ? '' : JSON.stringify(answer.body));
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { received, url, port: (server.address() as AddressInfo).port, close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

const ok = (items: Array<Record<string, unknown>>): Answer => ({ status: 201, body: { succeeded: items } });
const event = (n: number) => ({ actorId: `actor-${n % 3}`, action: 'CREATE', status: 'SUCCESS', actorType: 'SERVICE', targetType: 'RESOURCE', message: { n } });
const fast = { initialBackoffMs: 1, maxBackoffMs: 5, batchIntervalMs: 60_000 };

/** Logs `count` events to a port with nothing listening, so all of them end up in a fresh spool. */
async function spooledOnDeadPort(count: number, maxAttempts: number) {
  const spoolDir = mkdtempSync(path.join(tmpdir(), 'spool-'));
  const probe = await scripted([ok]);
  const port = probe.port;
  await probe.close();
  const down = new HttpAuditClient({ baseUrl: `http://127.0.0.1:${port}`, spoolDir, batchSize: 4, maxAttempts, ...fast });
  const ids = await Promise.all(Array.from({ length: count }, (_, n) => down.log(event(n))));
  return { spoolDir, port, ids, report: await down.close() };
}

describe('HTTP client SDK', () => {
  const cleanups: Array<() => Promise<void>> = [];
  after(async () => {
    for (const cleanup of cleanups) await cleanup();
  });

  it('batches by size, sends argus bulk requests with a bearer token, ids and base64 messages', async () => {
    const server = await scripted([ok]);
    cleanups.push(server.close);
    const client = new HttpAuditClient({ baseUrl: server.url, apiKey: 'k', batchSize: 3, ...fast });
    const ids = await Promise.all(Array.from({ length: 7 }, (_, n) => client.log(event(n))));
    const report = await client.close();
    assert.equal(report.delivered, 7);
    assert.deepEqual(server.received.map((r) => r.items.length), [3, 3, 1]);
    assert.ok(server.received.every((r) => r.url === '/api/audit-logs/bulk' && r.authorization === 'Bearer k'));
    const sent = server.received.flatMap((r) => r.items);
    assert.deepEqual(sent.map((i) => i.id), ids);
    assert.ok(ids.every((id) => /^[0-9a-f]{8}-[0-9a-f]{4}-7/.test(id)), 'UUIDv7 ids');
    assert.deepEqual(JSON.parse(Buffer.from(sent[4]!.message as string, 'base64').toString()), { n: 4 });
    assert.equal(typeof sent[0]!.timestamp, 'string');
    assert.equal(sent[0]!.time, undefined);
  });

  it('sends by interval too, and on the native API as plain JSON', async () => {
    const server = await scripted([(items) => ({ status: 200, body: { written: items.length, ids: items.map((i) => i.id) } })]);
    cleanups.push(server.close);
    const client = new HttpAuditClient({ baseUrl: server.url, api: 'native', batchSize: 100, batchIntervalMs: 5 });
    const result = await client.deliver(event(1));
    assert.equal(result.status, 'delivered');
    assert.equal(server.received[0]!.url, '/v1/events');
    assert.deepEqual(server.received[0]!.items[0]!.message, { n: 1 });
    await client.close();
  });

  it('reports exactly the items a 207 lists as failed, and delivers the rest', async () => {
    const server = await scripted([(items) => ({ status: 207, body: { succeeded: [items[0], items[2]], failed: [{ index: 1, error: 'status must be SUCCESS or FAILURE', action: 'CREATE' }] } })]);
    cleanups.push(server.close);
    const failures: DeliveryResult[] = [];
    const client = new HttpAuditClient({ baseUrl: server.url, batchSize: 3, ...fast, onFailure: (r) => failures.push(r) });
    const results = await Promise.all([client.deliver(event(0)), client.deliver(event(1)), client.deliver(event(2))]);
    assert.deepEqual(results.map((r) => r.status), ['delivered', 'failed', 'delivered']);
    assert.equal(results[1]!.error, 'status must be SUCCESS or FAILURE');
    assert.equal(results[1]!.httpStatus, 207);
    assert.deepEqual(failures.map((f) => f.id), [results[1]!.id]);
    assert.equal(server.received.length, 1, 'a 207 is not retried');
    const report = await client.close();
    assert.equal(report.failed.length, 0, 'already settled before close');
  });

  it('never retries a 400; retries 429 and 503 with the same ids until they succeed', async () => {
    const bad = await scripted([{ status: 400, body: { error: 'Invalid request body', details: 'bulk body must be a JSON array' } }]);
    cleanups.push(bad.close);
    const c1 = new HttpAuditClient({ baseUrl: bad.url, ...fast, batchSize: 1 });
    const failed = await c1.deliver(event(1));
    assert.equal(failed.status, 'failed');
    assert.match(failed.error!, /HTTP 400: Invalid request body/);
    assert.equal(bad.received.length, 1);
    await c1.close();

    const flaky = await scripted([{ status: 429, headers: { 'retry-after': '0' } }, { status: 503, body: { error: 'not written' } }, { status: 500 }, ok]);
    cleanups.push(flaky.close);
    const c2 = new HttpAuditClient({ baseUrl: flaky.url, batchSize: 2, maxAttempts: 5, ...fast });
    const results = await Promise.all([c2.deliver(event(1)), c2.deliver(event(2))]);
    assert.deepEqual(results.map((r) => r.status), ['delivered', 'delivered']);
    assert.equal(flaky.received.length, 4);
    const idsPerAttempt = flaky.received.map((r) => r.items.map((i) => i.id).join());
    assert.equal(new Set(idsPerAttempt).size, 1, 'every retry carries the same ids');
    await c2.close();
  });

  it('spools what the server never took and replays it, once, on the next start', async () => {
    // A port with nothing listening: every attempt is a connection error.
    const { spoolDir, port, ids, report: first } = await spooledOnDeadPort(10, 2);
    assert.equal(first.spooled, 10);
    assert.ok(readdirSync(spoolDir).some((name) => name.endsWith('.ndjson')));

    const up = await scripted([ok], port);
    cleanups.push(up.close);
    const restarted = new HttpAuditClient({ baseUrl: up.url, spoolDir, ...fast });
    const second = await restarted.close();
    assert.equal(second.delivered, 10);
    const delivered = up.received.flatMap((r) => r.items.map((i) => i.id));
    assert.deepEqual([...delivered].sort(), [...ids].sort(), 'each spooled event sent exactly once with its id');
    assert.deepEqual(readdirSync(spoolDir), [], 'spool files removed once delivered');
  });

  it('counts replayed events in the first report even when they were delivered before it was asked for', async () => {
    const { spoolDir, port, report: down } = await spooledOnDeadPort(10, 1);
    assert.equal(down.spooled, 10);

    const up = await scripted([ok], port);
    cleanups.push(up.close);
    const restarted = new HttpAuditClient({ baseUrl: up.url, spoolDir, batchSize: 4, ...fast });
    // Replay starts on construction; let it deliver everything before the report is asked for.
    while (up.received.flatMap((r) => r.items).length < 10) await new Promise((resolve) => setTimeout(resolve, 5));
    await new Promise((resolve) => setTimeout(resolve, 20));
    const report = await restarted.close();
    assert.equal(report.delivered, 10, 'every replayed event is reported');
    assert.deepEqual(readdirSync(spoolDir), []);
  });

  it('keeps events for the spool on configuration errors (401) instead of failing them', async () => {
    const spoolDir = mkdtempSync(path.join(tmpdir(), 'spool-'));
    const server = await scripted([{ status: 401, body: { error: 'unauthorized', details: 'invalid token' } }]);
    cleanups.push(server.close);
    const client = new HttpAuditClient({ baseUrl: server.url, spoolDir, ...fast, batchSize: 1 });
    const result = await client.deliver(event(1));
    assert.equal(result.status, 'spooled');
    assert.equal(server.received.length, 1, '401 is not retried');
    await client.close();
    assert.equal(readdirSync(spoolDir).length, 1);
  });

  it('rejects instead of blocking when the queue is full and whenFull is reject', async () => {
    const server = await scripted([ok]);
    cleanups.push(server.close);
    const client = new HttpAuditClient({ baseUrl: server.url, queueSize: 2, whenFull: 'reject', batchSize: 10, ...fast });
    await client.log(event(1));
    await client.log(event(2));
    await assert.rejects(client.log(event(3)), QueueFullError);
    const report = await client.close();
    assert.equal(report.delivered, 2);
    await assert.rejects(client.log(event(4)), ClientClosedError);
  });

  it('blocks a caller while the queue is full and lets it in once a batch went out', async () => {
    const server = await scripted([ok]);
    cleanups.push(server.close);
    const client = new HttpAuditClient({ baseUrl: server.url, queueSize: 2, batchSize: 2, concurrency: 1, ...fast });
    await Promise.all(Array.from({ length: 9 }, (_, n) => client.log(event(n))));
    // All nine callers got in although the queue holds two: each waited for a batch to leave.
    await client.close();
    assert.equal(server.received.flatMap((r) => r.items).length, 9);
    assert.ok(server.received.every((r) => r.items.length <= 2));
  });

  it('signs with a private key over the bytes the server verifies; a signer error reaches the caller', async () => {
    const server = await scripted([ok]);
    cleanups.push(server.close);
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const client = new HttpAuditClient({ baseUrl: server.url, api: 'native', signingKey: { keyId: 'svc', privateKey }, ...fast, batchSize: 1 });
    await client.deliver({ ...event(1), metadata: { big: 12345678901234, nested: { b: 1, a: 2 } } });
    const registry = buildKeyRegistry([{ id: 'svc', pem: publicKey.export({ type: 'spki', format: 'pem' }).toString() }], undefined, '.');
    const sent = server.received[0]!.items[0]! as never;
    assert.deepEqual(verifyEventSignature(sent, registry, { actor: 'actor-1', at: new Date() }), { ok: true, signed: true, keyId: 'svc', algorithm: 'EdDSA' });
    await client.close();

    const broken = new HttpAuditClient({ baseUrl: server.url, signer: { keyId: 'kms', algorithm: 'EdDSA', sign: () => { throw new Error('KMS unavailable'); } }, ...fast });
    await assert.rejects(broken.log(event(1)), /KMS unavailable/);
    await broken.close();
    assert.throws(() => new HttpAuditClient({ baseUrl: server.url, signingKey: { keyId: 'x', privateKey: 'not a key' } }));
  });

  it('halves a batch the server finds too large (413)', async () => {
    const server = await scripted([(items) => (items.length > 2 ? { status: 413, body: { error: 'too many events' } } : ok(items))]);
    cleanups.push(server.close);
    const client = new HttpAuditClient({ baseUrl: server.url, batchSize: 8, ...fast });
    for (let n = 0; n < 8; n += 1) await client.log(event(n));
    const report = await client.close();
    assert.equal(report.delivered, 8);
    assert.equal(server.received.flatMap((r) => r.items).length, 8 + 4 + 4 + 2 * 4, 'the 8, then two 4s, then four 2s were sent; only the 2s were taken');
  });
});
