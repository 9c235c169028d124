/**
 * Re-checks the client signatures of stored events, offline, for `auditpipe verify`. The chain
 * keeps the exact event that was verified on receipt (its hashed canonical record), so the same
 * check can run again later against the key registry: a signature that no longer verifies means
 * the stored event was changed (or the registry was), whatever the hash chain says.
 *
 * Kept apart from verify.ts so the chain verifier's owner can call it with the rows it already
 * reads: `verifyStoredSignatures(source.rows(actor), registry)`.
 */
import type { JsonObject } from '../public/index.ts';
import type { KeyRegistry } from './key-registry.ts';
import { hasSignatureFields, verifyEventSignature, type SignatureFailureReason } from './signatures.ts';
import type { VerifyRow } from './verify.ts';

export interface SignatureFinding {
  readonly kind: 'event-signature';
  readonly actor: string;
  readonly sequence: number;
  readonly eventId: string;
  /** `format_mismatch`: the signature verifies, but not in the form the stored record says was verified on receipt. */
  readonly reason: SignatureFailureReason | 'malformed-record' | 'format_mismatch';
  readonly detail: string;
}

export interface SignatureReport {
  /** Signed events whose signature verified. */
  readonly verified: number;
  /** Events without signature fields (nothing to check). */
  readonly unsigned: number;
  readonly findingsTotal: number;
  readonly findings: readonly SignatureFinding[];
}

/**
 * Verifies every signed event in `rows` (the verifier's `VerifySource.rows()`), judging key
 * validity at the time the event was received, as the server did.
 */
export async function verifyStoredSignatures(
  rows: AsyncIterable<readonly VerifyRow[]>,
  registry: KeyRegistry,
  options: { readonly maxFindings?: number } = {},
): Promise<SignatureReport> {
  const maxFindings = options.maxFindings ?? 10_000;
  const findings: SignatureFinding[] = [];
  let findingsTotal = 0;
  let verified = 0;
  let unsigned = 0;
  const add = (finding: SignatureFinding) => {
    findingsTotal += 1;
    if (findings.length < maxFindings) findings.push(finding);
  };
  for await (const page of rows) {
    for (const row of page) {
      const at = { kind: 'event-signature' as const, actor: row.actor, sequence: row.seq, eventId: row.eventId };
      let record: { event?: unknown; receivedAt?: unknown };
      try {
        record = JSON.parse(row.canonical);
      } catch {
        add({ ...at, reason: 'malformed-record', detail: 'the stored record is not JSON' });
        continue;
      }
      const event = record?.event;
      if (event === null || typeof event !== 'object' || Array.isArray(event) || typeof record.receivedAt !== 'string') {
        add({ ...at, reason: 'malformed-record', detail: 'the stored record has no event object or receivedAt' });
        continue;
      }
      if (!hasSignatureFields(event as JsonObject)) {
        unsigned += 1;
        continue;
      }
      // Events without an actor are chained under "" (chain.ts NO_ACTOR); no key is bound to that.
      const result = verifyEventSignature(event as JsonObject, registry, { actor: row.actor === '' ? undefined : row.actor, at: new Date(record.receivedAt) });
      if (!result.ok) {
        add({ ...at, reason: result.reason, detail: result.detail });
        continue;
      }
      // Rows stored before the form was recorded lack signatureFormat: they were rfc8785.
      const recorded = (event as JsonObject).signatureFormat ?? 'rfc8785';
      const now = (result.signed && result.format) || 'rfc8785';
      if (recorded === now) verified += 1;
      else add({ ...at, reason: 'format_mismatch', detail: `stored as verified in the ${String(recorded)} form, but key ${result.signed ? result.keyId : ''} now verifies it in the ${now} form` });
    }
  }
  return { verified, unsigned, findingsTotal, findings };
}
