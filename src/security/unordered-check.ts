/**
 * The verifier's fast pass: checks chain rows in whatever order the store hands them out (its
 * storage order, read without an index), which costs the database a fraction of reading them in
 * sequence order. Every row's own checks (hash recomputed from its stored previous hash and
 * bytes, record against columns, checkpoint claims on it) are made as it arrives; the links are
 * followed per actor in runs of consecutive rows, which are joined at the end, also across
 * passes over different parts of the table (one per thread).
 *
 * The pass reports no findings. An actor whose rows all check out and link from 1 without a gap
 * is verified; anything else about an actor (a failed check, a gap, a duplicate, too many runs
 * kept apart) makes it a suspect, and the caller walks the suspects again in sequence order with
 * `checkChains`, which reports exactly what is wrong. So a tampered store gets the same report
 * as the ordered walk alone would give, and an intact one is read once, fast.
 */
import { randomBytes } from 'node:crypto';
import { chainHashOfBytes, GENESIS_HASH } from './chain.ts';
import { recordBytesAgree } from './record-check.ts';
import type { ChainCheckInput, ChainCheckResult, Claim, Claims } from './verify.ts';

/** One row as its raw fields: offsets into the bytes the store sent. */
export interface RowBytes {
  bytes: Uint8Array;
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

/** A run of one actor's rows, each linked to the one before: sequences `first` to `next - 1`. */
export interface Run {
  first: number;
  /** The previous hash the first row names (64 hex characters). */
  firstPrevious: string;
  next: number;
  /** The hash of the last row. */
  last: string;
}

interface ActorState {
  readonly claims: Map<number, Claim> | undefined;
  readonly anchored: Map<number, Claim> | undefined;
  suspect: boolean;
  /** The run the next row most likely extends (fields inline: the common path allocates nothing). */
  first: number;
  firstPrevious: string;
  next: number;
  last: string;
  /** Earlier runs not (yet) joined to the open one. */
  closed: Run[] | undefined;
}

/** What one pass over some of the rows saw: every actor's runs, and the actors with anything unexpected. */
export interface PassResult {
  readonly runs: Map<string, Run[]>;
  readonly suspects: string[];
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

/** Runs kept apart over all actors of a pass; past it, an actor that needs one more becomes a suspect. */
export const MAX_RUNS = 200_000;

/**
 * Checks rows in any order. Rows mostly arrive in sequence order per actor (the table is written
 * in append order), so each actor keeps one open run that the next row extends; a row that does
 * not extend it closes it and opens another, and a run that ends where the previous closed one
 * starts (rows stored backwards) is joined to it at once. Runs of several passes over different
 * parts of the table are joined by `joinRuns`.
 */
export class UnorderedChainCheck {
  readonly #input: ChainCheckInput;
  readonly #actors = new Map<string, ActorState>();
  /** The same states by the actor's bytes: decoding every row's actor to look it up cost more than hashing the row. */
  readonly #known = new ByteKeyedCache<ActorState>();
  readonly #maxRuns: number;
  #runs = 0;

  constructor(input: ChainCheckInput, maxRuns = MAX_RUNS) {
    this.#input = input;
    this.#maxRuns = maxRuns;
  }

  row(row: RowBytes): void {
    const { bytes } = row;
    const state = this.#known.get(bytes, row.actorStart, row.actorEnd) ?? this.#stateOf(bytes, row.actorStart, row.actorEnd);
    if (state.suspect) return;
    const hash = row.previousHashAt < 0 || row.hashAt < 0 ? undefined : chainHashOfBytes(bytes, row.previousHashAt, bytes, row.recordStart, row.recordEnd);
    const claim = state.claims?.get(row.seq);
    const anchoredClaim = state.anchored?.get(row.seq);
    if (hash === undefined || latin1(bytes, row.hashAt) !== hash
      || !recordBytesAgree(bytes, row.recordStart, row.recordEnd, row.actorStart, row.actorEnd, row.idStart, row.idEnd, row.seq, row.eventTimeMs, row.receivedAtMs)
      || (claim !== undefined && claim.hash !== hash) || (anchoredClaim !== undefined && anchoredClaim.hash !== hash)) {
      this.#suspect(state);
      return;
    }
    if (row.seq === state.next) {
      if (latin1(bytes, row.previousHashAt) !== state.last) {
        this.#suspect(state);
        return;
      }
      state.next += 1;
      state.last = hash;
      return;
    }
    if (row.seq < 1 || !Number.isSafeInteger(row.seq) || !this.#close(state)) {
      this.#suspect(state);
      return;
    }
    state.first = row.seq;
    state.firstPrevious = latin1(bytes, row.previousHashAt);
    state.next = row.seq + 1;
    state.last = hash;
  }

