/**
 * The offline verifier: recomputes every chain from the stored bytes and checks links,
 * sequences, the head table, and the signed checkpoints (signature, their own chain, Merkle
 * root, and every head they attest against the rows). Read-only; it trusts nothing stored
 * except what the public key given to it signed.
 */
import type { KeyObject } from 'node:crypto';
import { chainHashUnchecked, GENESIS_HASH, isHashHex } from './chain.ts';
import { recordAgrees } from './record-check.ts';
import {
  checkpointHash, CheckpointFormatError, headsRoot, parseCheckpoint, sortHeads, verifyCheckpointSignature,
  type ChainHead, type CheckpointBody,
} from './checkpoint.ts';

/** One stored chain row as the verifier reads it. */
export interface VerifyRow {
  readonly actor: string;
  readonly seq: number;
  readonly eventId: string;
  readonly prevHash: string;
  readonly hash: string;
  /** The exact bytes that were hashed (as UTF-8 text). */
  readonly canonical: string;
  /** The search columns, epoch milliseconds; they must agree with the hashed record. */
  readonly eventTimeMs: number;
  readonly receivedAtMs: number;
}

export interface StoredCheckpoint {
  readonly number: number;
  readonly text: string;
  readonly hash: string;
  readonly signature: string;
  readonly keyId: string;
  /** JSON `[[actor, seq, hash], ...]` sorted as in the Merkle tree; null = unchanged since the previous checkpoint. */
  readonly heads: string | null;
}

/** Where the verifier reads from (the Postgres store implements it read-only). */
export interface VerifySource {
  /** Rows ordered by actor, then sequence; all of them, or one actor's. */
  rows(actor?: string): AsyncIterable<readonly VerifyRow[]>;
  heads(actor?: string): Promise<ChainHead[]>;
  /** Ordered by number. */
  checkpoints(): Promise<StoredCheckpoint[]>;
  /**
   * Checks every chain with the result `checkChains` gives over `rows()`, faster (the PostgreSQL
   * store reads in storage order, on several threads). Optional: the embedded store leaves it out.
   */
  checkAllChains?(input: ChainCheckInput): Promise<ChainCheckResult>;
}

/** A head a checkpoint attests, keyed by actor then sequence. */
export interface Claim {
  readonly hash: string;
  readonly checkpoint: number;
  /** For anchored claims: where the anchor is. */
  readonly where?: string;
}

export type Claims = Map<string, Map<number, Claim>>;

/** What the chain walk needs from the checkpoints (plain data: it crosses to worker threads). */
export interface ChainCheckInput {
  readonly claims: Claims;
  readonly anchored: Claims;
  /** Per actor, the sequence the last checkpoint covers. */
  readonly finalClaims: Map<string, number>;
  readonly maxFindings: number;
}

export interface ChainCheckResult {
  readonly actors: number;
  readonly events: number;
  readonly uncoveredEvents: number;
  readonly tails: Map<string, { seq: number; hash: string }>;
  readonly findings: Finding[];
  readonly findingsTotal: number;
  /** Of the input's claims for the actors whose rows were read, those no row matched. */
  readonly unmatchedClaims: Claims;
  readonly unmatchedAnchored: Claims;
}

export type FindingKind =
  | 'hash-mismatch' | 'link-broken' | 'gap' | 'record-mismatch' | 'malformed-record' | 'head-mismatch'
  | 'truncated' | 'checkpoint-mismatch' | 'checkpoint-regression' | 'checkpoint-malformed'
  | 'checkpoint-signature' | 'checkpoint-link' | 'checkpoint-missing' | 'checkpoint-root' | 'no-checkpoint'
  | 'no-public-key'
  // Against checkpoints anchored outside the database (S3 Object Lock), `auditpipe verify --s3`:
  | 'anchor-malformed' | 'anchor-overwritten' | 'anchor-signature' | 'anchor-missing-in-store' | 'anchor-mismatch'
  | 'anchor-truncated';

export interface Finding {
  readonly kind: FindingKind;
  /** The chain the finding is in; null for findings about checkpoints as a whole. */
  readonly actor: string | null;
  readonly sequence: number | null;
  readonly checkpoint?: number;
  readonly detail: string;
}

export interface VerifyOptions {
  /** Only this actor's chain (checkpoints are still all checked, their heads only for this actor). */
  readonly actor?: string;
  /** The trusted checkpoint key; without it signatures cannot be checked, which is a finding. */
  readonly publicKey?: { readonly publicKey: KeyObject; readonly keyId: string };
  /** Stop listing findings after this many (they are still counted). */
  readonly maxFindings?: number;
  /** Checkpoints anchored outside the database, already compared with the store's checkpoints by the caller. */
  readonly anchors?: readonly AnchorEvidence[];
}

