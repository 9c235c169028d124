/**
 * Signed checkpoints over all chain heads (format v1; docs/chain-format.md is normative).
 *
 * A checkpoint commits to every actor's head `(actor, seq, hash)` through an RFC 6962 Merkle
 * tree (leaves sorted by the actor's UTF-8 bytes), to the number of events, to its time and to
 * the previous checkpoint's hash, so checkpoints form a chain of their own (as CloudTrail's
 * digests do). The signed text is a small line-oriented note, in the spirit of C2SP
 * tlog-checkpoint; the signature is Ed25519 over its exact bytes.
 */
import { createHash, sign, verify, type KeyObject } from 'node:crypto';
import { GENESIS_HASH, isHashHex } from './chain.ts';

export const CHECKPOINT_HEADER = 'auditpipe checkpoint v1';
const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);

export interface ChainHead {
  readonly actor: string;
  readonly seq: number;
  readonly hash: string;
}

/** Leaf bytes of one head: u32be(len(actor)) ‖ actor UTF-8 ‖ u64be(seq) ‖ hash (32 raw bytes). */
export function headLeaf(head: ChainHead): Buffer {
  const actor = Buffer.from(head.actor, 'utf8');
  const leaf = Buffer.allocUnsafe(4 + actor.length + 8 + 32);
  leaf.writeUInt32BE(actor.length, 0);
  actor.copy(leaf, 4);
  leaf.writeBigUInt64BE(BigInt(head.seq), 4 + actor.length);
  Buffer.from(head.hash, 'hex').copy(leaf, 12 + actor.length);
  return leaf;
}

/** Heads in checkpoint order: by the actor's UTF-8 bytes (independent of any database collation). */
export function sortHeads(heads: readonly ChainHead[]): ChainHead[] {
  const keyed = heads.map((head) => ({ head, key: Buffer.from(head.actor, 'utf8') }));
  keyed.sort((a, b) => Buffer.compare(a.key, b.key));
  return keyed.map((k) => k.head);
}

function sha256(...parts: Buffer[]): Buffer {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest();
}

/**
 * RFC 6962 Merkle Tree Hash: MTH({}) = SHA-256(""), leaf = SHA-256(0x00 ‖ d),
 * node = SHA-256(0x01 ‖ left ‖ right), split at the largest power of two below n.
 */
export function merkleRoot(leaves: readonly Buffer[]): Buffer {
  if (leaves.length === 0) return sha256();
  // Bottom-up with an odd last node promoted unchanged: the same tree as RFC 6962's recursive split.
  let level = leaves.map((leaf) => sha256(LEAF_PREFIX, leaf));
  while (level.length > 1) {
    const next: Buffer[] = [];
    for (let i = 0; i < level.length; i += 2) {
      next.push(i + 1 < level.length ? sha256(NODE_PREFIX, level[i]!, level[i + 1]!) : level[i]!);
    }
    level = next;
  }
  return level[0]!;
}

/** The Merkle root (hex) of the heads, which must be sorted with `sortHeads`. */
export function headsRoot(sortedHeads: readonly ChainHead[]): string {
  return merkleRoot(sortedHeads.map(headLeaf)).toString('hex');
}

/** The signed content of a checkpoint. */
export interface CheckpointBody {
  /** Which store this is, e.g. `auditpipe/default`. */
  readonly origin: string;
  /** 1, 2, 3, ... within the store. */
  readonly number: number;
  /** RFC 3339, UTC, milliseconds. */
  readonly time: string;
  readonly actors: number;
  /** Events in all chains (the sum of the head sequences). */
  readonly events: number;
  readonly root: string;
  /** Hash of checkpoint number-1; GENESIS_HASH for the first. */
  readonly previous: string;
}

export interface SignedCheckpoint extends CheckpointBody {
  /** The exact signed text. */
  readonly text: string;
  /** SHA-256 of `text`, hex: what the next checkpoint's `previous` names. */
  readonly hash: string;
  /** Ed25519 signature over `text`, base64. */
  readonly signature: string;
  readonly keyId: string;
}

export class CheckpointFormatError extends Error {
  override readonly name = 'CheckpointFormatError';
}

const ORIGIN = /^[\x21-\x7e]{1,200}$/;
const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

