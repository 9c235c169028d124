/**
 * The verifier's fast pass: checks chain rows in whatever order the store hands them out (its
 * storage order, read without an index), which costs the database a fraction of reading them in
 * sequence order. Every row's own checks (hash recomputed from its stored previous hash and
 * bytes, record against columns, checkpoint claims on it) are made as it arrives; the links are
 * followed per actor, holding the few rows that arrive before their predecessor until it comes.
 *
 * The pass reports no findings. An actor whose rows all check out and link from 1 without a gap
 * is verified; anything else about an actor (a failed check, a gap, a duplicate, too many rows
 * waiting) makes it a suspect, and the caller walks the suspects again in sequence order with
 * `checkChains`, which reports exactly what is wrong. So a tampered store gets the same report
 * as the ordered walk alone would give, and an intact one is read once, fast.
 */
import { chainHashOfBytes, GENESIS_HASH } from './chain.ts';
import { recordBytesAgree } from './record-check.ts';
import type { ChainCheckInput, ChainCheckResult, Claim, Claims } from './verify.ts';

/** One row as its raw fields: offsets into the bytes the store sent. */
export interface RowBytes {
  bytes: Uint8Array;
  actor: string;
  /** The actor's UTF-8 bytes. */
  actorStart: number;
  actorEnd: number;
  seq: number;
  idStart: number;
  idEnd: number;
  /** Where the 64 hex bytes of each hash start; -1 when the stored value is not 64 bytes long. */
  previousHashAt: number;
  hashAt: number;
  recordStart: number;
  recordEnd: number;
  eventTimeMs: number;
  receivedAtMs: number;
}

interface ActorState {
  readonly claims: Map<number, Claim> | undefined;
  readonly anchored: Map<number, Claim> | undefined;
  next: number;
  last: string;
  suspect: boolean;
  /** Rows that arrived before their predecessor, by sequence. */
  waiting: Map<number, { readonly previousHash: string; readonly hash: string }> | undefined;
}

/** What the fast pass verified, and whom it leaves to the ordered walk. */
export interface UnorderedCheckResult {
  /** Verified actors with their tails (sequence and hash of the last row). */
  readonly tails: Map<string, { seq: number; hash: string }>;
  /** Rows of the verified actors. */
  readonly events: number;
  readonly uncoveredEvents: number;
  /** Of the verified actors' claims, those beyond their tails (no row to match them). */
  readonly unmatchedClaims: Claims;
  readonly unmatchedAnchored: Claims;
  /** Actors with anything unexpected: to be walked in sequence order, which reports what. */
  readonly suspects: string[];
}

/** Rows held for their predecessor, over all actors; past it, an actor with one more becomes a suspect. */
export const MAX_WAITING_ROWS = 200_000;

export class UnorderedChainCheck {
  readonly #input: ChainCheckInput;
  readonly #actors = new Map<string, ActorState>();
  readonly #maxWaiting: number;
  #waiting = 0;

  constructor(input: ChainCheckInput, maxWaiting = MAX_WAITING_ROWS) {
    this.#input = input;
    this.#maxWaiting = maxWaiting;
  }

