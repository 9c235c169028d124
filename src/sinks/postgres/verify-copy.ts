/**
 * The verifier's fast read: the chain rows (all, or those stored in a range of heap blocks),
 * streamed with a binary `COPY` in storage order (no index, no sort, no text conversion) and
 * handed to `UnorderedChainCheck` as offsets into the bytes PostgreSQL sent. Reading in sequence
 * order cost PostgreSQL about twice as much per row, and decoding rows into strings cost Node
 * more than hashing them (docs/decisions.md, "Verify").
 * Kept free of kysely: worker threads load it.
 */
import net from 'node:net';
import type pg from 'pg';
import type { RowBytes } from '../../public/security.ts';

const COLUMNS = 'actor, seq, event_id, prev_hash, hash, canonical, event_time, received_at';
const FIELDS = 8;
/** `PGCOPY\n\377\r\n\0`, then 32-bit flags and the length of a header extension. */
const SIGNATURE = Buffer.from([0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0x00]);
/** PostgreSQL counts timestamps in microseconds from 2000-01-01. */
const EPOCH_2000_MS = 946_684_800_000;

/**
 * Heap blocks `[from, to)` of the table (`to` absent: to its end), read with a TID range scan
 * (PostgreSQL 14 and later): threads read disjoint parts of the table and none reads a row twice.
 */
export interface BlockRange {
  readonly from: number;
  readonly to?: number;
}

const MAX_BLOCK = 2 ** 32 - 1;

/** The binary COPY of the chain rows of `schema`: all of them, or those stored in `blocks`. */
export function chainCopyStatement(schema: string, blocks?: BlockRange): string {
  const table = `"${schema.replaceAll('"', '""')}".chain_events`;
  // The table form when there is no filter: it reads the heap without a query plan, ~15% less work for PostgreSQL.
  if (!blocks) return `COPY ${table} (${COLUMNS}) TO STDOUT (FORMAT binary)`;
  const { from, to } = blocks;
  if (!Number.isSafeInteger(from) || from < 0 || from > MAX_BLOCK || (to !== undefined && (!Number.isSafeInteger(to) || to <= from || to > MAX_BLOCK))) {
    throw new RangeError(`not a block range: ${from} to ${to ?? 'the end'}`);
  }
  const upTo = to === undefined ? '' : ` AND ctid < '(${to},0)'::tid`;
  return `COPY (SELECT ${COLUMNS} FROM ${table} WHERE ctid >= '(${from},0)'::tid${upTo}) TO STDOUT (FORMAT binary)`;
}

/** Streams the chain rows of `schema` (all, or those in `blocks`) to `onRow`; the number of rows. */
export async function copyChainRows(client: pg.Client, schema: string, blocks: BlockRange | undefined, onRow: (row: RowBytes) => void): Promise<number> {
  const parser = new CopyParser(onRow);
  await copyOut(client, chainCopyStatement(schema, blocks), (bytes, start, end) => parser.push(bytes, start, end));
  return parser.end();
}

/** Receives COPY data: `bytes[start, end)`, valid only during the call. */
export type CopyDataHandler = (bytes: Buffer, start: number, end: number) => void;

/** Runs `COPY … TO STDOUT` on `client` and hands the data to `onData` as it arrives. */
export async function copyOut(client: pg.Client, text: string, onData: CopyDataHandler): Promise<void> {
  const copy = new CopyOut(text, onData);
  client.query(copy);
  await copy.done;
}

/** Where a socket from `socketWithReusedReadBuffer` sends its reads while a COPY takes them in place. */
const inPlaceReads = Symbol('auditpipe.inPlaceReads');
interface InPlaceReads {
  handler: CopyDataHandler | undefined;
}
type ReusedBufferSocket = net.Socket & { [inPlaceReads]?: InPlaceReads };

/** 256 KB: a read of a busy connection fills it, and it stays in a core's cache while it is parsed. */
const READ_BUFFER_BYTES = 256 * 1024;

/**
 * A socket for `pg` (the `stream` option) whose reads all land in one buffer allocated once
 * (net.Socket's `onread`). A plain socket allocates a new 64 KB buffer for every read and passes
 * it through the stream machinery, which over the hundreds of megabytes a verify reads cost a
 * measurable share of its CPU (docs/decisions.md, "Verify"). `pg` gets a copy of each read as a
 * 'data' event, as from any socket; a COPY running with `copyOut` takes the bytes in place instead.
 */
export function socketWithReusedReadBuffer(bytes = READ_BUFFER_BYTES): net.Socket {
  const reads: InPlaceReads = { handler: undefined };
  const socket: ReusedBufferSocket = new net.Socket({
    onread: {
      buffer: Buffer.allocUnsafe(bytes),
      callback: (length: number, buffer: Uint8Array) => {
        if (reads.handler) reads.handler(buffer as Buffer, 0, length);
        else socket.emit('data', Buffer.copyBytesFrom(buffer, 0, length));
        return true; // false would pause the socket
      },
    },
  });
  socket[inPlaceReads] = reads;
  return socket;
}