  /** The state of the actor spelled by `bytes[start, end)`, first seen under these bytes. */
  #stateOf(bytes: Uint8Array, start: number, end: number): ActorState {
    const actor = utf8Slice.call(bytes, start, end);
    let state = this.#actors.get(actor);
    if (!state) {
      state = {
        claims: this.#input.claims.get(actor), anchored: this.#input.anchored.get(actor),
        suspect: false, first: 0, firstPrevious: '', next: 0, last: '', closed: undefined,
      };
      this.#actors.set(actor, state);
    }
    this.#known.add(bytes, start, end, state);
    return state;
  }

  /** Sets the open run aside (joined to the last closed one where it ends where that starts); false on a broken link or past the limit. */
  #close(state: ActorState): boolean {
    if (state.next === 0) return true;
    const top = state.closed?.at(-1);
    if (top && top.first === state.next) {
      if (top.firstPrevious !== state.last) return false;
      top.first = state.first;
      top.firstPrevious = state.firstPrevious;
      return true;
    }
    if (this.#runs >= this.#maxRuns) return false;
    (state.closed ??= []).push({ first: state.first, firstPrevious: state.firstPrevious, next: state.next, last: state.last });
    this.#runs += 1;
    return true;
  }

  #suspect(state: ActorState): void {
    state.suspect = true;
    this.#runs -= state.closed?.length ?? 0;
    state.closed = undefined;
  }

  /** Every actor's runs, joined where they meet; an actor whose runs overlap or fail to link is a suspect. */
  finish(): PassResult {
    const runs = new Map<string, Run[]>();
    const suspects: string[] = [];
    for (const [actor, state] of this.#actors) {
      const open: Run = { first: state.first, firstPrevious: state.firstPrevious, next: state.next, last: state.last };
      const joined = state.suspect ? undefined : state.closed ? joinSorted([...state.closed, open]) : [open];
      if (joined) runs.set(actor, joined);
      else suspects.push(actor);
    }
    return { runs, suspects };
  }
}

/** `runs` in sequence order with the ones that meet joined; undefined when two overlap or meet without linking. */
function joinSorted(runs: Run[]): Run[] | undefined {
  runs.sort((a, b) => a.first - b.first);
  const joined: Run[] = [];
  let current = { ...runs[0]! };
  for (let k = 1; k < runs.length; k += 1) {
    const run = runs[k]!;
    if (run.first < current.next) return undefined;
    if (run.first === current.next) {
      if (run.firstPrevious !== current.last) return undefined;
      current.next = run.next;
      current.last = run.last;
    } else {
      joined.push(current);
      current = { ...run };
    }
  }
  joined.push(current);
  return joined;
}

/**
 * The passes over the parts of a table joined into one result: an actor is verified when no
 * pass suspects it and its runs join into one from sequence 1 on the genesis hash.
 */
export function joinRuns(passes: readonly PassResult[], input: ChainCheckInput): UnorderedCheckResult {
  const suspects = new Set(passes.flatMap((pass) => pass.suspects));
  const byActor = new Map<string, Run[]>();
  for (const pass of passes) {
    for (const [actor, runs] of pass.runs) {
      if (suspects.has(actor)) continue;
      const known = byActor.get(actor);
      if (known) known.push(...runs);
      else byActor.set(actor, passes.length === 1 ? runs : [...runs]);
    }
  }
  const tails = new Map<string, { seq: number; hash: string }>();
  const unmatchedClaims: Claims = new Map();
  const unmatchedAnchored: Claims = new Map();
  let events = 0;
  let uncoveredEvents = 0;
  for (const [actor, runs] of byActor) {
    const joined = runs.length === 1 ? runs : joinSorted(runs);
    const chain = joined?.length === 1 ? joined[0]! : undefined;
    if (!chain || chain.first !== 1 || chain.firstPrevious !== GENESIS_HASH) {
      suspects.add(actor);
      continue;
    }
    const tail = chain.next - 1;
    tails.set(actor, { seq: tail, hash: chain.last });
    events += tail;
    uncoveredEvents += Math.max(0, tail - (input.finalClaims.get(actor) ?? 0));
    const claims = input.claims.get(actor);
    const anchored = input.anchored.get(actor);
    if (claims) unmatchedClaims.set(actor, beyond(claims, tail));
    if (anchored) unmatchedAnchored.set(actor, beyond(anchored, tail));
  }
  return { tails, events, uncoveredEvents, unmatchedClaims, unmatchedAnchored, suspects: [...suspects] };
}