/**
 * What an external anchor (S3 Object Lock) contributes: the findings of reading and comparing
 * the anchored checkpoints, and the heads the validly signed ones attest (checked against their
 * signed roots), which every row must still match.
 */
export interface AnchorEvidence {
  /** For the report, e.g. `s3://bucket/prefix/pipeline/checkpoints/`. */
  readonly where: string;
  readonly checkpoints: number;
  readonly findings: readonly Finding[];
  readonly claims: ReadonlyArray<{ readonly checkpoint: number; readonly heads: readonly ChainHead[] }>;
}

export interface VerifyReport {
  readonly ok: boolean;
  readonly actors: number;
  readonly events: number;
  readonly checkpoints: number;
  readonly lastCheckpoint?: { readonly number: number; readonly time: string; readonly events: number; readonly hash: string };
  /** Events written after the last checkpoint: their chains verify, but no signature covers them yet. */
  readonly uncoveredEvents: number;
  readonly publicKeyId?: string;
  /** Present when anchored checkpoints were compared: where, and how many. */
  readonly anchors?: ReadonlyArray<{ readonly where: string; readonly checkpoints: number }>;
  readonly findingsTotal: number;
  readonly findings: readonly Finding[];
  readonly elapsedMs: number;
}


export async function verifyStore(source: VerifySource, options: VerifyOptions = {}): Promise<VerifyReport> {
  const started = performance.now();
  const maxFindings = options.maxFindings ?? 10_000;
  const findings: Finding[] = [];
  let findingsTotal = 0;
  const add = (finding: Finding) => {
    findingsTotal += 1;
    if (findings.length < maxFindings) findings.push(finding);
  };

  // 1. Checkpoints: their own chain, signatures, roots; collect what they attest per actor.
  const checkpoints = await source.checkpoints();
  const claims = new Map<string, Map<number, Claim>>();
  const lastClaimed = new Map<string, number>();
  let last: { body: CheckpointBody; hash: string } | undefined;
  let previousHeads: ChainHead[] = [];
  if (!options.publicKey) {
    add({ kind: 'no-public-key', actor: null, sequence: null, detail: 'no public key given: checkpoint signatures cannot be checked (use --public-key)' });
  }
  for (const stored of checkpoints) {
    const at = { actor: null, sequence: null, checkpoint: stored.number } as const;
    let body: CheckpointBody;
    try {
      body = parseCheckpoint(stored.text);
    } catch (error) {
      add({ ...at, kind: 'checkpoint-malformed', detail: error instanceof CheckpointFormatError ? error.message : String(error) });
      continue;
    }
    const hash = checkpointHash(stored.text);
    if (body.number !== stored.number || hash !== stored.hash) {
      add({ ...at, kind: 'checkpoint-malformed', detail: `stored number/hash (${stored.number}, ${stored.hash}) differ from the signed text (${body.number}, ${hash})` });
    }
    if (options.publicKey) {
      if (stored.keyId !== options.publicKey.keyId) {
        add({ ...at, kind: 'checkpoint-signature', detail: `signed by key ${stored.keyId}, not by the trusted key ${options.publicKey.keyId}` });
      } else if (!verifyCheckpointSignature(stored.text, stored.signature, options.publicKey.publicKey)) {
        add({ ...at, kind: 'checkpoint-signature', detail: 'the Ed25519 signature does not verify: the checkpoint was forged or altered' });
      }
    }
    const expectedNumber = last ? last.body.number + 1 : 1;
    if (body.number !== expectedNumber) {
      add({ ...at, kind: 'checkpoint-missing', detail: `expected checkpoint ${expectedNumber}, found ${body.number}: checkpoints were deleted` });
    }
    const expectedPrevious = last && body.number === last.body.number + 1 ? last.hash : body.number === 1 ? GENESIS_HASH : undefined;
    if (expectedPrevious !== undefined && body.previous !== expectedPrevious) {
      add({ ...at, kind: 'checkpoint-link', detail: `names previous ${body.previous}, but checkpoint ${body.number - 1} hashes to ${expectedPrevious}` });
    }

    let heads: ChainHead[];
    try {
      heads = stored.heads === null ? previousHeads : parseHeads(stored.heads);
    } catch (error) {
      add({ ...at, kind: 'checkpoint-malformed', detail: `stored heads: ${(error as Error).message}` });
      heads = [];
    }
    const root = headsRoot(heads);
    const events = heads.reduce((n, head) => n + head.seq, 0);
    if (root !== body.root || heads.length !== body.actors || events !== body.events) {
      add({ ...at, kind: 'checkpoint-root', detail: `the stored heads (root ${root}, ${heads.length} actors, ${events} events) do not match the signed root ${body.root} (${body.actors} actors, ${body.events} events)` });
    } else {
      for (const head of heads) {
        if (options.actor !== undefined && head.actor !== options.actor) continue;
        const before = lastClaimed.get(head.actor) ?? 0;
        if (head.seq < before) {
          add({ kind: 'checkpoint-regression', actor: head.actor, sequence: head.seq, checkpoint: body.number, detail: `checkpoint ${body.number} attests sequence ${head.seq}, an earlier checkpoint attested ${before}` });
        }
        lastClaimed.set(head.actor, Math.max(before, head.seq));
        let byActor = claims.get(head.actor);
        if (!byActor) claims.set(head.actor, (byActor = new Map()));
        const existing = byActor.get(head.seq);
        if (existing && existing.hash !== head.hash) {
          add({ kind: 'checkpoint-mismatch', actor: head.actor, sequence: head.seq, checkpoint: body.number, detail: `checkpoints ${existing.checkpoint} and ${body.number} attest different hashes for this sequence` });
        } else if (!existing) {
          byActor.set(head.seq, { hash: head.hash, checkpoint: body.number });
        }
      }
    }
    previousHeads = heads;
    last = { body, hash };
  }
  const finalClaims = new Map<string, number>();
  if (last) for (const head of previousHeads) finalClaims.set(head.actor, head.seq);

  // Heads attested by anchored checkpoints: the database cannot have rewritten these.
  const anchored = new Map<string, Map<number, Claim & { readonly where: string }>>();
  for (const evidence of options.anchors ?? []) {
    for (const finding of evidence.findings) add(finding);
  }
  for (const { checkpoint, heads, where } of (options.anchors ?? []).flatMap((e) => e.claims.map((c) => ({ ...c, where: e.where })))) {
    for (const head of heads) {
      if (options.actor !== undefined && head.actor !== options.actor) continue;
      let byActor = anchored.get(head.actor);
      if (!byActor) anchored.set(head.actor, (byActor = new Map()));
      const existing = byActor.get(head.seq);
      if (existing && existing.hash !== head.hash) {
        add({ kind: 'anchor-mismatch', actor: head.actor, sequence: head.seq, checkpoint, detail: `anchored checkpoints ${existing.checkpoint} and ${checkpoint} attest different hashes for this sequence` });
      } else if (!existing) {
        byActor.set(head.seq, { hash: head.hash, checkpoint, where });
      }
    }
  }

  // 2. Chains: every row recomputed from its stored bytes, in sequence order.
  const input: ChainCheckInput = { claims, anchored, finalClaims, maxFindings };
  const chains = options.actor === undefined && source.checkAllChains
    ? await source.checkAllChains(input)
    : await checkChains(source.rows(options.actor), input);
  const { actors, events, uncoveredEvents, tails } = chains;
  findingsTotal += chains.findingsTotal;
  for (const finding of chains.findings) if (findings.length < maxFindings) findings.push(finding);
  // Claims of actors no row was read for are all unmatched; the others as the walk left them.
  for (const actor of claims.keys()) if (tails.has(actor)) claims.set(actor, chains.unmatchedClaims.get(actor) ?? new Map());
  for (const actor of anchored.keys()) if (tails.has(actor)) anchored.set(actor, chains.unmatchedAnchored.get(actor) ?? new Map());

  // 3. What checkpoints attest but the rows no longer hold: truncation (or renumbering).
  for (const [claimActor, bySeq] of claims) {
    for (const [seq, claim] of bySeq) {
      const tail = tails.get(claimActor)?.seq ?? 0;
      add({ kind: 'truncated', actor: claimActor, sequence: seq, checkpoint: claim.checkpoint, detail: `checkpoint ${claim.checkpoint} attests sequence ${seq}, but the stored chain ${tail === 0 ? 'is empty' : `ends at ${tail}`}` });
    }
  }

  for (const [claimActor, bySeq] of anchored) {
    for (const [seq, claim] of bySeq) {
      const tail = tails.get(claimActor)?.seq ?? 0;
      add({ kind: 'anchor-truncated', actor: claimActor, sequence: seq, checkpoint: claim.checkpoint, detail: `checkpoint ${claim.checkpoint} anchored in ${claim.where} attests sequence ${seq}, but the stored chain ${tail === 0 ? 'is empty' : `ends at ${tail}`}` });
    }
  }

  // 4. The head table the writers link from must equal the chain tails.
  const heads = await source.heads(options.actor);
  const headActors = new Set<string>();
  for (const head of heads) {
    headActors.add(head.actor);
    const tail = tails.get(head.actor) ?? { seq: 0, hash: GENESIS_HASH };
    if (head.seq !== tail.seq || head.hash !== tail.hash) {
      add({ kind: 'head-mismatch', actor: head.actor, sequence: head.seq, detail: `head row says sequence ${head.seq} (${short(head.hash)}), the chain ends at ${tail.seq} (${short(tail.hash)})` });
    }
  }
  for (const [tailActor, tail] of tails) {
    if (!headActors.has(tailActor)) add({ kind: 'head-mismatch', actor: tailActor, sequence: tail.seq, detail: 'the chain has rows but no head row' });
  }
  if (!last && events > 0) {
    add({ kind: 'no-checkpoint', actor: null, sequence: null, detail: `${events} events but no signed checkpoint: truncation cannot be ruled out` });
  }

  const report: VerifyReport = {
    ok: findingsTotal === 0,
    actors,
    events,
    checkpoints: checkpoints.length,
    ...(last ? { lastCheckpoint: { number: last.body.number, time: last.body.time, events: last.body.events, hash: last.hash } } : {}),
    uncoveredEvents,
    ...(options.publicKey ? { publicKeyId: options.publicKey.keyId } : {}),
    ...(options.anchors ? { anchors: options.anchors.map((e) => ({ where: e.where, checkpoints: e.checkpoints })) } : {}),
    findingsTotal,
    findings,
    elapsedMs: Math.round(performance.now() - started),
  };
  return report;
}

