/**
 * The per-actor hash chain (format v1; docs/chain-format.md is the normative description).
 *
 *   record    = RFC 8785 canonical JSON of {"actor","event","id","receivedAt","seq"}
 *   hash(n)   = SHA-256( CHAIN_DOMAIN_TAG ‖ hash(n-1) as 32 raw bytes ‖ UTF-8 bytes of record(n) )
 *   hash(0)   = GENESIS_HASH (32 zero bytes)
 *
 * Hashes travel as 64 lowercase hex characters. The sequence is per actor, starts at 1 and has
 * no gaps; events without an actor are chained in the partition whose actor is "" (no real
 * actor id can be empty, so it never collides).
 */
import { hash } from 'node:crypto';
import type { JsonObject } from '../public/index.ts';
import { canonicalJson, canonicalString } from './canonical-json.ts';

/** Domain separation: these bytes start every hashed record, so a chain hash is never another protocol's hash. */
export const CHAIN_DOMAIN_TAG = 'auditpipe/chain/v1\n';
const TAG_BYTES = Buffer.from(CHAIN_DOMAIN_TAG, 'utf8');
export const GENESIS_HASH = '0'.repeat(64);
/** The chain partition of events that name no actor. */
export const NO_ACTOR = '';

const HEX64 = /^[0-9a-f]{64}$/;

export function isHashHex(value: unknown): value is string {
  return typeof value === 'string' && HEX64.test(value);
}

/** What the chain hashes for one event, besides the previous hash. */
export interface ChainRecordFields {
  readonly actor: string;
  readonly seq: number;
  readonly id: string;
  readonly receivedAt: string;
  /** The stored event (what the client sent, with id and time filled in). */
  readonly event: JsonObject;
}

/**
 * The canonical record text. `eventCanonical` lets a caller that canonicalised the event once
 * (before the sequence was known) skip doing it again; it must be `canonicalJson(fields.event)`.
 * The keys are written in JCS order, so the result equals `canonicalJson` of the whole record.
 */
export function canonicalRecord(fields: ChainRecordFields, eventCanonical = canonicalJson(fields.event)): string {
  if (!Number.isSafeInteger(fields.seq) || fields.seq < 1) throw new RangeError(`sequence must be a positive safe integer, got ${fields.seq}`);
  // Joined rather than concatenated: one flat string, which hashing and writing read without first flattening it.
  return ['{"actor":', canonicalString(fields.actor), ',"event":', eventCanonical, ',"id":', canonicalString(fields.id),
    ',"receivedAt":', canonicalString(fields.receivedAt), ',"seq":', String(fields.seq), '}'].join('');
}

/** hash(n) from hash(n-1) and record(n); both hashes as lowercase hex. */
export function chainHash(previousHash: string, record: string): string {
  if (!isHashHex(previousHash)) throw new Error(`previous hash must be 64 lowercase hex characters, got ${JSON.stringify(previousHash).slice(0, 80)}`);
  return chainHashUnchecked(previousHash, record);
}

const HASH_INPUT_OFFSET = TAG_BYTES.length + 32;
let scratch = Buffer.allocUnsafe(64 * 1024);
TAG_BYTES.copy(scratch, 0);

/**
 * Views of the first n bytes of `scratch`, by n up to 64 KB: hashing a record allocates nothing.
 * A slot for every length, made at once: an array filled in at scattered indices turns into a
 * dictionary, whose lookups cost as much as the views they save.
 */
const prefixes: Array<Uint8Array | undefined> = new Array<Uint8Array | undefined>(64 * 1024 + 1).fill(undefined);

/** The reused hash input buffer, grown (tag in place) to hold `bytes`. */
function hashInput(bytes: number): Buffer {
  if (bytes > scratch.length) {
    scratch = Buffer.allocUnsafe(bytes);
    TAG_BYTES.copy(scratch, 0);
    prefixes.fill(undefined);
  }
  return scratch;
}