function beyond(claims: Map<number, Claim>, tail: number): Map<number, Claim> {
  return new Map([...claims].filter(([seq]) => seq > tail));
}

const latin1Slice = Buffer.prototype.latin1Slice;
const utf8Slice = Buffer.prototype.utf8Slice;

/** Slots a lookup probes before giving up: colliding keys (even chosen ones) cost at most this many comparisons, then a decode. */
const MAX_PROBES = 8;

/**
 * A cache of values by byte strings, in front of a map by decoded string: open addressing with
 * a seeded hash and bounded probing, so a miss (or a flood of colliding keys) only sends the
 * caller to the slower map. Keys are kept as latin1 strings of their bytes (one byte a character).
 */
class ByteKeyedCache<T> {
  readonly #seed = randomBytes(4).readInt32LE(0);
  #mask = 1023;
  #hashes = new Int32Array(1024);
  #keys: Array<string | undefined> = new Array(1024).fill(undefined);
  #values: Array<T | undefined> = new Array(1024).fill(undefined);
  #size = 0;

  #hash(bytes: Uint8Array, start: number, end: number): number {
    let h = this.#seed;
    for (let k = start; k < end; k += 1) h = Math.imul(h ^ bytes[k]!, 0x01000193);
    return h ^ (h >>> 15);
  }

  get(bytes: Uint8Array, start: number, end: number): T | undefined {
    const h = this.#hash(bytes, start, end);
    const length = end - start;
    for (let probe = 0; probe < MAX_PROBES; probe += 1) {
      const slot = (h + probe) & this.#mask;
      const key = this.#keys[slot];
      if (key === undefined) return undefined;
      if (this.#hashes[slot] !== h || key.length !== length) continue;
      let k = 0;
      while (k < length && key.charCodeAt(k) === bytes[start + k]) k += 1;
      if (k === length) return this.#values[slot];
    }
    return undefined;
  }

  /** Remembers `value` for the bytes (which `get` has just missed), where a slot is free within reach. */
  add(bytes: Uint8Array, start: number, end: number, value: T): void {
    if (2 * (this.#size + 1) > this.#keys.length) this.#grow();
    this.#put(this.#hash(bytes, start, end), latin1Slice.call(bytes, start, end), value);
  }

  #put(h: number, key: string, value: T): void {
    for (let probe = 0; probe < MAX_PROBES; probe += 1) {
      const slot = (h + probe) & this.#mask;
      if (this.#keys[slot] !== undefined) continue;
      this.#hashes[slot] = h;
      this.#keys[slot] = key;
      this.#values[slot] = value;
      this.#size += 1;
      return;
    }
  }

  #grow(): void {
    const hashes = this.#hashes;
    const keys = this.#keys;
    const values = this.#values;
    const capacity = 2 * keys.length;
    this.#mask = capacity - 1;
    this.#hashes = new Int32Array(capacity);
    this.#keys = new Array(capacity).fill(undefined);
    this.#values = new Array(capacity).fill(undefined);
    this.#size = 0;
    for (let slot = 0; slot < keys.length; slot += 1) if (keys[slot] !== undefined) this.#put(hashes[slot]!, keys[slot]!, values[slot]!);
  }
}

/** The 64 hex bytes at `at` as a string: compared whole, faster than byte by byte against one. */
function latin1(bytes: Uint8Array, at: number): string {
  return latin1Slice.call(bytes, at, at + 64);
}


/**
 * One result as the ordered walk alone would have given: the fast pass's verified actors joined
 * with `ordered`, the walk over all its suspects, which holds every finding.
 */
export function joinWithOrderedWalk(fast: UnorderedCheckResult, ordered: ChainCheckResult): ChainCheckResult {
  const tails = new Map(ordered.tails);
  const unmatchedClaims: Claims = new Map(ordered.unmatchedClaims);
  const unmatchedAnchored: Claims = new Map(ordered.unmatchedAnchored);
  for (const [actor, tail] of fast.tails) tails.set(actor, tail);
  for (const [actor, claims] of fast.unmatchedClaims) unmatchedClaims.set(actor, claims);
  for (const [actor, claims] of fast.unmatchedAnchored) unmatchedAnchored.set(actor, claims);
  return {
    ...ordered,
    actors: ordered.actors + fast.tails.size,
    events: ordered.events + fast.events,
    uncoveredEvents: ordered.uncoveredEvents + fast.uncoveredEvents,
    tails, unmatchedClaims, unmatchedAnchored,
  };
}