export function formatCheckpoint(body: CheckpointBody): string {
  if (!ORIGIN.test(body.origin)) throw new CheckpointFormatError('checkpoint origin must be 1-200 printable ASCII characters without spaces');
  if (!TIME.test(body.time)) throw new CheckpointFormatError(`checkpoint time must be RFC 3339 UTC with milliseconds, got ${body.time}`);
  for (const [name, value] of [['number', body.number], ['actors', body.actors], ['events', body.events]] as const) {
    if (!Number.isSafeInteger(value) || value < 0) throw new CheckpointFormatError(`checkpoint ${name} must be a non-negative integer`);
  }
  if (!isHashHex(body.root) || !isHashHex(body.previous)) throw new CheckpointFormatError('checkpoint root and previous must be 64 lowercase hex characters');
  return [
    CHECKPOINT_HEADER,
    `origin ${body.origin}`,
    `number ${body.number}`,
    `time ${body.time}`,
    `actors ${body.actors}`,
    `events ${body.events}`,
    `root ${body.root}`,
    `previous ${body.previous}`,
    '',
  ].join('\n');
}

/** Parses a checkpoint text strictly: exactly the v1 lines, in order, each well-formed. */
export function parseCheckpoint(text: string): CheckpointBody {
  const lines = text.split('\n');
  const fail = (why: string): never => {
    throw new CheckpointFormatError(`not a v1 checkpoint: ${why}`);
  };
  if (lines.length !== 9 || lines[8] !== '') fail('expected 8 lines each ending in a newline');
  if (lines[0] !== CHECKPOINT_HEADER) fail(`first line must be "${CHECKPOINT_HEADER}"`);
  const field = (index: number, name: string, pattern: RegExp): string => {
    const line = lines[index]!;
    const prefix = `${name} `;
    if (!line.startsWith(prefix) || !pattern.test(line.slice(prefix.length))) fail(`line ${index + 1} must be "${name} <value>"`);
    return line.slice(prefix.length);
  };
  const integer = /^(0|[1-9]\d{0,15})$/;
  const body: CheckpointBody = {
    origin: field(1, 'origin', ORIGIN),
    number: Number(field(2, 'number', integer)),
    time: field(3, 'time', TIME),
    actors: Number(field(4, 'actors', integer)),
    events: Number(field(5, 'events', integer)),
    root: field(6, 'root', /^[0-9a-f]{64}$/),
    previous: field(7, 'previous', /^[0-9a-f]{64}$/),
  };
  if (formatCheckpoint(body) !== text) fail('not in canonical form');
  return body;
}

export function checkpointHash(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

export function signCheckpoint(body: CheckpointBody, privateKey: KeyObject, keyId: string): SignedCheckpoint {
  const text = formatCheckpoint(body);
  const signature = sign(null, Buffer.from(text, 'utf8'), privateKey).toString('base64');
  return { ...body, text, hash: checkpointHash(text), signature, keyId };
}

/** True when `signature` (base64) is a valid Ed25519 signature of `text` by `publicKey`. */
export function verifyCheckpointSignature(text: string, signature: string, publicKey: KeyObject): boolean {
  if (!/^[A-Za-z0-9+/]{86}==$/.test(signature)) return false;
  try {
    return verify(null, Buffer.from(text, 'utf8'), publicKey, Buffer.from(signature, 'base64'));
  } catch {
    return false;
  }
}

export const FIRST_PREVIOUS = GENESIS_HASH;

/**
 * What an anchor receives: the signed checkpoint and, when the heads changed since the previous
 * checkpoint (and there are at most `MAX_ANCHORED_HEADS`), the heads it commits to as
 * `[actor, seq, hash]` in leaf order. The heads are not signed themselves; a reader checks them
 * against the signed root, and with them a verifier can name the actor whose chain was rewritten.
 */
export interface AnchoredCheckpointPayload extends SignedCheckpoint {
  readonly heads?: ReadonlyArray<readonly [string, number, string]>;
}

/** Above this many actors an anchored checkpoint carries only its root (an object stays ≲ 16 MiB). */
export const MAX_ANCHORED_HEADS = 100_000;

/**
 * Somewhere a signed checkpoint is also written (e.g. S3 Object Lock), so rewriting the
 * database cannot rewrite history. Registered under `checkpointAnchorsToken(pipeline)` as a list.
 */
export interface CheckpointAnchor {
  readonly name: string;
  /** Stores every field of `checkpoint` (the heads included when present). */
  anchor(checkpoint: AnchoredCheckpointPayload): Promise<void>;
}

export function checkpointAnchorsToken(pipeline: string): string {
  return `auditpipe:checkpoint-anchors:${pipeline}`;
}