function prefix(length: number): Uint8Array {
  if (length >= prefixes.length) return new Uint8Array(scratch.buffer, scratch.byteOffset, length);
  return prefixes[length] ??= new Uint8Array(scratch.buffer, scratch.byteOffset, length);
}

/**
 * `chainHash` for a previous hash already known to be 64 lowercase hex characters. The input is
 * assembled in one reused buffer and hashed in one call: about twice as fast as a Hash object
 * per record, which matters at hundreds of thousands of records per second.
 */
export function chainHashUnchecked(previousHash: string, record: string): string {
  const input = hashInput(HASH_INPUT_OFFSET + record.length * 3);
  input.write(previousHash, TAG_BYTES.length, 'hex');
  const length = input.write(record, HASH_INPUT_OFFSET, 'utf8');
  return hash('sha256', prefix(HASH_INPUT_OFFSET + length), 'hex');
}

/** Lowercase hex digit values; 255 for every other byte. */
const HEX_VALUE = new Uint8Array(256).fill(255);
for (let d = 0; d < 16; d += 1) HEX_VALUE['0123456789abcdef'.charCodeAt(d)] = d;

/**
 * `chainHash` of a record given as UTF-8 bytes, `record[start, end)`, with the previous hash as
 * the 64 hex bytes at `previousHex[at, at + 64)` (both straight from PostgreSQL's binary COPY, so
 * the verifier never decodes them to strings); undefined when those bytes are not lowercase hex.
 */
export function chainHashOfBytes(previousHex: Uint8Array, at: number, record: Uint8Array, start: number, end: number): string | undefined {
  const needed = HASH_INPUT_OFFSET + end - start;
  const input = hashInput(needed);
  for (let k = 0; k < 32; k += 1) {
    const high = HEX_VALUE[previousHex[at + 2 * k]!]!;
    const low = HEX_VALUE[previousHex[at + 2 * k + 1]!]!;
    if ((high | low) === 255) return undefined;
    input[TAG_BYTES.length + k] = (high << 4) | low;
  }
  Buffer.prototype.copy.call(record, input, HASH_INPUT_OFFSET, start, end);
  return hash('sha256', prefix(needed), 'hex');
}

/** A stored chain position, as receipts and the read API report it. */
export interface ChainPosition {
  readonly actor: string;
  readonly sequence: number;
  readonly previousHash: string;
  readonly hash: string;
}

/** One stored event with its chain position, as the read API returns it. */
export interface ChainRecord extends ChainPosition {
  readonly id: string;
  /** Event time, RFC 3339 as the client sent it. */
  readonly time: string;
  readonly receivedAt: string;
  readonly event: JsonObject;
}

export interface ChainQuery {
  readonly actor?: string;
  /** Exact match on the event's `action` field. */
  readonly action?: string;
  /** Event time range, RFC 3339, `from` inclusive, `to` exclusive. */
  readonly from?: string;
  readonly to?: string;
  /** Newest first (default) or oldest first, by event time then id. */
  readonly order?: 'asc' | 'desc';
  /** At most this many records (1..1000). */
  readonly limit?: number;
  /** The `next` cursor of the previous page. */
  readonly cursor?: string;
}

export interface ChainPage {
  readonly records: readonly ChainRecord[];
  /** Pass as `cursor` for the following page; absent on the last page. */
  readonly next?: string;
}

export interface ChainSummary {
  readonly events: number;
  readonly actors: number;
  readonly lastCheckpoint?: { readonly number: number; readonly time: string; readonly hash: string; readonly events: number };
}

/**
 * What the Postgres chain sink provides to other components, under the DI token
 * `chainStoreToken(pipeline)`: read access for an API (argus `GET /api/audit-logs`).
 */
export interface ChainStoreReader {
  query(filter: ChainQuery): Promise<ChainPage>;
  /** The event with this id and its chain position, or undefined. */
  get(id: string): Promise<ChainRecord | undefined>;
  summary(): Promise<ChainSummary>;
}

export function chainStoreToken(pipeline: string): string {
  return `auditpipe:chain-store:${pipeline}`;
}
