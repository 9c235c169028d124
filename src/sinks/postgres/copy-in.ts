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
import type pg from 'pg';

/** What `pg`'s Connection offers for COPY FROM (not in its type declarations). */
interface CopyInConnection {
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
}

class StatementsThenCopy implements pg.Submittable {
  readonly #settle = Promise.withResolvers<number>();
  readonly done = this.#settle.promise;
  readonly #text: string;
  readonly #data: Buffer;
  #error: Error | undefined;
  #copied: number | undefined;

  constructor(text: string, data: Buffer) {
    this.#text = text;
    this.#data = data;
  }

  submit(connection: pg.Connection): void {
    connection.query(this.#text);
    const copy = connection as unknown as CopyInConnection;
    if (this.#data.length > 0) copy.sendCopyFromChunk(this.#data);
    copy.endCopyFrom();
  }

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
 * transaction, with `data` in the COPY's format; the number of rows copied.
 */
export async function statementsThenCopy(client: pg.ClientBase, text: string, data: Buffer): Promise<number> {
  const message = new StatementsThenCopy(text, data);
  client.query(message);
  return await message.done;
}

const COPY_TEXT_ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };
const NEEDS_ESCAPE = /[\\\t\n\r]/;
const TO_ESCAPE = /[\\\t\n\r]/g;

/** A value as a field of COPY's text format (tab-separated, backslash escapes). */
export function copyTextField(value: string): string {
  return NEEDS_ESCAPE.test(value) ? value.replace(TO_ESCAPE, (c) => COPY_TEXT_ESCAPES[c]!) : value;
}