/**
 * The `stream` option for the verifier's `pg` clients: called by `pg` with its connection
 * settings, it gives a socket with a reused read buffer, except for TLS, whose layer reads the
 * plain socket itself.
 */
export const verifierStream = ((settings: { ssl?: unknown }) => settings.ssl ? new net.Socket() : socketWithReusedReadBuffer()) as () => net.Socket;

const COPY_DATA = 0x64;
/** Messages the server may send during a COPY that do not end it: CopyOutResponse, notices, parameter changes, notifications. */
const IN_COPY = new Set([0x48, 0x4e, 0x53, 0x41]);

/**
 * `COPY … TO STDOUT` as a `pg` Submittable. While the data flows it reads the socket itself and
 * parses the CopyData messages where they lie in the received bytes; at the first message that
 * ends the COPY it gives the socket back to `pg`, which reads the completion (or the error) and
 * reports it through the handle* methods below. `pg` alone would hand over each message as an
 * object with a Buffer of its own, after an event per message: ~1.7 µs of Node CPU per row,
 * a third of what the whole check costs; `pg-copy-streams`, which also takes the socket over,
 * re-chunks it into a Readable and cost more still (docs/decisions.md, "Verify").
 */
class CopyOut implements pg.Submittable {
  /** Undefined once settled. */
  #settle: PromiseWithResolvers<void> | undefined = Promise.withResolvers<void>();
  readonly done = this.#settle!.promise;
  readonly #text: string;
  readonly #onData: CopyDataHandler;
  #connection: pg.Connection | undefined;
  #pgReader: ((chunk: Buffer) => void) | undefined;
  /** Set when the socket reads into one reused buffer: its bytes are valid only during the call. */
  #inPlace: InPlaceReads | undefined;
  /** An incomplete message's bytes so far, from the reads it spans. */
  #partial: Buffer[] = [];
  #partialBytes = 0;
  readonly #onSocketData = (chunk: Buffer) => this.#read(chunk);
  readonly #onReadInPlace = (buffer: Buffer, start: number, end: number) => this.#read(buffer.subarray(start, end));

  constructor(text: string, onData: CopyDataHandler) {
    this.#text = text;
    this.#onData = onData;
  }

