/**
 * Typed tokens of the services components share through `ctx.resolve` / `ctx.provide` (tsyringe
 * underneath). A plugin makes its own with `serviceToken<T>('my-plugin:thing')`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { serviceToken, type ServiceToken } from '../core/component.ts';
import { OPS_TOKEN } from '../core/ops.ts';
import { chainStoreToken, type ChainStoreReader } from '../security/chain.ts';
import { checkpointAnchorsToken, type CheckpointAnchor } from '../security/checkpoint.ts';

export { serviceToken, type ServiceToken };

/** /healthz, /readyz and /metrics, which the engine provides so an HTTP source can answer them on its port. */
export interface OpsService {
  /** Route template for a path this handler owns, or undefined. */
  route(path: string): string | undefined;
  /** Answers the request when it is one of ours; returns false otherwise. */
  handle(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean>;
}

export const OPS_SERVICE: ServiceToken<OpsService> = serviceToken(OPS_TOKEN);

/** The chain store of a pipeline (its postgres sink), read by the argus read API. */
export function chainStoreService(pipeline: string): ServiceToken<ChainStoreReader> {
  return serviceToken(chainStoreToken(pipeline));
}

/** Where a pipeline's signed checkpoints are also written (e.g. the S3 sink's Object Lock bucket). */
export function checkpointAnchorsService(pipeline: string): ServiceToken<CheckpointAnchor[]> {
  return serviceToken(checkpointAnchorsToken(pipeline));
}