/**
 * Walks rows ordered by actor then sequence: recomputes every hash, checks sequences, links, each
 * record against its columns, and every claim of a checkpoint (or anchor) on the rows it names.
 */
export async function checkChains(pages: AsyncIterable<readonly VerifyRow[]>, input: ChainCheckInput): Promise<ChainCheckResult> {
  const { claims, anchored, finalClaims } = input;
  const findings: Finding[] = [];
  let findingsTotal = 0;
  const add = (finding: Finding) => {
    findingsTotal += 1;
    if (findings.length < input.maxFindings) findings.push(finding);
  };
  let actors = 0;
  let events = 0;
  let uncoveredEvents = 0;
  const tails = new Map<string, { seq: number; hash: string }>();
  const unmatchedClaims: Claims = new Map();
  const unmatchedAnchored: Claims = new Map();
  let actor: string | undefined;
  let actorClaims: Map<number, Claim> | undefined;
  let actorAnchored: Map<number, Claim> | undefined;
  let covered = 0;
  let expectedSeq = 1;
  let previousHash = GENESIS_HASH;
  const finishActor = () => {
    if (actor === undefined) return;
    tails.set(actor, { seq: expectedSeq - 1, hash: previousHash });
    if (actorClaims) unmatchedClaims.set(actor, actorClaims);
    if (actorAnchored) unmatchedAnchored.set(actor, actorAnchored);
  };
  for await (const rows of pages) {
    for (const row of rows) {
      if (row.actor !== actor) {
        finishActor();
        actor = row.actor;
        actors += 1;
        expectedSeq = 1;
        previousHash = GENESIS_HASH;
        // Copies: what the walk consumes must not change the caller's maps.
        const own = claims.get(actor);
        actorClaims = own ? new Map(own) : undefined;
        const ownAnchored = anchored.get(actor);
        actorAnchored = ownAnchored ? new Map(ownAnchored) : undefined;
        covered = finalClaims.get(actor) ?? 0;
      }
      events += 1;
      const at = { actor: row.actor, sequence: row.seq };
      if (row.seq > expectedSeq) {
        add({ ...at, sequence: expectedSeq, kind: 'gap', detail: `sequence${row.seq - expectedSeq > 1 ? `s ${expectedSeq}..${row.seq - 1} are` : ` ${expectedSeq} is`} missing (next stored row is ${row.seq})` });
      }
      if (row.prevHash !== previousHash) {
        add({ ...at, kind: 'link-broken', detail: `previous hash ${short(row.prevHash)} is not the hash of the row before it (${short(previousHash)})` });
      }
      // The previous row's hash was recomputed, so it is well-formed; anything else is checked first.
      const recomputed = row.prevHash === previousHash || isHashHex(row.prevHash) ? chainHashUnchecked(row.prevHash, row.canonical) : '';
      if (recomputed !== row.hash) {
        add({ ...at, kind: 'hash-mismatch', detail: `stored hash ${short(row.hash)} is not SHA-256 of the stored record (${short(recomputed)}): the record or its hash was modified` });
      }
      if (!recordAgrees(row)) checkRecord(row, add);
      const claim = actorClaims?.get(row.seq);
      if (claim) {
        if (claim.hash !== row.hash) {
          add({ ...at, kind: 'checkpoint-mismatch', checkpoint: claim.checkpoint, detail: `checkpoint ${claim.checkpoint} attests hash ${short(claim.hash)}, the row has ${short(row.hash)}: history was rewritten` });
        }
        actorClaims!.delete(row.seq);
      }
      const anchoredClaim = actorAnchored?.get(row.seq);
      if (anchoredClaim) {
        if (anchoredClaim.hash !== row.hash) {
          add({ ...at, kind: 'anchor-mismatch', checkpoint: anchoredClaim.checkpoint, detail: `checkpoint ${anchoredClaim.checkpoint} anchored in ${anchoredClaim.where} attests hash ${short(anchoredClaim.hash)}, the row has ${short(row.hash)}: this chain was rewritten after it was anchored` });
        }
        actorAnchored!.delete(row.seq);
      }
      if (row.seq > covered) uncoveredEvents += 1;
      expectedSeq = row.seq + 1;
      previousHash = row.hash;
    }
  }
  finishActor();
  return { actors, events, uncoveredEvents, tails, findings, findingsTotal, unmatchedClaims, unmatchedAnchored };
}