  submit(connection: pg.Connection): void {
    this.#connection = connection;
    const readers = connection.stream.listeners('data') as Array<(chunk: Buffer) => void>;
    // Nothing can be buffered in pg's parser here: the previous statement ended with ReadyForQuery.
    this.#inPlace = (connection.stream as ReusedBufferSocket)[inPlaceReads];
    if (this.#inPlace) {
      this.#inPlace.handler = this.#onReadInPlace;
    } else if (readers.length === 1) {
      this.#pgReader = readers[0]!;
      connection.stream.removeListener('data', this.#pgReader);
      connection.stream.on('data', this.#onSocketData);
    }
    connection.query(this.#text);
  }

  #read(chunk: Buffer): void {
    let i = 0;
    if (this.#partialBytes > 0) {
      i = this.#completeMessage(chunk);
      if (i < 0) return;
    }
    this.#readMessages(chunk, i);
  }

  /** Handles the whole messages in `b` from `i` on, and keeps an incomplete last one for the next read. */
  #readMessages(b: Buffer, i: number): void {
    while (i + 5 <= b.length) {
      const code = b[i]!;
      const end = i + 1 + readUInt32(b, i + 1);
      if (code !== COPY_DATA && !IN_COPY.has(code)) {
        this.#giveBack(b.subarray(i));
        return;
      }
      if (end > b.length) break;
      if (code === COPY_DATA) this.#deliver(b, i + 5, end);
      i = end;
    }
    if (i < b.length) {
      this.#partial = [this.#kept(b.subarray(i))];
      this.#partialBytes = b.length - i;
    }
  }

  /**
   * Completes the message begun in earlier reads with as few of `chunk`'s bytes as it needs
   * (joining the whole chunk onto it copied ~64 KB per read) and handles it; where `chunk`'s own
   * messages begin, or -1 when `chunk` is used up.
   */
  #completeMessage(chunk: Buffer): number {
    if (this.#partialBytes + chunk.length < 5) {
      this.#partial.push(this.#kept(chunk));
      this.#partialBytes += chunk.length;
      return -1;
    }
    const byteAt = (k: number): number => {
      for (const piece of this.#partial) {
        if (k < piece.length) return piece[k]!;
        k -= piece.length;
      }
      return chunk[k]!;
    };
    const messageBytes = 1 + (((byteAt(1) << 24) | (byteAt(2) << 16) | (byteAt(3) << 8) | byteAt(4)) >>> 0);
    const needed = messageBytes - this.#partialBytes;
    if (chunk.length < needed) {
      this.#partial.push(this.#kept(chunk));
      this.#partialBytes += chunk.length;
      return -1;
    }
    const message = Buffer.concat([...this.#partial, chunk.subarray(0, needed)]);
    this.#partial = [];
    this.#partialBytes = 0;
    const code = message[0]!;
    if (code !== COPY_DATA && !IN_COPY.has(code)) {
      this.#giveBack(Buffer.concat([message, chunk.subarray(needed)]));
      return -1;
    }
    if (code === COPY_DATA) this.#deliver(message, 5, message.length);
    return needed;
  }

  /** Bytes to keep past this read: a view of a plain socket's read (a new buffer each time), else a copy. */
  #kept(bytes: Buffer): Buffer {
    return this.#inPlace ? Buffer.copyBytesFrom(bytes) : bytes;
  }

  #giveBack(rest: Buffer): void {
    if (this.#inPlace) {
      this.#inPlace.handler = undefined;
      this.#connection!.stream.emit('data', Buffer.copyBytesFrom(rest));
      return;
    }
    const socket = this.#connection!.stream;
    socket.removeListener('data', this.#onSocketData);
    socket.on('data', this.#pgReader!);
    this.#pgReader!(rest);
  }

  #deliver(bytes: Buffer, start: number, end: number): void {
    if (!this.#settle) return; // failed already: the rest of the rows are let go
    try {
      this.#onData(bytes, start, end);
    } catch (error) {
      this.#fail(error as Error);
    }
  }

  /** Only when the socket could not be taken over: pg parsed the message. */
  handleCopyData(message: { chunk: Buffer }): void {
    this.#deliver(message.chunk, 0, message.chunk.length);
  }

  handleCommandComplete(): void {}

  handleReadyForQuery(): void {
    this.#settle?.resolve();
    this.#settle = undefined;
  }

  handleError(error: Error): void {
    this.#fail(error);
  }

  handleRowDescription(): void {
    this.#fail(new Error('the statement returned rows instead of a COPY'));
  }

  handleDataRow(): void {}

  handleEmptyQuery(): void {
    this.#fail(new Error('empty statement'));
  }

  #fail(error: Error): void {
    this.#settle?.reject(error);
    this.#settle = undefined;
  }
}

function readUInt32(b: Buffer, at: number): number {
  return int32(b, at) >>> 0;
}

/**
 * Parses a binary COPY of chain rows fed in pieces cut anywhere; `onRow` runs synchronously for
 * each complete row. No piece is kept: an incomplete row's bytes are copied.
 */
export class CopyParser {
  readonly #reader = new RowReader();
  readonly #onRow: (row: RowBytes) => void;
  #header = true;
  #ended = false;
  #rest: Buffer | undefined;
  #join = Buffer.allocUnsafe(16 * 1024);

  constructor(onRow: (row: RowBytes) => void) {
    this.#onRow = onRow;
  }

