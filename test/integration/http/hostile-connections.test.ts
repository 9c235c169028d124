/**
 * Hostile connections at the HTTP edge (issue 19, item 4): slow clients are cut off by the
 * header and request timeouts, and 2,000 concurrent connections meet the connection limit,
 * which answers or refuses cleanly; auditpipe (a child process) stays healthy, RSS bounded.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startHostile, type Hostile } from './hostile-helpers.ts';

/** What a raw connection saw: the answer's status line (if any) and whether the server closed it. */
interface Seen {
  readonly status?: number;
  readonly text: string;
  readonly sent: number;
}

/**
 * Opens a connection and sends `head` and then `trickle` one byte every `everyMs`, until the
 * server closes the connection. Resolves with what came back and how many trickle bytes went out.
 */
function trickle(port: number, head: string, trickleText: string, everyMs: number): Promise<Seen> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    let sent = 0;
    let timer: NodeJS.Timeout | undefined;
    socket.on('data', (chunk) => (text += chunk.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearInterval(timer);
      const status = /^HTTP\/1\.1 (\d{3})/.exec(text)?.[1];
      resolve({ status: status ? Number(status) : undefined, text, sent });
    });
    socket.on('connect', () => {
      if (head) socket.write(head);
      timer = setInterval(() => {
        if (sent >= trickleText.length) {
          clearInterval(timer);
          socket.destroy();
          reject(new Error(`the server kept a slow connection open for all ${sent} bytes`));
          return;
        }
        socket.write(trickleText[sent]!);
        sent += 1;
      }, everyMs);
    });
  });
}

describe('HTTP source: slow clients', { timeout: 90_000 }, () => {
  let h: Hostile;
  before(async () => {
    h = await startHostile('ap_slow', { headers_timeout_ms: 1000, request_timeout_ms: 2000 });
  });
  after(async () => {
    await h?.stop();
  });

  it('closes a connection whose headers arrive a byte at a time (headers_timeout_ms)', async () => {
    const seen = await trickle(h.port, 'POST /v1/events HTTP/1.1\r\nHost: x\r\n', 'X-Slow: ' + 'a'.repeat(200), 250);
    assert.ok(seen.status === undefined || seen.status === 408, seen.text);
    assert.ok(seen.sent < 200, `closed after ${seen.sent} of 208 bytes`);
    await h.assertHealthy('slow-headers');
  });

  it('closes an idle connection that never sends a byte', async () => {
    const seen = await new Promise<string>((resolve) => {
      const socket = connect(h.port, '127.0.0.1');
      let text = '';
      socket.on('data', (chunk) => (text += chunk));
      socket.on('error', () => {});
      socket.on('close', () => resolve(text));
    });
    assert.ok(seen === '' || seen.startsWith('HTTP/1.1 408'), seen);
    await h.assertHealthy('idle');
  });

  it('closes a connection whose body arrives a byte at a time (request_timeout_ms), and stores nothing of it', async () => {
    const body = JSON.stringify({ id: 'slow-body', actorId: 's', pad: 'p'.repeat(100) });
    const head = `POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    const seen = await trickle(h.port, head, body, 250);
    assert.ok(seen.status === undefined || seen.status === 408, seen.text);
    assert.ok(seen.sent < body.length, `closed after ${seen.sent} of ${body.length} bytes`);
    assert.equal((await h.stored(['slow-body'])).size, 0);
    await h.assertHealthy('slow-body');
  });
});

/** Opens a connection and resolves once it is connected (or failed). */
function open(port: number): Promise<Socket> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => resolve(socket));
    socket.once('error', () => resolve(socket));
  });
}

/** Sends one request on `socket` and resolves with the answer's status, or undefined when closed unanswered. */
function exchange(socket: Socket, request: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    let text = '';
    socket.on('data', (chunk) => (text += chunk.toString('latin1')));
    socket.on('error', () => {});
    socket.once('close', () => {
      const status = /^HTTP\/1\.1 (\d{3})/.exec(text)?.[1];
      resolve(status ? Number(status) : undefined);
    });
    // The server may have closed it already (over max_connections), before this listener existed.
    if (socket.closed) resolve(undefined);
    else if (!socket.destroyed) socket.write(request);
  });
}

const post = (id: string) => {
  const body = JSON.stringify({ id, actorId: `conc-${id.length % 7}`, action: 'concurrent' });
  return `POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
};

describe('HTTP source: 2,000 concurrent connections', { timeout: 120_000 }, () => {
  const LIMIT = 1000;
  let h: Hostile;
  before(async () => {
    h = await startHostile('ap_conns', { max_connections: LIMIT });
  });
  after(async () => {
    await h?.stop();
  });

  it('over max_connections a connection is closed at once; the held ones still answer', async () => {
    // LIMIT keep-alive connections, each answered once, so the server holds them all open. The
    // test's own fetch calls may keep a connection or two open too: those take slots first.
    const held: Socket[] = [];
    try {
      for (let i = 0; i < LIMIT; i += 250) held.push(...(await Promise.all(Array.from({ length: 250 }, () => open(h.port)))));
      const answered = await Promise.all(held.map((socket) => new Promise<boolean>((resolve) => {
        socket.once('data', (chunk) => resolve(chunk.toString('latin1').startsWith('HTTP/1.1 200')));
        socket.once('close', () => resolve(false));
        socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      })));
      const open200 = answered.filter(Boolean).length;
      assert.ok(open200 >= LIMIT - 5 && open200 <= LIMIT, `${open200} held connections answered`);

      const extra = await Promise.all(Array.from({ length: 1000 }, () => open(h.port)));
      const statuses = await Promise.all(extra.map((socket, i) => exchange(socket, post(`over-${i}`))));
      assert.deepEqual([...new Set(statuses)], [undefined], 'every connection over the limit is closed unanswered');
      assert.equal((await h.stored(Array.from({ length: 1000 }, (_, i) => `over-${i}`))).size, 0);

      const live = held.filter((_, i) => answered[i]).slice(0, 10);
      const again = await Promise.all(live.map((socket, i) => exchange(socket, post(`held-${i}`))));
      assert.deepEqual(again, Array(10).fill(200), 'held connections still work');
    } finally {
      for (const socket of held) socket.destroy();
    }
    await h.assertHealthy('limit');
  });

  it('2,000 requests at once: each is answered 200 (and stored) or refused by closing', async () => {
    const sockets = await Promise.all(Array.from({ length: 2000 }, () => open(h.port)));
    const ids = sockets.map((_, i) => `burst-${i}`);
    const statuses = await Promise.all(sockets.map((socket, i) => exchange(socket, post(ids[i]!))));
    const ok = ids.filter((_, i) => statuses[i] === 200);
    const other = statuses.filter((status) => status !== 200 && status !== undefined);
    assert.deepEqual(other, [], 'no answer other than 200 or a closed connection');
    assert.ok(ok.length >= LIMIT / 2, `${ok.length} of 2000 answered`);
    const stored = await h.stored(ids);
    assert.deepEqual([...stored.keys()].filter((id) => !ok.includes(id)), [], 'nothing refused was stored');
    assert.equal(ok.filter((id) => !stored.has(id)).length, 0, 'every 200 is stored');
    await h.assertHealthy('burst');
  });
});
