/**
 * The tamper-evidence pieces built-in components use, re-exported from src/security so a component
 * imports them from src/public only: canonical JSON, the hash chain and its store contract,
 * signed checkpoints and their anchors, checkpoint keys, chain verification, ingest signatures and
 * bearer tokens. src/security stays the implementation; this list is the stable surface.
 */
export { CanonicalJsonError, canonicalJson } from '../security/canonical-json.ts';
export {
  GENESIS_HASH, NO_ACTOR, canonicalRecord, chainHashUnchecked, chainStoreToken, isHashHex,
} from '../security/chain.ts';
export type {
  ChainPage, ChainPosition, ChainQuery, ChainRecord, ChainStoreReader, ChainSummary,
} from '../security/chain.ts';
export {
  CheckpointFormatError, FIRST_PREVIOUS, MAX_ANCHORED_HEADS, checkpointAnchorsToken, checkpointHash, headsRoot,
  parseCheckpoint, signCheckpoint, sortHeads, verifyCheckpointSignature,
} from '../security/checkpoint.ts';
export type { AnchoredCheckpointPayload, ChainHead, CheckpointAnchor, SignedCheckpoint } from '../security/checkpoint.ts';
export { loadPrivateKeyEnv, loadPrivateKeyFile, writeKeyPair } from '../security/keys.ts';
export type { CheckpointKey } from '../security/keys.ts';
export { checkChains, formatHeads, parseHeadsValue } from '../security/verify.ts';
export type { AnchorEvidence, ChainCheckInput, ChainCheckResult, StoredCheckpoint, VerifyRow, VerifySource } from '../security/verify.ts';
export { UnorderedChainCheck, joinRuns, joinWithOrderedWalk } from '../security/unordered-check.ts';
export type { PassResult, RowBytes, UnorderedCheckResult } from '../security/unordered-check.ts';
export { SignaturePolicy, signatureConfigProblems, signatureConfigSchema } from '../security/signature-policy.ts';
export type { SignatureConfig } from '../security/signature-policy.ts';
export { TokenAuthenticator, parseTokenSpecs } from '../security/tokens.ts';
export type { Scope, TokenSpec } from '../security/tokens.ts';
