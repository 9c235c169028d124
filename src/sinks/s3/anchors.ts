/**
 * Reading back the checkpoints the S3 sink anchored, and comparing them with the checkpoints a
 * chain store holds, for `auditpipe verify --s3`. Read-only: list, get, no writes.
 */
import { GetObjectCommand, ListObjectVersionsCommand, type S3Client } from '@aws-sdk/client-s3';
import type { KeyObject } from 'node:crypto';
import {
  checkpointHash, CheckpointFormatError, headsRoot, parseCheckpoint, verifyCheckpointSignature, type ChainHead,
} from '../../public/security.ts';
import { parseHeadsValue, type AnchorEvidence } from '../../public/security.ts';
import { checkpointFolder, META_CONTENT_SHA256, sha256Hex } from './object.ts';

/**
 * Largest checkpoint object read: a signed checkpoint is a few hundred bytes, plus up to
 * MAX_ANCHORED_HEADS heads of at most ~100 bytes each when its heads changed.
 */
const MAX_CHECKPOINT_OBJECT_BYTES = 32 * 1024 * 1024;

export interface AnchoredCheckpoint {
  readonly key: string;
  readonly versionId: string;
  readonly number: number;
  readonly time: string;
  readonly text: string;
  readonly hash: string;
  readonly signature: string;
  readonly keyId: string;
  /** The heads the checkpoint commits to (checked against its signed root), when the object carries them. */
  readonly heads?: readonly ChainHead[];
}

export type AnchorFindingKind =
  /** An object under checkpoints/ that is not a well-formed signed checkpoint, or whose stored hash does not match. */
  | 'anchor-malformed'
  /** A second version or a delete marker: someone wrote over or deleted an anchored checkpoint. */
  | 'anchor-overwritten'
  /** The anchored checkpoint's signature does not verify with the trusted key. */
  | 'anchor-signature'
  /** The store has no checkpoint with this number although S3 anchored one: checkpoints were deleted. */
  | 'anchor-missing-in-store'
  /** The store's checkpoint of this number differs from the anchored one: checkpoints were rewritten. */
  | 'anchor-mismatch';

export interface AnchorFinding {
  readonly kind: AnchorFindingKind;
  readonly checkpoint: number | null;
  readonly key: string;
  readonly detail: string;
}

export interface AnchorSource {
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;
  readonly pipeline: string;
}

/**
 * Lists every version under `{prefix}/{pipeline}/checkpoints/` and parses each. Returns the
 * anchored checkpoints ordered by number, and findings for anything that is not as the sink
 * writes it (extra versions, delete markers, malformed objects).
 */
export async function readAnchoredCheckpoints(source: AnchorSource, signal?: AbortSignal): Promise<{ checkpoints: AnchoredCheckpoint[]; findings: AnchorFinding[] }> {
  const { client, bucket } = source;
  const folder = checkpointFolder(source.prefix, source.pipeline);
  const findings: AnchorFinding[] = [];
  const checkpoints: AnchoredCheckpoint[] = [];
  const versionsByKey = new Map<string, string[]>();
  let keyMarker: string | undefined;
  let versionMarker: string | undefined;
  for (;;) {
    const page = await client.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: folder, KeyMarker: keyMarker, VersionIdMarker: versionMarker }), { abortSignal: signal });
    for (const version of page.Versions ?? []) versionsByKey.set(version.Key!, [...(versionsByKey.get(version.Key!) ?? []), version.VersionId!]);
    for (const marker of page.DeleteMarkers ?? []) {
      findings.push({ kind: 'anchor-overwritten', checkpoint: null, key: marker.Key!, detail: 'a delete marker hides this anchored checkpoint (the locked version is still readable)' });
    }
    if (!page.IsTruncated) break;
    keyMarker = page.NextKeyMarker;
    versionMarker = page.NextVersionIdMarker;
  }

  for (const [key, versionIds] of versionsByKey) {
    if (versionIds.length > 1) {
      findings.push({ kind: 'anchor-overwritten', checkpoint: null, key, detail: `${versionIds.length} versions under one checkpoint key; the sink writes each exactly once` });
    }
    // Every version is read: the oldest is what the sink wrote, later ones are what someone put over it.
    for (const versionId of versionIds) {
      const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key, VersionId: versionId }), { abortSignal: signal });
      if ((object.ContentLength ?? 0) > MAX_CHECKPOINT_OBJECT_BYTES) {
        await object.Body?.transformToByteArray().catch(() => undefined);
        findings.push({ kind: 'anchor-malformed', checkpoint: null, key, detail: `object of ${object.ContentLength} bytes is not a checkpoint` });
        continue;
      }
      const body = Buffer.from(await object.Body!.transformToByteArray());
      const parsed = parseAnchoredObject(key, versionId, body, object.Metadata?.[META_CONTENT_SHA256]);
      if ('finding' in parsed) findings.push(parsed.finding);
      else checkpoints.push(parsed.checkpoint);
    }
  }
  checkpoints.sort((a, b) => a.number - b.number);
  return { checkpoints, findings };
}