  /** Parses `bytes[start, end)`. */
  push(bytes: Buffer, start = 0, end = bytes.length): void {
    if (this.#ended) throw new Error('the binary COPY went on after its trailer');
    let b = bytes;
    let i = start;
    let stop = end;
    if (this.#rest && !this.#header) {
      i = this.#finishRow(bytes, start, end);
      if (i < 0) return;
    } else if (this.#rest) {
      b = Buffer.concat([this.#rest, bytes.subarray(start, end)]);
      i = 0;
      stop = b.length;
      this.#rest = undefined;
    }
    if (this.#header) {
      if (stop - i < SIGNATURE.length + 8) {
        this.#rest = Buffer.from(b.subarray(i, stop));
        return;
      }
      if (!b.subarray(i, i + SIGNATURE.length).equals(SIGNATURE)) throw new Error('the server did not answer with a binary COPY');
      i += SIGNATURE.length + 8 + int32(b, i + SIGNATURE.length + 4);
      this.#header = false;
    }
    for (;;) {
      const next = this.#reader.parse(b, i, stop);
      if (next === TRAILER) {
        this.#ended = true;
        if (i + 2 !== stop) throw new Error('the binary COPY went on after its trailer');
        return;
      }
      if (next < 0) break;
      this.#onRow(this.#reader.row);
      i = next;
    }
    if (i < stop) this.#rest = Buffer.from(b.subarray(i, stop));
  }

  /**
   * Completes the row begun in the previous piece with as few of this piece's bytes as it needs
   * (copying the whole piece onto it cost more than parsing it); where parsing goes on in
   * `bytes`, or -1 when the piece is used up.
   */
  #finishRow(bytes: Buffer, start: number, end: number): number {
    const rest = this.#rest!;
    for (let take = Math.min(end - start, Math.max(4096, rest.length)); ; take = Math.min(end - start, take * 4)) {
      const joined = this.#joined(rest, bytes, start, start + take);
      const next = this.#reader.parse(joined, 0, joined.length);
      if (next === TRAILER) {
        this.#ended = true;
        if (rest.length + end - start !== 2) throw new Error('the binary COPY went on after its trailer');
        return -1;
      }
      if (next >= 0) {
        this.#rest = undefined;
        this.#onRow(this.#reader.row);
        return start + next - rest.length;
      }
      if (take === end - start) {
        this.#rest = Buffer.from(joined);
        return -1;
      }
    }
  }

  /**
   * `rest` followed by `bytes[from, to)`, in a buffer reused from row to row (a new one per
   * socket read cost more than the copy): valid until the next call, which is after `onRow`
   * has returned (the checks keep no reference to a row's bytes).
   */
  #joined(rest: Buffer, bytes: Buffer, from: number, to: number): Buffer {
    const length = rest.length + to - from;
    if (this.#join.length < length) this.#join = Buffer.allocUnsafe(Math.max(length, 2 * this.#join.length));
    rest.copy(this.#join, 0);
    bytes.copy(this.#join, rest.length, from, to);
    return this.#join.subarray(0, length);
  }

  /** The number of rows; throws unless the stream ended with its trailer. */
  end(): number {
    if (!this.#ended) throw new Error('the binary COPY ended in the middle of a row');
    return this.#reader.rows;
  }
}

/** `CopyParser` over chunks from anywhere (a file, a test); the number of rows. */
export async function readCopy(chunks: AsyncIterable<Buffer>, onRow: (row: RowBytes) => void): Promise<number> {
  const parser = new CopyParser(onRow);
  for await (const chunk of chunks) parser.push(chunk);
  return parser.end();
}

const TRAILER = -2;

export class RowReader {
  rows = 0;
  readonly row: RowBytes = {
    bytes: SIGNATURE, actorStart: 0, actorEnd: 0, seq: 0, idStart: 0, idEnd: 0, previousHashAt: 0, hashAt: 0, recordStart: 0, recordEnd: 0,
    eventTimeMs: 0, receivedAtMs: 0,
  };
  readonly #starts = new Int32Array(FIELDS);
  readonly #lengths = new Int32Array(FIELDS);

  /** Fills `row` from the row at `i`; where the next row starts, -1 when this one is incomplete, or TRAILER. */
  parse(b: Buffer, i: number, end = b.length): number {
    if (i + 2 > end) return -1;
    const fields = (b[i]! << 8) | b[i + 1]!;
    if (fields === 0xffff) return TRAILER;
    if (fields !== FIELDS) throw new Error(`a COPY row has ${fields} fields, expected ${FIELDS}`);
    const starts = this.#starts;
    const lengths = this.#lengths;
    let j = i + 2;
    for (let f = 0; f < FIELDS; f += 1) {
      if (j + 4 > end) return -1;
      const length = int32(b, j);
      starts[f] = j + 4;
      lengths[f] = length;
      j += 4 + Math.max(length, 0);
    }
    if (j > end) return -1;
    // A NULL (only possible where someone dropped the NOT NULL constraints) reads as empty, which no check accepts.
    const row = this.row;
    row.bytes = b;
    row.actorStart = starts[0]!;
    row.actorEnd = starts[0]! + Math.max(lengths[0]!, 0);
    row.seq = lengths[1] === 8 ? int64(b, starts[1]!) : 0;
    row.idStart = starts[2]!;
    row.idEnd = starts[2]! + Math.max(lengths[2]!, 0);
    row.previousHashAt = lengths[3] === 64 ? starts[3]! : -1;
    row.hashAt = lengths[4] === 64 ? starts[4]! : -1;
    row.recordStart = starts[5]!;
    row.recordEnd = starts[5]! + Math.max(lengths[5]!, 0);
    row.eventTimeMs = lengths[6] === 8 ? int64(b, starts[6]!) / 1000 + EPOCH_2000_MS : Number.NaN;
    row.receivedAtMs = lengths[7] === 8 ? int64(b, starts[7]!) / 1000 + EPOCH_2000_MS : Number.NaN;
    this.rows += 1;
    return j;
  }
}

function int32(b: Buffer, at: number): number {
  return (b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!;
}

/** Exact below 2^53, which every sequence and timestamp auditpipe writes is. */
function int64(b: Buffer, at: number): number {
  return int32(b, at) * 4_294_967_296 + (int32(b, at + 4) >>> 0);
}