  row(row: RowBytes): void {
    let state = this.#actors.get(row.actor);
    if (!state) {
      state = {
        claims: this.#input.claims.get(row.actor), anchored: this.#input.anchored.get(row.actor),
        next: 1, last: GENESIS_HASH, suspect: false, waiting: undefined,
      };
      this.#actors.set(row.actor, state);
    }
    if (state.suspect) return;
    const { bytes } = row;
    const hash = row.previousHashAt < 0 || row.hashAt < 0 ? undefined : chainHashOfBytes(bytes, row.previousHashAt, bytes, row.recordStart, row.recordEnd);
    const claim = state.claims?.get(row.seq);
    const anchoredClaim = state.anchored?.get(row.seq);
    if (hash === undefined || !hexEquals(bytes, row.hashAt, hash)
      || !recordBytesAgree(bytes, row.recordStart, row.recordEnd, row.actorStart, row.actorEnd, row.idStart, row.idEnd, row.seq, row.eventTimeMs, row.receivedAtMs)
      || (claim !== undefined && claim.hash !== hash) || (anchoredClaim !== undefined && anchoredClaim.hash !== hash)) {
      this.#suspect(state);
      return;
    }
    if (row.seq === state.next) {
      if (!hexEquals(bytes, row.previousHashAt, state.last)) {
        this.#suspect(state);
        return;
      }
      state.next += 1;
      state.last = hash;
      while (state.waiting) {
        const early = state.waiting.get(state.next);
        if (!early) break;
        state.waiting.delete(state.next);
        this.#waiting -= 1;
        if (state.waiting.size === 0) state.waiting = undefined;
        if (early.previousHash !== state.last) {
          this.#suspect(state);
          return;
        }
        state.next += 1;
        state.last = early.hash;
      }
    } else if (row.seq > state.next && Number.isSafeInteger(row.seq) && this.#waiting < this.#maxWaiting && !state.waiting?.has(row.seq)) {
      state.waiting ??= new Map();
      const previousHash = Buffer.from(bytes.buffer, bytes.byteOffset + row.previousHashAt, 64).toString('latin1');
      state.waiting.set(row.seq, { previousHash, hash });
      this.#waiting += 1;
    } else {
      this.#suspect(state);
    }
  }

  #suspect(state: ActorState): void {
    state.suspect = true;
    this.#waiting -= state.waiting?.size ?? 0;
    state.waiting = undefined;
  }

  finish(): UnorderedCheckResult {
    const tails = new Map<string, { seq: number; hash: string }>();
    const unmatchedClaims: Claims = new Map();
    const unmatchedAnchored: Claims = new Map();
    const suspects: string[] = [];
    let events = 0;
    let uncoveredEvents = 0;
    for (const [actor, state] of this.#actors) {
      if (state.suspect || state.waiting) {
        suspects.push(actor);
        continue;
      }
      const tail = state.next - 1;
      tails.set(actor, { seq: tail, hash: state.last });
      events += tail;
      uncoveredEvents += Math.max(0, tail - (this.#input.finalClaims.get(actor) ?? 0));
      if (state.claims) unmatchedClaims.set(actor, beyond(state.claims, tail));
      if (state.anchored) unmatchedAnchored.set(actor, beyond(state.anchored, tail));
    }
    return { tails, events, uncoveredEvents, unmatchedClaims, unmatchedAnchored, suspects };
  }
}

function beyond(claims: Map<number, Claim>, tail: number): Map<number, Claim> {
  return new Map([...claims].filter(([seq]) => seq > tail));
}

function hexEquals(bytes: Uint8Array, at: number, hex: string): boolean {
  for (let k = 0; k < 64; k += 1) if (bytes[at + k] !== hex.charCodeAt(k)) return false;
  return true;
}

/**
 * One result as the ordered walk alone would have given: the fast passes' verified actors (each
 * in exactly one of them) joined with `ordered`, the walk over all their suspects, which holds
 * every finding.
 */
export function joinWithOrderedWalk(fast: readonly UnorderedCheckResult[], ordered: ChainCheckResult): ChainCheckResult {
  const tails = new Map(ordered.tails);
  const unmatchedClaims: Claims = new Map(ordered.unmatchedClaims);
  const unmatchedAnchored: Claims = new Map(ordered.unmatchedAnchored);
  let { actors, events, uncoveredEvents } = ordered;
  for (const result of fast) {
    actors += result.tails.size;
    events += result.events;
    uncoveredEvents += result.uncoveredEvents;
    for (const [actor, tail] of result.tails) tails.set(actor, tail);
    for (const [actor, claims] of result.unmatchedClaims) unmatchedClaims.set(actor, claims);
    for (const [actor, claims] of result.unmatchedAnchored) unmatchedAnchored.set(actor, claims);
  }
  return { ...ordered, actors, events, uncoveredEvents, tails, unmatchedClaims, unmatchedAnchored };
}