/** One anchored object → a checkpoint, or why it is not one. */
export function parseAnchoredObject(key: string, versionId: string, body: Buffer, storedSha256: string | undefined): { checkpoint: AnchoredCheckpoint } | { finding: AnchorFinding } {
  const malformed = (detail: string) => ({ finding: { kind: 'anchor-malformed' as const, checkpoint: null, key, detail } });
  if (storedSha256 !== sha256Hex(body)) return malformed('the content-sha256 metadata does not match the object');
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    return malformed('not JSON');
  }
  const { text, signature, keyId, hash } = value;
  if (typeof text !== 'string' || typeof signature !== 'string' || typeof keyId !== 'string' || typeof hash !== 'string') {
    return malformed('missing text, hash, signature or keyId');
  }
  try {
    const checkpoint = parseCheckpoint(text);
    if (checkpointHash(text) !== hash) return malformed(`hash ${hash} is not the SHA-256 of the checkpoint text`);
    let heads: ChainHead[] | undefined;
    if (value.heads !== undefined) {
      try {
        heads = parseHeadsValue(value.heads);
      } catch (error) {
        return malformed(`heads: ${(error as Error).message}`);
      }
      const events = heads.reduce((n, head) => n + head.seq, 0);
      if (headsRoot(heads) !== checkpoint.root || heads.length !== checkpoint.actors || events !== checkpoint.events) {
        return malformed('the heads stored with the checkpoint do not match its signed root, actor and event counts');
      }
    }
    return { checkpoint: { key, versionId, number: checkpoint.number, time: checkpoint.time, text, hash, signature, keyId, ...(heads ? { heads } : {}) } };
  } catch (error) {
    return malformed(error instanceof CheckpointFormatError ? error.message : String(error));
  }
}

export interface StoreCheckpoint {
  readonly number: number;
  readonly hash: string;
}

/**
 * The anchored checkpoints against the store's: each anchored one must be in the store with the
 * same hash (a store whose checkpoints were deleted or rewritten, even re-signed, is caught), and
 * each must carry a valid signature by the trusted key when one is given.
 */
export function compareAnchors(
  anchored: readonly AnchoredCheckpoint[],
  stored: readonly StoreCheckpoint[],
  publicKey?: { readonly publicKey: KeyObject; readonly keyId: string },
): AnchorFinding[] {
  const findings: AnchorFinding[] = [];
  const byNumber = new Map(stored.map((checkpoint) => [checkpoint.number, checkpoint]));
  for (const anchor of anchored) {
    if (publicKey && (anchor.keyId !== publicKey.keyId || !verifyCheckpointSignature(anchor.text, anchor.signature, publicKey.publicKey))) {
      findings.push({ kind: 'anchor-signature', checkpoint: anchor.number, key: anchor.key, detail: `the anchored checkpoint is not validly signed by key ${publicKey.keyId}` });
      continue;
    }
    const inStore = byNumber.get(anchor.number);
    if (!inStore) {
      findings.push({ kind: 'anchor-missing-in-store', checkpoint: anchor.number, key: anchor.key, detail: `checkpoint ${anchor.number} is anchored in S3 but not in the store: checkpoints were deleted` });
    } else if (inStore.hash !== anchor.hash) {
      findings.push({ kind: 'anchor-mismatch', checkpoint: anchor.number, key: anchor.key, detail: `the store's checkpoint ${anchor.number} hashes to ${inStore.hash}, the anchored one to ${anchor.hash}: the store's checkpoints were rewritten` });
    }
  }
  return findings;
}

/**
 * Everything `auditpipe verify --s3` adds to a store's verification: the findings of reading
 * the anchors and of comparing them with the store's checkpoints, and the heads of every validly
 * signed anchored checkpoint, which the verifier then checks row by row (naming the actor).
 */
export function anchorEvidence(
  read: { readonly checkpoints: readonly AnchoredCheckpoint[]; readonly findings: readonly AnchorFinding[] },
  stored: readonly StoreCheckpoint[],
  publicKey: { readonly publicKey: KeyObject; readonly keyId: string } | undefined,
  where: string,
): AnchorEvidence {
  const compared = compareAnchors(read.checkpoints, stored, publicKey);
  const unsigned = new Set(compared.filter((f) => f.kind === 'anchor-signature').map((f) => f.key));
  return {
    where,
    checkpoints: read.checkpoints.length,
    findings: [...read.findings, ...compared].map((finding) => ({
      kind: finding.kind,
      actor: null,
      sequence: null,
      ...(finding.checkpoint !== null ? { checkpoint: finding.checkpoint } : {}),
      detail: `${finding.detail} (object ${finding.key})`,
    })),
    // Without a trusted key nothing anchored is trusted; the verifier reports the missing key.
    claims: publicKey
      ? read.checkpoints.filter((c) => c.heads && !unsigned.has(c.key)).map((c) => ({ checkpoint: c.number, heads: c.heads! }))
      : [],
  };
}