function short(hash: string): string {
  return hash.length > 16 ? `${hash.slice(0, 16)}…` : JSON.stringify(hash);
}

/** The row's columns must say what its hashed record says. */
function checkRecord(row: VerifyRow, add: (finding: Finding) => void): void {
  const at = { actor: row.actor, sequence: row.seq };
  let record: { actor?: unknown; seq?: unknown; id?: unknown; receivedAt?: unknown; event?: { id?: unknown; time?: unknown } };
  try {
    record = JSON.parse(row.canonical);
  } catch {
    add({ ...at, kind: 'malformed-record', detail: 'the stored record is not JSON' });
    return;
  }
  if (record === null || typeof record !== 'object' || record.event === null || typeof record.event !== 'object') {
    add({ ...at, kind: 'malformed-record', detail: 'the stored record is not a chain record object' });
    return;
  }
  const wrong: string[] = [];
  if (record.actor !== row.actor) wrong.push(`actor ${JSON.stringify(record.actor)}`);
  if (record.seq !== row.seq) wrong.push(`sequence ${JSON.stringify(record.seq)}`);
  if (record.id !== row.eventId || record.event.id !== row.eventId) wrong.push(`id ${JSON.stringify(record.id)}`);
  if (typeof record.receivedAt !== 'string' || Date.parse(record.receivedAt) !== row.receivedAtMs) wrong.push(`receivedAt ${JSON.stringify(record.receivedAt)}`);
  if (typeof record.event.time !== 'string' || Date.parse(record.event.time) !== row.eventTimeMs) wrong.push(`time ${JSON.stringify(record.event.time)}`);
  if (wrong.length > 0) {
    add({ ...at, kind: 'record-mismatch', detail: `the row's columns differ from its hashed record, which says ${wrong.join(', ')}: rows were moved, reordered, inserted or edited` });
  }
}

export function parseHeads(text: string): ChainHead[] {
  return parseHeadsValue(JSON.parse(text));
}

/** `[[actor, seq, hash], ...]` (already parsed JSON), sorted as in the Merkle tree, as heads. */
export function parseHeadsValue(value: unknown): ChainHead[] {
  if (!Array.isArray(value)) throw new Error('heads must be a JSON array');
  const heads = value.map((item: unknown, i): ChainHead => {
    if (!Array.isArray(item) || item.length !== 3 || typeof item[0] !== 'string' || !Number.isSafeInteger(item[1]) || item[1] < 1 || !isHashHex(item[2])) {
      throw new Error(`heads[${i}] must be [actor, sequence, hash]`);
    }
    return { actor: item[0], seq: item[1], hash: item[2] };
  });
  const sorted = sortHeads(heads);
  if (sorted.some((head, i) => head !== heads[i] || (i > 0 && sorted[i - 1]!.actor === head.actor))) {
    throw new Error('heads must be sorted by actor (UTF-8 bytes) without duplicates');
  }
  return heads;
}

export function formatHeads(sortedHeads: readonly ChainHead[]): string {
  return JSON.stringify(sortedHeads.map((head) => [head.actor, head.seq, head.hash]));
}
