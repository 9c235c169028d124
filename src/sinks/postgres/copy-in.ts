/**
 * Statements followed by `COPY … FROM STDIN`, sent with the COPY's data as one simple-query
 * message, which PostgreSQL runs as one implicit transaction: the chain append's common case in
 * a single round trip. The data goes out at once, not when the server asks for it: waiting for
 * the server's CopyInResponse left PostgreSQL idle whenever Node was busy hashing the next batch
 * (docs/decisions.md, "Chain appends"). When a statement before the COPY fails, the whole
 * message rolls back and the server skips the data that follows (the protocol has it ignore
 * copy messages outside a COPY). PostgreSQL inserts COPYed rows in bulk (a WAL record per page
 * rather than per row, no statement to plan, no arrays to parse).
 */
import pg from 'pg';

/** What `pg`'s Connection offers for COPY FROM (not in its type declarations). */
interface CopyInConnection {
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
}

/**
 * The message as a query of `pg`. It extends `pg.Query` only because `pg`'s pipeline mode
 * refuses other query classes (those that keep a portal open across round trips, like cursors,
 * would have the replies to the queries behind them land in their portal); this one does not: it
 * is answered in full, up to its ReadyForQuery, before the next message is read.
 */
class StatementsThenCopy extends pg.Query {
  readonly #settle = Promise.withResolvers<number>();
  readonly done = this.#settle.promise;
  readonly #text: string;
  readonly #data: Buffer;
  #error: Error | undefined;
  #copied: number | undefined;

  constructor(text: string, data: Buffer) {
    super({ text });
    this.#text = text;
    this.#data = data;
  }

  // A property, as `pg.Query`'s type declares it.
  override submit = (connection: pg.Connection): void => {
    connection.query(this.#text);
    const copy = connection as unknown as CopyInConnection;
    if (this.#data.length > 0) copy.sendCopyFromChunk(this.#data);
    copy.endCopyFrom();
  };

  handleCopyInResponse(): void {}

  handleCommandComplete(message: { text?: string }): void {
    const count = /^COPY (\d+)$/.exec(message.text ?? '');
    if (count) this.#copied = Number(count[1]);
  }

  /** `pg` is done with this message at its first error (it stops routing the message's replies here). */
  handleError(error: Error): void {
    this.#settle.reject(this.#error ?? error);
  }

  handleReadyForQuery(): void {
    if (this.#error) this.#settle.reject(this.#error);
    else if (this.#copied === undefined) this.#settle.reject(new Error('the message ended without running its COPY'));
    else this.#settle.resolve(this.#copied);
  }

  handleRowDescription(): void {}

  handleDataRow(): void {}

  handleCopyData(): void {}

  handleEmptyQuery(): void {
    this.#error ??= new Error('empty statement');
  }
}

/**
 * Runs `text` (statements, then one `COPY … FROM STDIN`) on `client` as one implicit
 * transaction, with `data` in the COPY's format; the number of rows copied. On a client in
 * pipeline mode the message goes out at once, behind any still running: PostgreSQL runs them in
 * the order sent, each as its own transaction.
 */
export async function statementsThenCopy(client: pg.ClientBase, text: string, data: Buffer): Promise<number> {
  const message = new StatementsThenCopy(text, data);
  client.query(message);
  return await message.done;
}

/** COPY's binary format: this signature, then a flags word and a header-extension length (both 0). */
const BINARY_SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
const BINARY_HEADER_BYTES = BINARY_SIGNATURE.length + 8;
/** 2000-01-01T00:00:00Z, PostgreSQL's epoch for binary timestamps, in Unix milliseconds. */
const POSTGRES_EPOCH_MS = 946_684_800_000;
const TWO_32 = 2 ** 32;

/**
 * Rows in COPY's binary format, written straight into one buffer: each text field is encoded to
 * UTF-8 once, at its place, with no escaping (the format carries lengths, not delimiters), and
 * PostgreSQL reads numbers and times as binary instead of parsing their text.
 */
export class CopyBinaryRows {
  #buffer: Buffer;
  #at = BINARY_HEADER_BYTES;
  #lastMs = Number.NaN;
  readonly #lastTimeBytes = Buffer.alloc(8);

  /** `bytes`: a guess at the size of all rows, to spare regrowing the buffer. */
  constructor(bytes: number) {
    this.#buffer = Buffer.allocUnsafe(BINARY_HEADER_BYTES + bytes + 2);
    BINARY_SIGNATURE.copy(this.#buffer, 0);
    this.#buffer.fill(0, BINARY_SIGNATURE.length, BINARY_HEADER_BYTES);
  }

  /** Starts a row of `fields` fields; `maxBytes` bounds what its fields take (see `textBound`). */
  row(fields: number, maxBytes: number): this {
    this.#reserve(2 + maxBytes);
    this.#buffer.writeInt16BE(fields, this.#at);
    this.#at += 2;
    return this;
  }

  text(value: string): this {
    const written = this.#buffer.write(value, this.#at + 4, 'utf8');
    this.#buffer.writeInt32BE(written, this.#at);
    this.#at += 4 + written;
    return this;
  }

  /** A non-negative safe integer as int8. */
  int8(value: number): this {
    const high = Math.floor(value / TWO_32);
    this.#buffer.writeInt32BE(8, this.#at);
    this.#buffer.writeUInt32BE(high, this.#at + 4);
    this.#buffer.writeUInt32BE(value - high * TWO_32, this.#at + 8);
    this.#at += 12;
    return this;
  }

  /** A timestamptz from Unix milliseconds (what the row's columns hold). */
  timestamptz(ms: number): this {
    // The rows of a batch mostly share their receipt time, and often their event time.
    if (ms !== this.#lastMs) {
      const microseconds = (ms - POSTGRES_EPOCH_MS) * 1000;
      if (Number.isSafeInteger(microseconds)) {
        const high = Math.floor(microseconds / TWO_32);
        this.#lastTimeBytes.writeInt32BE(high, 0);
        this.#lastTimeBytes.writeUInt32BE(microseconds - high * TWO_32, 4);
      } else {
        // Beyond about 285 years from 2000 a double no longer holds every microsecond.
        this.#lastTimeBytes.writeBigInt64BE(BigInt(ms - POSTGRES_EPOCH_MS) * 1000n);
      }
      this.#lastMs = ms;
    }
    this.#buffer.writeInt32BE(8, this.#at);
    this.#lastTimeBytes.copy(this.#buffer, this.#at + 4);
    this.#at += 12;
    return this;
  }

  /** The finished data: header, rows, trailer. The writer must not be used after. */
  finish(): Buffer {
    this.#reserve(2);
    this.#buffer.writeInt16BE(-1, this.#at);
    return this.#buffer.subarray(0, this.#at + 2);
  }

  #reserve(bytes: number): void {
    if (this.#at + bytes <= this.#buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.#buffer.length * 2, this.#at + bytes));
    this.#buffer.copy(grown, 0, 0, this.#at);
    this.#buffer = grown;
  }
}

/** The most bytes a text field of `value` takes in a binary row: its length word and UTF-8 (≤ 3 bytes per UTF-16 unit). */
export function textBound(value: string): number {
  return 4 + 3 * value.length;
}
